// Package winattn is a Go binding (cgo) of winattn: Swin-style windowed multi-head attention with
// relative position bias, on the CPU.
//
// The package links libwinattn through pkg-config: set PKG_CONFIG_PATH to the directory holding
// winattn.pc (<prefix>/lib/pkgconfig for an install, <build>/pkgconfig for a build tree) and, for an
// install outside the loader's paths, LD_LIBRARY_PATH to the library's directory.
//
// Arrays are dense, row-major []float32 in the layouts of winattn.h, written [dim0][dim1]... in the
// docs. Every function checks slice lengths before calling the library. Failures are *Error values that
// match the sentinels ErrInvalidArgument, ErrUnsupported, ErrOutOfMemory and ErrInternal with errors.Is.
//
// No argument makes a function panic or crash the process: sizes are multiplied with overflow checks, every
// input slice's length is checked before an output is allocated, and an output larger than the machine's
// physical memory is refused with ErrOutOfMemory (Go cannot recover from a failed allocation, so it is not
// attempted). A Layer may be shared by all the goroutines of a server; Layer.SetNumThreads, Layer.Trim,
// Layer.MemoryBytes and ReleaseThreadMemory bound the threads and memory it uses.
// Grid, window and shift triples are (depth, height, width); 2D feature maps use depth 1, window 1 and
// shift 0 on the first axis.
package winattn

