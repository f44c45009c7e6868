package winattn

/*
#include <winattn/winattn.h>

// Builds the desc on the C stack from plain pointer arguments (see winattn.go).
static winattn_status go_winattn_layer_create(
    const int64_t *dims, int64_t channels, int64_t num_heads, const float *qkv_weight,
    const float *qkv_bias, const float *proj_weight, const float *proj_bias, const float *table,
    const float *logit_scale, const float *cpb_weight1, const float *cpb_bias1, const float *cpb_weight2,
    int64_t cpb_hidden, int compute_dtype, winattn_layer **layer) {
  winattn_layer_desc desc;
  int d;
  desc.channels = channels;
  desc.num_heads = num_heads;
  for (d = 0; d < 3; ++d) {
    desc.window[d] = dims[d];
    desc.shift[d] = dims[3 + d];
  }
  desc.qkv_weight = qkv_weight;
  desc.qkv_bias = qkv_bias;
  desc.proj_weight = proj_weight;
  desc.proj_bias = proj_bias;
  desc.relative_position_bias_table = table;
  desc.logit_scale = logit_scale;
  desc.cpb_weight1 = cpb_weight1;
  desc.cpb_bias1 = cpb_bias1;
  desc.cpb_weight2 = cpb_weight2;
  desc.cpb_hidden = cpb_hidden;
  desc.compute_dtype = (winattn_dtype)compute_dtype;
  desc.flags = 0;
  return winattn_layer_create(&desc, layer);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

// DType is the compute precision of a prepacked Layer or a Model, and the storage type of a Tensor.
type DType int

// Compute precisions (BF16 is answered with ErrUnsupported in version 0.1) and tensor storage types (F16
// is a storage type only).
const (
	F32  DType = C.WINATTN_DTYPE_F32
	BF16 DType = C.WINATTN_DTYPE_BF16
	F16  DType = C.WINATTN_DTYPE_F16
)

// String returns the dtype's name in winattn.h, e.g. "F32".
func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case BF16:
		return "BF16"
	case F16:
		return "F16"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// LayerDesc describes a prepacked Layer (winattn_layer_desc). N = prod(Window), C = Channels; nil
// optional slices mean none.
//
// SwinV1: set RelativePositionBiasTable (or leave it nil for no bias). SwinV2: set LogitScale, and
// CPBWeight1/CPBBias1/CPBWeight2/CPBHidden for the continuous position bias (2D windows only).
type LayerDesc struct {
	Channels   int
	NumHeads   int      // divides Channels
	Window     [3]int64 // depth, height, width
	Shift      [3]int64
	QKVWeight  []float32 // [3C][C]
	QKVBias    []float32 // [3C] or nil
	ProjWeight []float32 // [C][C]
	ProjBias   []float32 // [C] or nil
	// SwinV1: [prod(2*Window[d]-1)][NumHeads] or nil.
	RelativePositionBiasTable []float32
	LogitScale                []float32 // SwinV2: [NumHeads]
	CPBWeight1                []float32 // SwinV2 CPB MLP: [CPBHidden][2]
	CPBBias1                  []float32 // [CPBHidden]
	CPBWeight2                []float32 // [NumHeads][CPBHidden]
	CPBHidden                 int       // 512 in torchvision; 0 = no CPB
	ComputeDType              DType
}

// Layer is a prepacked shifted-window attention layer. The library copies everything it needs at
// NewLayer. Forward, SetNumThreads, NumThreads, Trim and MemoryBytes may be called from any number of
// goroutines at once; Close waits for the calls running on the layer, every call after it returns an
// ErrInvalidArgument error saying the layer is closed, and a forgotten Close is done by a finalizer.
type Layer struct {
	mu       sync.RWMutex
	handle   *C.winattn_layer
	channels int
}

// NewLayer creates (and prepacks) a layer from desc, checking every slice's length first.
func NewLayer(desc *LayerDesc) (*Layer, error) {
	if desc == nil {
		return nil, invalid("desc is nil")
	}
	if _, err := checkWeights(desc.Channels, desc.NumHeads, desc.Window, desc.QKVWeight, desc.QKVBias,
		desc.ProjWeight, desc.ProjBias, desc.LogitScale); err != nil {
		return nil, err
	}
	if desc.RelativePositionBiasTable != nil {
		rows, err := RelativePositionTableRows(desc.Window[:])
		if err != nil {
			return nil, err
		}
		want, err := product("relative_position_bias_table", rows, desc.NumHeads)
		if err != nil {
			return nil, err
		}
		if err := expectLen("relative_position_bias_table", len(desc.RelativePositionBiasTable), want,
			"prod(2*window[d]-1)*num_heads"); err != nil {
			return nil, err
		}
	}
	if desc.CPBHidden < 0 {
		return nil, invalid("cpb_hidden = %d must be >= 0", desc.CPBHidden)
	}
	if desc.CPBWeight1 != nil {
		want, err := product("cpb_weight1", desc.CPBHidden, 2)
		if err != nil {
			return nil, err
		}
		if err := expectLen("cpb_weight1", len(desc.CPBWeight1), want, "cpb_hidden*2"); err != nil {
			return nil, err
		}
	}
	if desc.CPBBias1 != nil {
		if err := expectLen("cpb_bias1", len(desc.CPBBias1), desc.CPBHidden, "cpb_hidden"); err != nil {
			return nil, err
		}
	}
	if desc.CPBWeight2 != nil {
		want, err := product("cpb_weight2", desc.NumHeads, desc.CPBHidden)
		if err != nil {
			return nil, err
		}
		if err := expectLen("cpb_weight2", len(desc.CPBWeight2), want, "num_heads*cpb_hidden"); err != nil {
			return nil, err
		}
	}
	dims := []int64{desc.Window[0], desc.Window[1], desc.Window[2], desc.Shift[0], desc.Shift[1], desc.Shift[2]}
	var handle *C.winattn_layer
	err := call(func() C.winattn_status {
		return C.go_winattn_layer_create(iptr(dims), C.int64_t(desc.Channels), C.int64_t(desc.NumHeads),
			fptr(desc.QKVWeight), fptr(desc.QKVBias), fptr(desc.ProjWeight), fptr(desc.ProjBias),
			fptr(desc.RelativePositionBiasTable), fptr(desc.LogitScale), fptr(desc.CPBWeight1),
			fptr(desc.CPBBias1), fptr(desc.CPBWeight2), C.int64_t(desc.CPBHidden), C.int(desc.ComputeDType),
			&handle)
	})
	if err != nil {
		return nil, err
	}
	l := &Layer{handle: handle, channels: desc.Channels}
	runtime.SetFinalizer(l, func(l *Layer) { l.Close() })
	return l, nil
}

// Channels returns the channels of the layer's input and output.
func (l *Layer) Channels() int { return l.channels }

// Forward runs the layer on input [batch][grid[0]][grid[1]][grid[2]][channels] and returns the output
// of the same shape.
func (l *Layer) Forward(input []float32, batch int, grid [3]int64) ([]float32, error) {
	total, err := featureLen(batch, grid, l.channels)
	if err != nil {
		return nil, err
	}
	if err := expectLen("input", len(input), total, "batch*grid[0]*grid[1]*grid[2]*channels"); err != nil {
		return nil, err
	}
	out, err := newFloats("output", total)
	if err != nil {
		return nil, err
	}
	if err := l.ForwardInto(input, batch, grid, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ForwardInto is Forward writing into output (same shape as input, not overlapping it).
func (l *Layer) ForwardInto(input []float32, batch int, grid [3]int64, output []float32) error {
	total, err := featureLen(batch, grid, l.channels)
	if err != nil {
		return err
	}
	const shape = "batch*grid[0]*grid[1]*grid[2]*channels"
	if err := expectLen("input", len(input), total, shape); err != nil {
		return err
	}
	if err := expectLen("output", len(output), total, shape); err != nil {
		return err
	}
	g := []int64{grid[0], grid[1], grid[2]}
	return l.use(func(h *C.winattn_layer) C.winattn_status {
		return C.winattn_layer_forward(h, fptr(input), C.int64_t(batch), iptr(g), fptr(output))
	})
}

// use runs f on the live handle under the read lock (so Close waits for it), or returns the closed error.
func (l *Layer) use(f func(h *C.winattn_layer) C.winattn_status) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.handle == nil {
		return invalid("the layer is closed")
	}
	err := call(func() C.winattn_status { return f(l.handle) })
	runtime.KeepAlive(l)
	return err
}

// SetNumThreads sets the layer's thread budget: the most threads one forward on it uses, whatever the
// process-wide SetNumThreads says; 0 (the value at NewLayer) follows the process setting. A server that
// runs many requests at once gives the concurrent layers budgets that add up to its cores; with 1, a
// forward runs on the calling thread alone. May be called while forwards run; forwards that start
// afterwards use the new budget. Results are bit-identical for every budget. n outside [0, MaxThreads] is
// ErrInvalidArgument and leaves the budget unchanged.
func (l *Layer) SetNumThreads(n int) error {
	cn, err := threadCount(n)
	if err != nil {
		return err
	}
	return l.use(func(h *C.winattn_layer) C.winattn_status { return C.winattn_layer_set_num_threads(h, cn) })
}

// NumThreads returns the layer's thread budget (0 = the process setting).
func (l *Layer) NumThreads() (int, error) {
	var n C.int
	err := l.use(func(h *C.winattn_layer) C.winattn_status { return C.winattn_layer_get_num_threads(h, &n) })
	return int(n), err
}

// Trim frees what the layer keeps to speed up later forwards (shifted-window masks, projection plans for
// unusual batch sizes); the next forward that needs them builds them again, with the same results. Safe
// while forwards run in other goroutines.
func (l *Layer) Trim() error {
	return l.use(func(h *C.winattn_layer) C.winattn_status { return C.winattn_layer_trim(h) })
}

// MemoryBytes returns the heap memory the layer holds now: weights, packed weights, bias, masks and plans.
func (l *Layer) MemoryBytes() (int64, error) {
	var n C.int64_t
	err := l.use(func(h *C.winattn_layer) C.winattn_status { return C.winattn_layer_memory_bytes(h, &n) })
	return int64(n), err
}

// Close frees the layer. It waits for forwards in flight; calling it again does nothing.
func (l *Layer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handle != nil {
		C.winattn_layer_destroy(l.handle)
		l.handle = nil
		runtime.SetFinalizer(l, nil)
	}
	return nil
}
