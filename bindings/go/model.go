package winattn

/*
#include <stdlib.h>
#include <winattn/winattn.h>

// malloc that reports failure (cgo's C.malloc ends the process when malloc returns NULL).
static void *go_winattn_malloc(size_t n) { return malloc(n ? n : 1); }

// The stages' outputs lie in one Go allocation, at base + offsets[s] (offsets[s] < 0: skip the stage).
// cgo may not pass an array of Go pointers, so the pointer array is built here on the C stack.
static winattn_status go_winattn_model_features(const winattn_model *model, const float *input,
                                                int64_t batch, const int64_t *size, float *base,
                                                const int64_t *offsets, int stages) {
  float *features[8];
  int s;
  for (s = 0; s < 8; ++s) features[s] = (s < stages && offsets[s] >= 0) ? base + offsets[s] : NULL;
  return winattn_model_features(model, input, batch, size, features);
}
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// MaxTensorDims is the most dimensions a Tensor may have (winattn_tensor.shape holds 8).
const MaxTensorDims = 8

// maxStages is the most stages winattn_model_info describes.
const maxStages = 8

// Tensor is one tensor of a state_dict held by the caller, for CreateModel: a name as in a torchvision or
// timm state_dict ("features.0.0.weight"), a shape of at most MaxTensorDims dimensions and prod(Shape)
// elements, dense row-major. Float32 tensors set Data; F16 (torch.float16) and BF16 (torch.bfloat16)
// tensors set Bits to their raw bits, which the library widens to float32 exactly, as torch's .float()
// does. F32Tensor, F16Tensor and BF16Tensor build one.
type Tensor struct {
	Name  string
	Shape []int64
	DType DType     // F32 (the zero value), F16 or BF16
	Data  []float32 // the elements of an F32 tensor
	Bits  []uint16  // the elements of an F16 or BF16 tensor
}

// F32Tensor is a float32 Tensor.
func F32Tensor(name string, shape []int64, data []float32) Tensor {
	return Tensor{Name: name, Shape: shape, DType: F32, Data: data}
}

// F16Tensor is a float16 Tensor given as bits.
func F16Tensor(name string, shape []int64, bits []uint16) Tensor {
	return Tensor{Name: name, Shape: shape, DType: F16, Bits: bits}
}

// BF16Tensor is a bfloat16 Tensor given as bits.
func BF16Tensor(name string, shape []int64, bits []uint16) Tensor {
	return Tensor{Name: name, Shape: shape, DType: BF16, Bits: bits}
}

// ModelOptions is what LoadModel and CreateModel take besides the weights; nil or the zero value is
// float32 compute with the process's thread setting.
type ModelOptions struct {
	ComputeDType DType // F32, or BF16 (ErrUnsupported in version 0.1)
	NumThreads   int   // the model's thread budget (see Model.SetNumThreads); 0 = the process setting
}

func (o *ModelOptions) raw() (C.winattn_model_options, error) {
	var r C.winattn_model_options
	if o == nil {
		return r, nil
	}
	n, err := threadCount(o.NumThreads)
	if err != nil {
		return r, err
	}
	r.compute_dtype = C.winattn_dtype(o.ComputeDType)
	r.num_threads = n
	return r, nil
}

// ModelFamily is the architecture a model's weights were recognised as.
type ModelFamily int

// The families of winattn.h.
const (
	ModelSwin   ModelFamily = C.WINATTN_MODEL_SWIN    // Swin v1: torchvision swin_t/s/b, timm swin_*
	ModelSwinV2 ModelFamily = C.WINATTN_MODEL_SWIN_V2 // SwinV2: torchvision swin_v2_t/s/b, timm swinv2_*
	ModelSwin3D ModelFamily = C.WINATTN_MODEL_SWIN_3D // Video Swin: torchvision swin3d_t/s/b, the original
)

func (f ModelFamily) String() string {
	switch f {
	case ModelSwin:
		return "Swin"
	case ModelSwinV2:
		return "SwinV2"
	case ModelSwin3D:
		return "Swin3D"
	}
	return fmt.Sprintf("ModelFamily(%d)", int(f))
}

// ModelInfo is a model's architecture (winattn_model_info); the per-stage slices hold one entry per stage.
type ModelInfo struct {
	Family     ModelFamily
	InChannels int // 3 for RGB
	NumClasses int // 0 for a backbone without a head (then only Features runs)
	EmbedDim   int // channels after the patch embedding
	Depths     []int
	NumHeads   []int
	Dims       []int    // channels per stage: EmbedDim * 2^stage (patch merging doubles them)
	Patch      [3]int64 // (depth, height, width); 2D models: depth 1
	Window     [3]int64 // (depth, height, width); 2D models: depth 1
}

// NumStages returns the stages of the network.
func (i *ModelInfo) NumStages() int { return len(i.Depths) }

func internal(format string, args ...interface{}) error {
	return &Error{Status: StatusInternalError, Message: fmt.Sprintf(format, args...)}
}

func infoFromC(ci *C.winattn_model_info) (ModelInfo, error) {
	stages := int64(ci.num_stages)
	if stages < 0 || stages > maxStages {
		return ModelInfo{}, internal("the library reported num_stages = %d", stages)
	}
	for what, v := range map[string]C.int64_t{"in_channels": ci.in_channels, "num_classes": ci.num_classes,
		"embed_dim": ci.embed_dim} {
		if v < 0 || v > 1<<40 {
			return ModelInfo{}, internal("the library reported %s = %d", what, int64(v))
		}
	}
	info := ModelInfo{
		Family:     ModelFamily(ci.family),
		InChannels: int(ci.in_channels),
		NumClasses: int(ci.num_classes),
		EmbedDim:   int(ci.embed_dim),
		Depths:     make([]int, stages),
		NumHeads:   make([]int, stages),
		Dims:       make([]int, stages),
	}
	for s := 0; s < int(stages); s++ {
		if ci.depths[s] < 0 || ci.num_heads[s] < 0 {
			return ModelInfo{}, internal("the library reported stage %d: depth %d, %d heads", s,
				int64(ci.depths[s]), int64(ci.num_heads[s]))
		}
		info.Depths[s] = int(ci.depths[s])
		info.NumHeads[s] = int(ci.num_heads[s])
		info.Dims[s] = info.EmbedDim << s
	}
	for d := 0; d < 3; d++ {
		info.Patch[d] = int64(ci.patch[d])
		info.Window[d] = int64(ci.window[d])
	}
	return info, nil
}

// Model is a whole Swin network in eval mode (Swin v1, SwinV2 or Video Swin 3D, torchvision's or timm's
// weights), built by the library from a .safetensors file (LoadModel) or from tensors (CreateModel); the
// library copies the weights. Input sizes are (frames, height, width) triples; 2D models take frames 1,
// i.e. [batch][in_channels][1][H][W] = [batch][3][H][W].
//
// Classify, Features, FeatureShapes, SetNumThreads and NumThreads may be called from any number of
// goroutines at once; Close waits for the calls running on the model, every call after it returns an
// ErrInvalidArgument error saying the model is closed, and a forgotten Close is done by a finalizer.
type Model struct {
	mu     sync.RWMutex
	handle *C.winattn_model
	info   ModelInfo
}

// LoadModel loads a model from a .safetensors file (memory-mapped and checked in full by the library; F32,
// F16, BF16 and F64 tensors). opts may be nil. The error names the file and the first tensor that does not
// fit.
func LoadModel(path string, opts *ModelOptions) (*Model, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, invalid("path %q contains a NUL byte", path)
	}
	o, err := opts.raw()
	if err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var handle *C.winattn_model
	if err := call(func() C.winattn_status { return C.winattn_model_load(cpath, &o, &handle) }); err != nil {
		return nil, err
	}
	return wrapModel(handle)
}

// addSizes returns a + b (both >= 0), or an error naming what overflowed.
func addSizes(what string, a, b int) (int, error) {
	if b > math.MaxInt-a {
		return 0, invalid("the size of %s overflows", what)
	}
	return a + b, nil
}

// tensorBytes checks t and returns the bytes of its elements.
func tensorBytes(t *Tensor) (int, error) {
	if strings.IndexByte(t.Name, 0) >= 0 {
		return 0, invalid("tensor name %q contains a NUL byte", t.Name)
	}
	if len(t.Shape) > MaxTensorDims {
		return 0, invalid("tensor %q has %d dimensions, at most %d are supported", t.Name, len(t.Shape),
			MaxTensorDims)
	}
	dims := make([]int, len(t.Shape))
	for d, v := range t.Shape {
		if v < 0 {
			return 0, invalid("tensor %q has shape %v: dimension %d is negative", t.Name, t.Shape, d)
		}
		if int64(int(v)) != v {
			return 0, invalid("the size of tensor %q overflows", t.Name)
		}
		dims[d] = int(v)
	}
	want, err := product(fmt.Sprintf("tensor %q", t.Name), dims...)
	if err != nil {
		return 0, err
	}
	var have, elemSize int
	switch t.DType {
	case F32:
		if t.Bits != nil {
			return 0, invalid("tensor %q is F32 but has Bits set (F32 elements go in Data)", t.Name)
		}
		have, elemSize = len(t.Data), 4
	case F16, BF16:
		if t.Data != nil {
			return 0, invalid("tensor %q is %v but has Data set (its bits go in Bits)", t.Name, t.DType)
		}
		have, elemSize = len(t.Bits), 2
	default:
		return 0, invalid("tensor %q has dtype %d, expected F32, F16 or BF16", t.Name, int(t.DType))
	}
	if have != want {
		return 0, invalid("tensor %q has %d elements, expected %d (shape %v)", t.Name, have, want, t.Shape)
	}
	return product(fmt.Sprintf("tensor %q", t.Name), want, elemSize)
}

// CreateModel builds a model from tensors the caller holds (names unique, as in a torchvision or timm
// state_dict); opts may be nil. Each tensor is checked against its shape first. cgo's rules do not let C
// see an array of Go pointers, so the tensors are copied into one C allocation for the call (freed when it
// returns); the library copies what it keeps.
func CreateModel(tensors []Tensor, opts *ModelOptions) (*Model, error) {
	o, err := opts.raw()
	if err != nil {
		return nil, err
	}
	const align = 64
	structBytes, err := product("the tensor list", len(tensors), int(unsafe.Sizeof(C.winattn_tensor{})))
	if err != nil {
		return nil, err
	}
	total := structBytes
	dataOffsets := make([]int, len(tensors))
	for i := range tensors {
		n, err := tensorBytes(&tensors[i])
		if err != nil {
			return nil, err
		}
		if total, err = addSizes("the tensors", total, align-1); err != nil {
			return nil, err
		}
		total = total / align * align
		dataOffsets[i] = total
		if total, err = addSizes("the tensors", total, n); err != nil {
			return nil, err
		}
	}
	namesAt := total
	for i := range tensors {
		if total, err = addSizes("the tensors", total, len(tensors[i].Name)+1); err != nil {
			return nil, err
		}
	}
	if err := checkAlloc("the copy of the tensors", total, 1); err != nil {
		return nil, err
	}
	base := C.go_winattn_malloc(C.size_t(total))
	if base == nil {
		return nil, &Error{Status: StatusOutOfMemory, Message: fmt.Sprintf(
			"cannot allocate %d bytes for the copy of the tensors", total)}
	}
	defer C.free(base)
	ct := unsafe.Slice((*C.winattn_tensor)(base), len(tensors))
	nameAt := namesAt
	for i := range tensors {
		t := &tensors[i]
		name := unsafe.Slice((*byte)(unsafe.Add(base, nameAt)), len(t.Name)+1)
		copy(name, t.Name)
		name[len(t.Name)] = 0
		data := unsafe.Add(base, dataOffsets[i])
		switch t.DType {
		case F32:
			copy(unsafe.Slice((*float32)(data), len(t.Data)), t.Data)
		default:
			copy(unsafe.Slice((*uint16)(data), len(t.Bits)), t.Bits)
		}
		ct[i].name = (*C.char)(unsafe.Pointer(&name[0]))
		ct[i].dtype = C.winattn_dtype(t.DType)
		ct[i].ndim = C.int32_t(len(t.Shape))
		for d := range ct[i].shape {
			ct[i].shape[d] = 0
		}
		for d, v := range t.Shape {
			ct[i].shape[d] = C.int64_t(v)
		}
		ct[i].data = data
		nameAt += len(t.Name) + 1
	}
	var handle *C.winattn_model
	err = call(func() C.winattn_status {
		return C.winattn_model_create((*C.winattn_tensor)(base), C.int64_t(len(tensors)), &o, &handle)
	})
	if err != nil {
		return nil, err
	}
	return wrapModel(handle)
}

// wrapModel takes ownership of a live handle and reads its architecture.
func wrapModel(handle *C.winattn_model) (*Model, error) {
	var ci C.winattn_model_info
	err := call(func() C.winattn_status { return C.winattn_model_get_info(handle, &ci) })
	var info ModelInfo
	if err == nil {
		info, err = infoFromC(&ci)
	}
	if err != nil {
		C.winattn_model_destroy(handle)
		return nil, err
	}
	m := &Model{handle: handle, info: info}
	runtime.SetFinalizer(m, func(m *Model) { m.Close() })
	return m, nil
}

// Info returns the model's architecture (read once, at creation: a model is immutable).
func (m *Model) Info() ModelInfo {
	info := m.info
	info.Depths = append([]int(nil), m.info.Depths...)
	info.NumHeads = append([]int(nil), m.info.NumHeads...)
	info.Dims = append([]int(nil), m.info.Dims...)
	return info
}

// use runs f on the live handle under the read lock (so Close waits for it), or returns the closed error.
func (m *Model) use(f func(h *C.winattn_model) C.winattn_status) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.handle == nil {
		return invalid("the model is closed")
	}
	err := call(func() C.winattn_status { return f(m.handle) })
	runtime.KeepAlive(m)
	return err
}

// checkInput checks input against [batch][in_channels][size[0]][size[1]][size[2]].
func (m *Model) checkInput(input []float32, batch int, size [3]int64) error {
	s, err := positive("size", size[:])
	if err != nil {
		return err
	}
	want, err := product("input", batch, m.info.InChannels, s[0], s[1], s[2])
	if err != nil {
		return err
	}
	return expectLen("input", len(input), want, "batch*in_channels*size[0]*size[1]*size[2]")
}

func (m *Model) logitsLen(batch int) (int, error) {
	if m.info.NumClasses == 0 {
		return 0, invalid("the model is a backbone without a classifier head (num_classes 0): use Features")
	}
	return product("logits", batch, m.info.NumClasses)
}

// Classify classifies input [batch][in_channels][size[0]][size[1]][size[2]] (size = (frames, height,
// width); 2D models: frames 1), normalised as torchvision's transforms leave it, and returns the logits
// [batch][num_classes].
func (m *Model) Classify(input []float32, batch int, size [3]int64) ([]float32, error) {
	if err := m.checkInput(input, batch, size); err != nil {
		return nil, err
	}
	n, err := m.logitsLen(batch)
	if err != nil {
		return nil, err
	}
	logits, err := newFloats("logits", n)
	if err != nil {
		return nil, err
	}
	if err := m.ClassifyInto(input, batch, size, logits); err != nil {
		return nil, err
	}
	return logits, nil
}

// ClassifyInto is Classify writing into logits ([batch][num_classes]).
func (m *Model) ClassifyInto(input []float32, batch int, size [3]int64, logits []float32) error {
	if err := m.checkInput(input, batch, size); err != nil {
		return err
	}
	n, err := m.logitsLen(batch)
	if err != nil {
		return err
	}
	if err := expectLen("logits", len(logits), n, "batch*num_classes"); err != nil {
		return err
	}
	sz := []int64{size[0], size[1], size[2]}
	return m.use(func(h *C.winattn_model) C.winattn_status {
		return C.winattn_model_classify(h, fptr(input), C.int64_t(batch), iptr(sz), fptr(logits))
	})
}

// FeatureShapes returns the shape of each stage's output for an input of size (frames, height, width):
// one (frames, height, width, channels) per stage. Stage s's features are then
// [batch][frames][height][width][channels], channels last.
func (m *Model) FeatureShapes(size [3]int64) ([][4]int64, error) {
	if _, err := positive("size", size[:]); err != nil {
		return nil, err
	}
	sz := []int64{size[0], size[1], size[2]}
	flat := make([]int64, 4*maxStages)
	err := m.use(func(h *C.winattn_model) C.winattn_status {
		return C.winattn_model_feature_shapes(h, iptr(sz), iptr(flat))
	})
	if err != nil {
		return nil, err
	}
	shapes := make([][4]int64, m.info.NumStages())
	for s := range shapes {
		copy(shapes[s][:], flat[4*s:4*s+4])
	}
	return shapes, nil
}

// Features runs the backbone on input (as Classify) and returns every stage's output, each
// [batch][frames][height][width][channels] as FeatureShapes gives it (after the stage's blocks, before the
// next patch merging; the last stage's before the final norm), the layout of torchvision's model.features
// outputs. The stages share one allocation.
func (m *Model) Features(input []float32, batch int, size [3]int64) ([][]float32, error) {
	if err := m.checkInput(input, batch, size); err != nil {
		return nil, err
	}
	shapes, err := m.FeatureShapes(size)
	if err != nil {
		return nil, err
	}
	offsets := make([]int64, maxStages)
	lens := make([]int, len(shapes))
	total := 0
	for s, shape := range shapes {
		for _, v := range shape {
			if v <= 0 || v > 1<<40 {
				return nil, internal("the library reported stage %d's feature shape %v", s, shape)
			}
		}
		what := fmt.Sprintf("stage %d's features", s)
		if lens[s], err = product(what, batch, int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3])); err != nil {
			return nil, err
		}
		offsets[s] = int64(total)
		if total, err = addSizes("the features", total, lens[s]); err != nil {
			return nil, err
		}
	}
	out, err := newFloats("features", total)
	if err != nil {
		return nil, err
	}
	sz := []int64{size[0], size[1], size[2]}
	err = m.use(func(h *C.winattn_model) C.winattn_status {
		return C.go_winattn_model_features(h, fptr(input), C.int64_t(batch), iptr(sz), fptr(out), iptr(offsets),
			C.int(len(shapes)))
	})
	if err != nil {
		return nil, err
	}
	features := make([][]float32, len(shapes))
	for s := range features {
		at := int(offsets[s])
		features[s] = out[at : at+lens[s] : at+lens[s]]
	}
	return features, nil
}

// SetNumThreads sets the model's thread budget, as Layer.SetNumThreads: the most threads one call on the
// model uses; 0 follows the process setting. May be called while other calls run on the model. n outside
// [0, MaxThreads] is ErrInvalidArgument and leaves the budget unchanged.
func (m *Model) SetNumThreads(n int) error {
	cn, err := threadCount(n)
	if err != nil {
		return err
	}
	return m.use(func(h *C.winattn_model) C.winattn_status { return C.winattn_model_set_num_threads(h, cn) })
}

// NumThreads returns the model's thread budget (0 = the process setting).
func (m *Model) NumThreads() (int, error) {
	var n C.int
	err := m.use(func(h *C.winattn_model) C.winattn_status { return C.winattn_model_get_num_threads(h, &n) })
	return int(n), err
}

// Close frees the model. It waits for the calls in flight; calling it again does nothing.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handle != nil {
		C.winattn_model_destroy(m.handle)
		m.handle = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}