/*
#cgo pkg-config: winattn
#include <stdlib.h>
#include <unistd.h>
#include <winattn/winattn.h>

// The machine's physical memory in bytes, or -1 when the system does not say.
static int64_t go_winattn_physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0 || pages > INT64_MAX / page_size) return -1;
  return (int64_t)pages * page_size;
}

// The argument structs hold pointers, so Go cannot build them in its own memory for C. These helpers get
// every pointer as a plain call argument (legal under the cgo pointer rules) and build the struct on the
// C stack for the duration of the call; the library keeps no pointer afterwards.
static winattn_status go_winattn_shifted_window_attention(
    int64_t batch, const int64_t *dims, int64_t channels, int64_t num_heads, const float *qkv_weight,
    const float *qkv_bias, const float *proj_weight, const float *proj_bias,
    const float *relative_position_bias, const float *logit_scale, const float *input, float *output) {
  winattn_window_attention_args a;
  int d;
  a.batch = batch;
  for (d = 0; d < 3; ++d) {
    a.grid[d] = dims[d];
    a.window[d] = dims[3 + d];
    a.shift[d] = dims[6 + d];
  }
  a.channels = channels;
  a.num_heads = num_heads;
  a.qkv_weight = qkv_weight;
  a.qkv_bias = qkv_bias;
  a.proj_weight = proj_weight;
  a.proj_bias = proj_bias;
  a.relative_position_bias = relative_position_bias;
  a.logit_scale = logit_scale;
  a.flags = 0;
  return winattn_shifted_window_attention(&a, input, output);
}

*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// Version of the C header this package was written against.
const (
	VersionMajor = C.WINATTN_VERSION_MAJOR
	VersionMinor = C.WINATTN_VERSION_MINOR
	VersionPatch = C.WINATTN_VERSION_PATCH
)

// Status mirrors winattn_status.
type Status int

// The statuses of winattn.h.
const (
	StatusOK              Status = C.WINATTN_STATUS_OK
	StatusInvalidArgument Status = C.WINATTN_STATUS_INVALID_ARGUMENT
	StatusUnsupported     Status = C.WINATTN_STATUS_UNSUPPORTED
	StatusOutOfMemory     Status = C.WINATTN_STATUS_OUT_OF_MEMORY
	StatusInternalError   Status = C.WINATTN_STATUS_INTERNAL_ERROR
)

// String returns the library's English name of the status, e.g. "invalid argument".
func (s Status) String() string {
	return C.GoString(C.winattn_status_string(C.winattn_status(s)))
}

// Error is a failed call: the status and a sentence naming the offending argument (the library's
// winattn_last_error_message, or this package's own for length checks).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "winattn: " + e.Status.String()
	}
	return "winattn: " + e.Status.String() + ": " + e.Message
}

// Is reports whether target is the sentinel (an *Error without a message) of e's status, so that
// errors.Is(err, ErrInvalidArgument) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is, one per status.
var (
	ErrInvalidArgument = &Error{Status: StatusInvalidArgument}
	ErrUnsupported     = &Error{Status: StatusUnsupported}
	ErrOutOfMemory     = &Error{Status: StatusOutOfMemory}
	ErrInternal        = &Error{Status: StatusInternalError}
)

func invalid(format string, args ...interface{}) error {
	return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// call runs f on one OS thread and, on failure, reads that thread's error message before anything else
// can run there (the message is per thread, and goroutines move between threads).
func call(f func() C.winattn_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.WINATTN_STATUS_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.winattn_last_error_message())}
}

// fptr is the address of s's first element, or NULL for an empty or nil slice.
func fptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func iptr(s []int64) *C.int64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&s[0]))
}

// product multiplies sizes, rejecting negative values and overflow.
func product(what string, sizes ...int) (int, error) {
	p := 1
	for _, s := range sizes {
		if s < 0 {
			return 0, invalid("a size of %s is negative (%d)", what, s)
		}
		if s != 0 && p > math.MaxInt/s {
			return 0, invalid("the size of %s overflows", what)
		}
		p *= s
	}
	return p, nil
}

var physicalMemory = int64(C.go_winattn_physical_memory())

// checkAlloc refuses an output of n elements of elemSize bytes that is larger than the machine's physical
// memory: Go ends the process when an allocation fails ("fatal error: runtime: out of memory"), so such a
// request must not reach make.
func checkAlloc(what string, n, elemSize int) error {
	bytes, err := product(what, n, elemSize)
	if err != nil {
		return err
	}
	if physicalMemory > 0 && int64(bytes) > physicalMemory {
		return &Error{Status: StatusOutOfMemory, Message: fmt.Sprintf(
			"%s needs %d bytes, more than the machine's %d bytes of memory", what, bytes, physicalMemory)}
	}
	return nil
}

// newFloats is make([]float32, n) for the output what, after checkAlloc.
func newFloats(what string, n int) ([]float32, error) {
	if err := checkAlloc(what, n, 4); err != nil {
		return nil, err
	}
	return make([]float32, n), nil
}

// threadCount checks a thread count against 0..MaxThreads before it is converted to a C int (a larger Go
// int would be truncated: -4294967291 would become 5).
func threadCount(n int) (C.int, error) {
	if n < 0 || n > MaxThreads {
		return 0, invalid("num_threads = %d must be in [0, %d] (WINATTN_MAX_THREADS)", n, MaxThreads)
	}
	return C.int(n), nil
}

func expectLen(name string, actual, expected int, shape string) error {
	if actual != expected {
		return invalid("%s has %d elements, expected %d (%s)", name, actual, expected, shape)
	}
	return nil
}

func positive(name string, dims []int64) ([]int, error) {
	out := make([]int, len(dims))
	for d, v := range dims {
		if v < 1 || v > math.MaxInt32 {
			return nil, invalid("%s[%d] = %d must be in [1, 2^31)", name, d, v)
		}
		out[d] = int(v)
	}
	return out, nil
}

// Version returns the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.winattn_version()) }

// ActiveISA returns the kernels in use: "amx_bf16", "avx512_bf16", "avx512", "avx2" or "scalar".
func ActiveISA() string { return C.GoString(C.winattn_active_isa()) }

// SetMaxISA caps the kernel dispatch at isa (an ActiveISA name, or "native" for no cap) for calls that
// start afterwards, process-wide.
func SetMaxISA(isa string) error {
	cs := C.CString(isa)
	defer C.free(unsafe.Pointer(cs))
	return call(func() C.winattn_status { return C.winattn_set_max_isa(cs) })
}

// MaxThreads is WINATTN_MAX_THREADS: the most threads any call uses. Larger thread counts are rejected.
const MaxThreads = int(C.WINATTN_MAX_THREADS)

// SetNumThreads sets the number of OpenMP threads the library uses, process-wide (0 = OpenMP's default).
// Results are bit-identical for every thread count. n outside [0, MaxThreads] is ErrInvalidArgument and
// leaves the setting unchanged. A layer's own budget (Layer.SetNumThreads) overrides this setting.
func SetNumThreads(n int) error {
	cn, err := threadCount(n)
	if err != nil {
		return err
	}
	return call(func() C.winattn_status { return C.winattn_set_num_threads(cn) })
}

// ReleaseThreadMemory frees the scratch memory the library keeps for the calling OS thread between calls
// (it is allocated again by the next call that needs it). Goroutines move between OS threads, so call it
// from a goroutine locked to its thread (runtime.LockOSThread) that is about to idle after large requests.
func ReleaseThreadMemory() { C.winattn_release_thread_memory() }

// NumThreads returns the value last set by SetNumThreads.
func NumThreads() int { return int(C.winattn_get_num_threads()) }

// RelativePositionTableRows returns prod(2*window[d]-1), the rows of a relative position bias table.
func RelativePositionTableRows(window []int64) (int, error) {
	w, err := positive("window", window)
	if err != nil {
		return 0, err
	}
	rows := 1
	for _, v := range w {
		if rows, err = product("the relative position table", rows, 2*v-1); err != nil {
			return 0, err
		}
	}
	return rows, nil
}

// RelativePositionIndex returns the [N][N] relative position index of a window of 1 to 3 dimensions
// ([T], [Wh, Ww] or [Wd, Wh, Ww]), N = prod(window): PyTorch's relative_position_index.
func RelativePositionIndex(window []int64) ([]int64, error) {
	if len(window) < 1 || len(window) > 3 {
		return nil, invalid("window has %d entries, expected 1 to 3", len(window))
	}
	w, err := positive("window", window)
	if err != nil {
		return nil, err
	}
	n, err := product("window", w...)
	if err != nil {
		return nil, err
	}
	nn, err := product("index", n, n)
	if err != nil {
		return nil, err
	}
	if err := checkAlloc("index", nn, 8); err != nil {
		return nil, err
	}
	index := make([]int64, nn)
	win := append([]int64(nil), window...)
	err = call(func() C.winattn_status {
		return C.winattn_relative_position_index(C.int(len(win)), iptr(win), iptr(index))
	})
	if err != nil {
		return nil, err
	}
	return index, nil
}

func tableRows(name string, length, numHeads int) (int, error) {
	if numHeads < 1 {
		return 0, invalid("num_heads = %d must be >= 1", numHeads)
	}
	if length == 0 || length%numHeads != 0 {
		return 0, invalid("%s has %d elements, expected a positive multiple of num_heads = %d ([table_rows][num_heads])",
			name, length, numHeads)
	}
	return length / numHeads, nil
}

// RelativePositionBias looks the bias up: bias[h][i][j] = table[index[i*n+j]][h]. table is
// [table_rows][numHeads] (table_rows from its length), index [n][n]; returns [numHeads][n][n].
func RelativePositionBias(table []float32, numHeads int, index []int64, n int) ([]float32, error) {
	rows, err := tableRows("table", len(table), numHeads)
	if err != nil {
		return nil, err
	}
	nn, err := product("index", n, n)
	if err != nil {
		return nil, err
	}
	if err := expectLen("index", len(index), nn, "n*n"); err != nil {
		return nil, err
	}
	total, err := product("bias", numHeads, nn)
	if err != nil {
		return nil, err
	}
	bias, err := newFloats("bias", total)
	if err != nil {
		return nil, err
	}
	err = call(func() C.winattn_status {
		return C.winattn_relative_position_bias(fptr(table), C.int64_t(rows), C.int64_t(numHeads), iptr(index),
			C.int64_t(n), fptr(bias))
	})
	if err != nil {
		return nil, err
	}
	return bias, nil
}

// RelativePositionBiasBackward accumulates the gradient gradTable[index[i*n+j]][h] += gradBias[h][i][j].
// gradTable is [table_rows][numHeads] (zero it first for a plain gradient), gradBias [numHeads][n][n].
// Deterministic for any thread count.
func RelativePositionBiasBackward(gradBias []float32, numHeads int, index []int64, n int, gradTable []float32) error {
	rows, err := tableRows("gradTable", len(gradTable), numHeads)
	if err != nil {
		return err
	}
	nn, err := product("index", n, n)
	if err != nil {
		return err
	}
	if err := expectLen("index", len(index), nn, "n*n"); err != nil {
		return err
	}
	total, err := product("gradBias", numHeads, nn)
	if err != nil {
		return err
	}
	if err := expectLen("gradBias", len(gradBias), total, "num_heads*n*n"); err != nil {
		return err
	}
	return call(func() C.winattn_status {
		return C.winattn_relative_position_bias_backward(fptr(gradBias), C.int64_t(rows), C.int64_t(numHeads),
			iptr(index), C.int64_t(n), fptr(gradTable))
	})
}

// ContinuousPositionBiasTable returns the SwinV2 table 16*sigmoid(MLP(coords)),
// [(2*windowH-1)*(2*windowW-1)][numHeads], as torchvision's ShiftedWindowAttentionV2 builds it.
// w1 is [hidden][2], b1 [hidden] or nil, w2 [numHeads][hidden] (nn.Linear layouts).
func ContinuousPositionBiasTable(windowH, windowW int64, w1, b1, w2 []float32, hidden, numHeads int) ([]float32, error) {
	rows, err := RelativePositionTableRows([]int64{windowH, windowW})
	if err != nil {
		return nil, err
	}
	// The table's size depends on numHeads: with hidden = 0 no input bounds it, so check it here.
	if hidden < 1 || numHeads < 1 {
		return nil, invalid("hidden = %d and num_heads = %d must be >= 1", hidden, numHeads)
	}
	n1, err := product("w1", hidden, 2)
	if err != nil {
		return nil, err
	}
	if err := expectLen("w1", len(w1), n1, "hidden*2"); err != nil {
		return nil, err
	}
	if b1 != nil {
		if err := expectLen("b1", len(b1), hidden, "hidden"); err != nil {
			return nil, err
		}
	}
	n2, err := product("w2", numHeads, hidden)
	if err != nil {
		return nil, err
	}
	if err := expectLen("w2", len(w2), n2, "num_heads*hidden"); err != nil {
		return nil, err
	}
	total, err := product("table", rows, numHeads)
	if err != nil {
		return nil, err
	}
	table, err := newFloats("table", total)
	if err != nil {
		return nil, err
	}
	err = call(func() C.winattn_status {
		return C.winattn_continuous_position_bias_table(C.int64_t(windowH), C.int64_t(windowW), fptr(w1), fptr(b1),
			fptr(w2), C.int64_t(hidden), C.int64_t(numHeads), fptr(table))
	})
	if err != nil {
		return nil, err
	}
	return table, nil
}

// ShiftedWindowMask returns the shifted-window attention mask [num_windows][N][N] (0 within a region,
// -100 across regions). Each grid entry must be a multiple of its window entry, 0 <= shift < window.
func ShiftedWindowMask(grid, window, shift [3]int64) ([]float32, error) {
	g, err := positive("grid", grid[:])
	if err != nil {
		return nil, err
	}
	w, err := positive("window", window[:])
	if err != nil {
		return nil, err
	}
	for d := 0; d < 3; d++ {
		if g[d]%w[d] != 0 {
			return nil, invalid("grid[%d] = %d is not a multiple of window[%d] = %d", d, g[d], d, w[d])
		}
	}
	windows, err := product("mask", g[0]/w[0], g[1]/w[1], g[2]/w[2])
	if err != nil {
		return nil, err
	}
	n, err := product("window", w...)
	if err != nil {
		return nil, err
	}
	total, err := product("mask", windows, n, n)
	if err != nil {
		return nil, err
	}
	mask, err := newFloats("mask", total)
	if err != nil {
		return nil, err
	}
	dims := [9]int64{grid[0], grid[1], grid[2], window[0], window[1], window[2], shift[0], shift[1], shift[2]}
	err = call(func() C.winattn_status {
		return C.winattn_shifted_window_mask(iptr(dims[0:3]), iptr(dims[3:6]), iptr(dims[6:9]), fptr(mask))
	})
	if err != nil {
		return nil, err
	}
	return mask, nil
}

// AttentionShape gives the sizes of WindowAttention: q, k, v and out are
// [NumWindows][NumHeads][N][HeadDim].
type AttentionShape struct {
	NumWindows, NumHeads, N, HeadDim int
}

// WindowAttention computes out[w][h] = softmax(scale * q k^T + bias[h] + mask[w % mask_windows]) v, fused.
// bias is [NumHeads][N][N] or nil; mask is [mask_windows][N][N] or nil (mask_windows from its length,
// Swin's [nW][N][N] mask with windows numbered image-major).
func WindowAttention(s AttentionShape, q, k, v []float32, scale float32, bias, mask []float32) ([]float32, error) {
	total, _, err := checkAttentionInputs(s, q, k, v, bias, mask)
	if err != nil {
		return nil, err
	}
	out, err := newFloats("out", total)
	if err != nil {
		return nil, err
	}
	if err := WindowAttentionInto(s, q, k, v, scale, bias, mask, out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkAttentionInputs checks the lengths of q, k, v, bias and mask against s; it returns the length of
// q (and of the output) and the number of mask windows (0 without a mask).
func checkAttentionInputs(s AttentionShape, q, k, v, bias, mask []float32) (total, maskWindows int, err error) {
	total, err = product("q", s.NumWindows, s.NumHeads, s.N, s.HeadDim)
	if err != nil {
		return 0, 0, err
	}
	const layout = "num_windows*num_heads*n*head_dim"
	for _, a := range []struct {
		name string
		s    []float32
	}{{"q", q}, {"k", k}, {"v", v}} {
		if err := expectLen(a.name, len(a.s), total, layout); err != nil {
			return 0, 0, err
		}
	}
	nn, err := product("mask", s.N, s.N)
	if err != nil {
		return 0, 0, err
	}
	if bias != nil {
		nb, err := product("bias", s.NumHeads, nn)
		if err != nil {
			return 0, 0, err
		}
		if err := expectLen("bias", len(bias), nb, "num_heads*n*n"); err != nil {
			return 0, 0, err
		}
	}
	if mask != nil {
		if nn == 0 || len(mask) == 0 || len(mask)%nn != 0 {
			return 0, 0, invalid(
				"mask has %d elements, expected a positive multiple of n*n = %d ([mask_windows][n][n])", len(mask), nn)
		}
		maskWindows = len(mask) / nn
	}
	return total, maskWindows, nil
}

// WindowAttentionInto is WindowAttention writing into out, which must not overlap q, k or v.
func WindowAttentionInto(s AttentionShape, q, k, v []float32, scale float32, bias, mask, out []float32) error {
	total, maskWindows, err := checkAttentionInputs(s, q, k, v, bias, mask)
	if err != nil {
		return err
	}
	if err := expectLen("out", len(out), total, "num_windows*num_heads*n*head_dim"); err != nil {
		return err
	}
	return call(func() C.winattn_status {
		return C.winattn_window_attention(C.int64_t(s.NumWindows), C.int64_t(s.NumHeads), C.int64_t(s.N),
			C.int64_t(s.HeadDim), fptr(q), fptr(k), fptr(v), C.float(scale), fptr(bias), fptr(mask),
			C.int64_t(maskWindows), fptr(out))
	})
}

// WindowAttentionArgs describes the stateless ShiftedWindowAttention (torchvision's
// shifted_window_attention in eval mode). N = prod(Window), C = Channels; nil optional slices mean none.
type WindowAttentionArgs struct {
	Batch      int
	Grid       [3]int64 // depth, height, width of the feature map
	Channels   int
	NumHeads   int       // divides Channels
	Window     [3]int64  // each >= 1
	Shift      [3]int64  // 0 <= Shift[d] < Window[d]
	QKVWeight  []float32 // [3C][C], nn.Linear layout
	QKVBias    []float32 // [3C] or nil
	ProjWeight []float32 // [C][C]
	ProjBias   []float32 // [C] or nil
	// [NumHeads][N][N], already looked up (see RelativePositionBias), or nil.
	RelativePositionBias []float32
	// [NumHeads] or nil; non-nil selects SwinV2 cosine attention.
	LogitScale []float32
}

// checkWeights checks the weights shared by ShiftedWindowAttention and NewLayer and returns N.
func checkWeights(channels, numHeads int, window [3]int64, qkvW, qkvB, projW, projB, logitScale []float32) (int, error) {
	w, err := positive("window", window[:])
	if err != nil {
		return 0, err
	}
	if channels < 1 || numHeads < 1 {
		return 0, invalid("channels = %d and num_heads = %d must be >= 1", channels, numHeads)
	}
	nq, err := product("qkv_weight", 3, channels, channels)
	if err != nil {
		return 0, err
	}
	// Cannot overflow once 3*channels*channels did not.
	nb, np := 3*channels, channels*channels
	checks := []struct {
		name     string
		s        []float32
		want     int
		shape    string
		optional bool
	}{
		{"qkv_weight", qkvW, nq, "3*channels*channels", false},
		{"qkv_bias", qkvB, nb, "3*channels", true},
		{"proj_weight", projW, np, "channels*channels", false},
		{"proj_bias", projB, channels, "channels", true},
		{"logit_scale", logitScale, numHeads, "num_heads", true},
	}
	for _, c := range checks {
		if c.optional && c.s == nil {
			continue
		}
		if err := expectLen(c.name, len(c.s), c.want, c.shape); err != nil {
			return 0, err
		}
	}
	return product("window", w...)
}

func featureLen(batch int, grid [3]int64, channels int) (int, error) {
	g, err := positive("grid", grid[:])
	if err != nil {
		return 0, err
	}
	return product("input", batch, g[0], g[1], g[2], channels)
}

// ShiftedWindowAttention runs a shifted-window attention layer without prepacking. input and the result
// are [Batch][Grid[0]][Grid[1]][Grid[2]][Channels].
func ShiftedWindowAttention(a *WindowAttentionArgs, input []float32) ([]float32, error) {
	if a == nil {
		return nil, invalid("args is nil")
	}
	total, err := featureLen(a.Batch, a.Grid, a.Channels)
	if err != nil {
		return nil, err
	}
	if err := expectLen("input", len(input), total, "batch*depth*height*width*channels"); err != nil {
		return nil, err
	}
	out, err := newFloats("output", total)
	if err != nil {
		return nil, err
	}
	if err := ShiftedWindowAttentionInto(a, input, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ShiftedWindowAttentionInto is ShiftedWindowAttention writing into output (same shape as input, not
// overlapping it).
func ShiftedWindowAttentionInto(a *WindowAttentionArgs, input, output []float32) error {
	if a == nil {
		return invalid("args is nil")
	}
	n, err := checkWeights(a.Channels, a.NumHeads, a.Window, a.QKVWeight, a.QKVBias, a.ProjWeight, a.ProjBias,
		a.LogitScale)
	if err != nil {
		return err
	}
	if a.RelativePositionBias != nil {
		nb, err := product("relative_position_bias", a.NumHeads, n, n)
		if err != nil {
			return err
		}
		if err := expectLen("relative_position_bias", len(a.RelativePositionBias), nb, "num_heads*N*N"); err != nil {
			return err
		}
	}
	total, err := featureLen(a.Batch, a.Grid, a.Channels)
	if err != nil {
		return err
	}
	const shape = "batch*depth*height*width*channels"
	if err := expectLen("input", len(input), total, shape); err != nil {
		return err
	}
	if err := expectLen("output", len(output), total, shape); err != nil {
		return err
	}
	dims := []int64{a.Grid[0], a.Grid[1], a.Grid[2], a.Window[0], a.Window[1], a.Window[2], a.Shift[0],
		a.Shift[1], a.Shift[2]}
	return call(func() C.winattn_status {
		return C.go_winattn_shifted_window_attention(C.int64_t(a.Batch), iptr(dims), C.int64_t(a.Channels),
			C.int64_t(a.NumHeads), fptr(a.QKVWeight), fptr(a.QKVBias), fptr(a.ProjWeight), fptr(a.ProjBias),
			fptr(a.RelativePositionBias), fptr(a.LogitScale), fptr(input), fptr(output))
	})
}
