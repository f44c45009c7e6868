package winattn

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// The whole-model API on a tiny Swin v1 built here from tensors with torchvision's names (no checkpoint
// needed): patch 4, embedding 16, depths (2, 2), heads (1, 2), window 4, 10 classes, 32x32 inputs. What is
// checked against plain float64 code written here: the patch embedding, the patch merging, the final norm,
// the pooling and the head (with identity blocks), and that Classify is the head of the features (with
// random blocks).

const (
	tinyE       = 16
	tinyPatch   = 4
	tinyWindow  = 4
	tinyClasses = 10
	lnEps       = 1e-5 // torchvision's LayerNorm epsilon
)

var (
	tinyHeads  = []int{1, 2}
	tinyDepths = []int{2, 2}
	tinySize   = [3]int64{1, 32, 32}
)

type sdEntry struct {
	name  string
	shape []int64
	data  []float32
}

type sdBuilder struct {
	r       *lcg
	entries []sdEntry
}

func (b *sdBuilder) add(name string, scale float32, shape ...int) {
	n := 1
	s := make([]int64, len(shape))
	for i, d := range shape {
		n *= d
		s[i] = int64(d)
	}
	b.entries = append(b.entries, sdEntry{name, s, b.r.vec(n, scale)})
}

// norm adds a LayerNorm's weight (around 1) and bias.
func (b *sdBuilder) norm(prefix string, c int) {
	b.add(prefix+".weight", 0.5, c)
	w := b.entries[len(b.entries)-1].data
	for i := range w {
		w[i]++
	}
	b.add(prefix+".bias", 0.2, c)
}

func (b *sdBuilder) block(prefix string, c, heads int, zero bool) {
	s := func(fanIn int) float32 {
		if zero {
			return 0
		}
		return float32(1 / math.Sqrt(float64(fanIn)))
	}
	var bias float32 = 0.05
	if zero {
		bias = 0
	}
	b.norm(prefix+".norm1", c)
	b.add(prefix+".attn.qkv.weight", s(c), 3*c, c)
	b.add(prefix+".attn.qkv.bias", bias, 3*c)
	b.add(prefix+".attn.proj.weight", s(c), c, c)
	b.add(prefix+".attn.proj.bias", bias, c)
	b.add(prefix+".attn.relative_position_bias_table", 0.5, (2*tinyWindow-1)*(2*tinyWindow-1), heads)
	b.norm(prefix+".norm2", c)
	b.add(prefix+".mlp.0.weight", s(c), 4*c, c)
	b.add(prefix+".mlp.0.bias", bias, 4*c)
	b.add(prefix+".mlp.3.weight", s(4*c), c, 4*c)
	b.add(prefix+".mlp.3.bias", bias, c)
}

// tinySwin is torchvision swin_t's state_dict at a tiny size. zeroBlocks: every block's linear weights and
// biases are zero, so each block is the identity.
func tinySwin(seed uint64, zeroBlocks, head bool) []sdEntry {
	r := lcg(seed)
	b := &sdBuilder{r: &r}
	e := tinyE
	b.add("features.0.0.weight", float32(1/math.Sqrt(3*tinyPatch*tinyPatch)), e, 3, tinyPatch, tinyPatch)
	b.add("features.0.0.bias", 0.1, e)
	b.norm("features.0.2", e)
	for i := 0; i < tinyDepths[0]; i++ {
		b.block(fmt.Sprintf("features.1.%d", i), e, tinyHeads[0], zeroBlocks)
	}
	b.add("features.2.reduction.weight", float32(1/math.Sqrt(float64(4*e))), 2*e, 4*e)
	b.norm("features.2.norm", 4*e)
	for i := 0; i < tinyDepths[1]; i++ {
		b.block(fmt.Sprintf("features.3.%d", i), 2*e, tinyHeads[1], zeroBlocks)
	}
	b.norm("norm", 2*e)
	if head {
		b.add("head.weight", float32(1/math.Sqrt(float64(2*e))), tinyClasses, 2*e)
		b.add("head.bias", 0.1, tinyClasses)
	}
	return b.entries
}

func toTensors(entries []sdEntry) []Tensor {
	out := make([]Tensor, len(entries))
	for i, e := range entries {
		out[i] = F32Tensor(e.name, e.shape, e.data)
	}
	return out
}

func createTiny(t *testing.T, entries []sdEntry) *Model {
	t.Helper()
	m, err := CreateModel(toTensors(entries), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func sdGet(entries []sdEntry, name string) []float32 {
	for _, e := range entries {
		if e.name == name {
			return e.data
		}
	}
	panic("no " + name)
}

func identicalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// assertCloseScaled checks |got - want| <= tol * max(1, max|want|).
func assertCloseScaled(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	scale := 1.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range got {
		if err := math.Abs(float64(got[i]) - want[i]); !(err <= tol*scale) {
			t.Fatalf("%s[%d]: got %v, want %v (err %g, scale %g)", name, i, got[i], want[i], err, scale)
		}
	}
}

// ---- float64 references ---------------------------------------------------------------------------------

func refLayerNorm(x []float64, c int, w, b []float32) []float64 {
	out := make([]float64, 0, len(x))
	for r := 0; r < len(x); r += c {
		row := x[r : r+c]
		mean, v := 0.0, 0.0
		for _, a := range row {
			mean += a
		}
		mean /= float64(c)
		for _, a := range row {
			v += (a - mean) * (a - mean)
		}
		inv := 1 / math.Sqrt(v/float64(c)+lnEps)
		for k, a := range row {
			out = append(out, (a-mean)*inv*float64(w[k])+float64(b[k]))
		}
	}
	return out
}

// refEmbed: the stride-4 4x4 convolution of [batch][3][h][w], then LayerNorm: [batch][h/4][w/4][E].
func refEmbed(m []sdEntry, x []float32, batch, h, w int) []float64 {
	cw, cb := sdGet(m, "features.0.0.weight"), sdGet(m, "features.0.0.bias")
	var out []float64
	for b := 0; b < batch; b++ {
		for i := 0; i < h/tinyPatch; i++ {
			for j := 0; j < w/tinyPatch; j++ {
				for e := 0; e < tinyE; e++ {
					acc := float64(cb[e])
					for c := 0; c < 3; c++ {
						for ky := 0; ky < tinyPatch; ky++ {
							for kx := 0; kx < tinyPatch; kx++ {
								xi := ((b*3+c)*h+i*tinyPatch+ky)*w + j*tinyPatch + kx
								wi := ((e*3+c)*tinyPatch+ky)*tinyPatch + kx
								acc += float64(cw[wi]) * float64(x[xi])
							}
						}
					}
					out = append(out, acc)
				}
			}
		}
	}
	return refLayerNorm(out, tinyE, sdGet(m, "features.0.2.weight"), sdGet(m, "features.0.2.bias"))
}

// refMerge is torchvision's PatchMerging: zero-pad an odd height or width at the end, concat (2i,2j),
// (2i+1,2j), (2i,2j+1), (2i+1,2j+1), LayerNorm, reduction.
func refMerge(m []sdEntry, x []float64, batch, gh, gw, c int) []float64 {
	var cat []float64
	zeros := make([]float64, c)
	for b := 0; b < batch; b++ {
		for i := 0; i < (gh+1)/2; i++ {
			for j := 0; j < (gw+1)/2; j++ {
				for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
					y, xx := 2*i+d[0], 2*j+d[1]
					if y >= gh || xx >= gw {
						cat = append(cat, zeros...)
						continue
					}
					tok := (b*gh+y)*gw + xx
					cat = append(cat, x[tok*c:(tok+1)*c]...)
				}
			}
		}
	}
	normed := refLayerNorm(cat, 4*c, sdGet(m, "features.2.norm.weight"), sdGet(m, "features.2.norm.bias"))
	r := sdGet(m, "features.2.reduction.weight")
	var out []float64
	for row := 0; row < len(normed); row += 4 * c {
		for o := 0; o < 2*c; o++ {
			acc := 0.0
			for k := 0; k < 4*c; k++ {
				acc += float64(r[o*4*c+k]) * normed[row+k]
			}
			out = append(out, acc)
		}
	}
	return out
}

// refHead: final LayerNorm, average over the tokens, head; [batch][classes] from [batch][tokens][c].
func refHead(m []sdEntry, x []float64, batch, c int) []float64 {
	normed := refLayerNorm(x, c, sdGet(m, "norm.weight"), sdGet(m, "norm.bias"))
	tokens := len(x) / (batch * c)
	hw, hb := sdGet(m, "head.weight"), sdGet(m, "head.bias")
	var out []float64
	for b := 0; b < batch; b++ {
		pooled := make([]float64, c)
		for t := 0; t < tokens; t++ {
			for k := 0; k < c; k++ {
				pooled[k] += normed[(b*tokens+t)*c+k] / float64(tokens)
			}
		}
		for o := 0; o < tinyClasses; o++ {
			acc := float64(hb[o])
			for k := 0; k < c; k++ {
				acc += float64(hw[o*c+k]) * pooled[k]
			}
			out = append(out, acc)
		}
	}
	return out
}

// ---- tests ----------------------------------------------------------------------------------------------

func TestModelInfo(t *testing.T) {
	m := createTiny(t, tinySwin(1, false, true))
	info := m.Info()
	want := ModelInfo{Family: ModelSwin, InChannels: 3, NumClasses: tinyClasses, EmbedDim: tinyE,
		Depths: tinyDepths, NumHeads: tinyHeads, Dims: []int{tinyE, 2 * tinyE},
		Patch: [3]int64{1, tinyPatch, tinyPatch}, Window: [3]int64{1, tinyWindow, tinyWindow}}
	if !reflect.DeepEqual(info, want) || info.NumStages() != 2 {
		t.Fatalf("info %+v, want %+v", info, want)
	}
	if info.Family.String() != "Swin" {
		t.Fatal(info.Family)
	}
	info.Depths[0] = 99 // a copy
	if m.Info().Depths[0] != 2 {
		t.Fatal("Info returned the model's own slice")
	}
	if n, err := m.NumThreads(); err != nil || n != 0 {
		t.Fatalf("budget at create: %d, %v", n, err)
	}
}

func TestClassifyIsTheHeadOfTheFeatures(t *testing.T) {
	entries := tinySwin(2, false, true)
	m := createTiny(t, entries)
	const batch = 2
	r := lcg(3)
	x := r.vec(batch*3*32*32, 1)
	logits, err := m.Classify(x, batch, tinySize)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != batch*tinyClasses {
		t.Fatalf("%d logits", len(logits))
	}
	for _, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("non-finite logits %v", logits)
		}
	}
	again, err := m.Classify(x, batch, tinySize)
	if err != nil || !identicalBits(logits, again) {
		t.Fatalf("a second call differs: %v", err)
	}
	into := make([]float32, batch*tinyClasses)
	if err := m.ClassifyInto(x, batch, tinySize, into); err != nil || !identicalBits(logits, into) {
		t.Fatalf("ClassifyInto differs: %v", err)
	}
	if identicalBits(logits[:tinyClasses], logits[tinyClasses:]) {
		t.Fatal("two different images gave the same logits")
	}

	shapes, err := m.FeatureShapes(tinySize)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][4]int64{{1, 8, 8, tinyE}, {1, 4, 4, 2 * tinyE}}; !reflect.DeepEqual(shapes, want) {
		t.Fatalf("shapes %v, want %v", shapes, want)
	}
	features, err := m.Features(x, batch, tinySize)
	if err != nil {
		t.Fatal(err)
	}
	for s, f := range features {
		n := batch
		for _, d := range shapes[s] {
			n *= int(d)
		}
		if len(f) != n || cap(f) != n {
			t.Fatalf("stage %d: %d features (cap %d), want %d", s, len(f), cap(f), n)
		}
	}
	assertCloseScaled(t, "logits vs head(features)", logits,
		refHead(entries, to64(features[1]), batch, 2*tinyE), 1e-4)
}

func TestModelEmbeddingMergingAndHeadMatchAReference(t *testing.T) {
	// Identity blocks: stage 1 = embed(x), stage 2 = merge(stage 1), logits = head(stage 2).
	entries := tinySwin(4, true, true)
	m := createTiny(t, entries)
	// Non-square images: 8x10 then 4x5 tokens (padded to the window); 38x45 drops the pixels the patches do
	// not cover (9x11 tokens) and pads the odd grid for the merging (5x6).
	for _, c := range []struct{ batch, h, w, mh, mw int }{{2, 32, 40, 4, 5}, {1, 38, 45, 5, 6}} {
		size := [3]int64{1, int64(c.h), int64(c.w)}
		gh, gw := c.h/tinyPatch, c.w/tinyPatch
		r := lcg(5)
		x := r.vec(c.batch*3*c.h*c.w, 1)
		shapes, err := m.FeatureShapes(size)
		want := [][4]int64{{1, int64(gh), int64(gw), tinyE}, {1, int64(c.mh), int64(c.mw), 2 * tinyE}}
		if err != nil || !reflect.DeepEqual(shapes, want) {
			t.Fatalf("%dx%d: shapes %v (%v), want %v", c.h, c.w, shapes, err, want)
		}
		features, err := m.Features(x, c.batch, size)
		if err != nil {
			t.Fatal(err)
		}
		stage1 := refEmbed(entries, x, c.batch, c.h, c.w)
		assertCloseScaled(t, "stage 1", features[0], stage1, 1e-4)
		stage2 := refMerge(entries, stage1, c.batch, gh, gw, tinyE)
		assertCloseScaled(t, "stage 2", features[1], stage2, 1e-4)
		logits, err := m.Classify(x, c.batch, size)
		if err != nil {
			t.Fatal(err)
		}
		assertCloseScaled(t, "logits", logits, refHead(entries, stage2, c.batch, 2*tinyE), 1e-4)
	}
}

// halvable rounds to a value bfloat16 and float16 both hold exactly (8 significant bits, |x| >= 2^-14 or 0).
func halvable(x float32) float32 {
	if math.Abs(float64(x)) < 1.0/16384 {
		return 0
	}
	return math.Float32frombits(math.Float32bits(x) & 0xffff0000)
}

func bf16Bits(x float32) uint16 { return uint16(math.Float32bits(x) >> 16) }

// f16Bits encodes a value halvable returned (normal or zero: no rounding needed).
func f16Bits(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	if x == 0 {
		return sign
	}
	exp := int(b>>23&0xff) - 127 + 15
	if exp < 1 || exp > 30 {
		panic(fmt.Sprint(x, " is outside float16's normal range"))
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

func halvableSwin(seed uint64) []sdEntry {
	entries := tinySwin(seed, false, true)
	for _, e := range entries {
		for i, v := range e.data {
			e.data[i] = halvable(v)
		}
	}
	return entries
}

func TestHalfPrecisionTensorsWidenExactly(t *testing.T) {
	entries := halvableSwin(6)
	ref := createTiny(t, entries)
	mixed := make([]Tensor, len(entries))
	for i, e := range entries {
		bits := make([]uint16, len(e.data))
		for k, v := range e.data {
			if i%2 == 0 {
				bits[k] = f16Bits(v)
			} else {
				bits[k] = bf16Bits(v)
			}
		}
		switch {
		case i == 3:
			mixed[i] = F32Tensor(e.name, e.shape, e.data)
		case i%2 == 0:
			mixed[i] = F16Tensor(e.name, e.shape, bits)
		default:
			mixed[i] = BF16Tensor(e.name, e.shape, bits)
		}
	}
	m, err := CreateModel(mixed, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r := lcg(7)
	x := r.vec(3*32*32, 1)
	want, err1 := ref.Classify(x, 1, tinySize)
	got, err2 := m.Classify(x, 1, tinySize)
	if err1 != nil || err2 != nil || !identicalBits(got, want) {
		t.Fatalf("%v %v: %v != %v", err1, err2, got, want)
	}
}

// writeSafetensors writes the entries as F32, or F16 where asF16 says so.
func writeSafetensors(t *testing.T, path string, entries []sdEntry, asF16 func(string) bool) {
	t.Helper()
	type info struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets [2]int  `json:"data_offsets"`
	}
	header := map[string]info{}
	var data []byte
	for _, e := range entries {
		start := len(data)
		dtype := "F32"
		for _, v := range e.data {
			if asF16(e.name) {
				dtype = "F16"
				data = binary.LittleEndian.AppendUint16(data, f16Bits(v))
			} else {
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
			}
		}
		header[e.name] = info{dtype, e.shape, [2]int{start, len(data)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	file = append(append(file, h...), data...)
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadModel(t *testing.T) {
	entries := halvableSwin(8)
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	writeSafetensors(t, path, entries, func(name string) bool { return name[len(name)-4:] == "bias" })
	loaded, err := LoadModel(path, &ModelOptions{NumThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if n, err := loaded.NumThreads(); err != nil || n != 2 {
		t.Fatalf("budget %d, %v", n, err)
	}
	created := createTiny(t, entries)
	if !reflect.DeepEqual(loaded.Info(), created.Info()) {
		t.Fatalf("%+v != %+v", loaded.Info(), created.Info())
	}
	r := lcg(9)
	x := r.vec(2*3*32*32, 1)
	a, err1 := loaded.Classify(x, 2, tinySize)
	b, err2 := created.Classify(x, 2, tinySize)
	if err1 != nil || err2 != nil || !identicalBits(a, b) {
		t.Fatalf("%v %v: loaded %v, created %v", err1, err2, a, b)
	}

	_, err = LoadModel(filepath.Join(t.TempDir(), "none.safetensors"), nil)
	checkError(t, err, ErrInvalidArgument, "none.safetensors")
	_, err = LoadModel("a\x00b", nil)
	checkError(t, err, ErrInvalidArgument, "NUL")
	_, err = LoadModel(path, &ModelOptions{NumThreads: -1})
	checkError(t, err, ErrInvalidArgument, "num_threads")
}

func TestBadTensorsAreNamedInTheError(t *testing.T) {
	entries := tinySwin(10, false, true)
	var without []sdEntry
	for _, e := range entries {
		if e.name != "features.1.0.mlp.3.weight" {
			without = append(without, e)
		}
	}
	_, err := CreateModel(toTensors(without), nil)
	checkError(t, err, ErrInvalidArgument, "features.1.0.mlp.3.weight")

	reshaped := append([]sdEntry(nil), entries...)
	for i, e := range reshaped {
		if e.name == "features.3.1.attn.qkv.weight" {
			reshaped[i].shape = []int64{3*2*tinyE + 3, 2 * tinyE}
			reshaped[i].data = make([]float32, (3*2*tinyE+3)*2*tinyE)
		}
	}
	_, err = CreateModel(toTensors(reshaped), nil)
	checkError(t, err, ErrInvalidArgument, "features.3.1.attn.qkv.weight")

	extra := append(append([]sdEntry(nil), entries...), sdEntry{"features.9.unused.weight", []int64{2}, []float32{0, 0}})
	_, err = CreateModel(toTensors(extra), nil)
	checkError(t, err, ErrInvalidArgument, "features.9.unused.weight")

	nan := toTensors(entries)
	nan[5].Data = append([]float32{float32(math.NaN())}, nan[5].Data[1:]...)
	_, err = CreateModel(nan, nil)
	checkError(t, err, ErrInvalidArgument, nan[5].Name)

	// The package's own checks, before the library is called.
	bad := toTensors(entries)
	bad[0].Shape = []int64{16, 3, 4, 5}
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, `tensor "features.0.0.weight" has 768 elements, expected 960`)
	bad = toTensors(entries)
	bad[1].Name = "bad\x00name"
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "NUL")
	bad = toTensors(entries)
	bad[1].Shape = []int64{1, 1, 1, 1, 1, 1, 1, 1, 16}
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "9 dimensions")
	bad = toTensors(entries)
	bad[1].Shape = []int64{-16}
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "negative")
	bad = toTensors(entries)
	bad[1].Shape = []int64{math.MaxInt64, math.MaxInt64}
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "overflow")
	bad = toTensors(entries)
	bad[1].DType = F16
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "Data set")
	bad = toTensors(entries)
	bad[1].DType = DType(7)
	_, err = CreateModel(bad, nil)
	checkError(t, err, ErrInvalidArgument, "dtype 7")
	_, err = CreateModel(toTensors(entries), &ModelOptions{NumThreads: MaxThreads + 1})
	checkError(t, err, ErrInvalidArgument, "num_threads")
	_, err = CreateModel(nil, nil)
	checkError(t, err, ErrInvalidArgument, "")
}

func TestModelRefusesWrongInputs(t *testing.T) {
	m := createTiny(t, tinySwin(11, false, true))
	x := make([]float32, 3*32*32)
	_, err := m.Classify(x[1:], 1, tinySize)
	checkError(t, err, ErrInvalidArgument, "input has 3071 elements, expected 3072")
	_, err = m.Classify(x, 2, tinySize)
	checkError(t, err, ErrInvalidArgument, "expected 6144")
	checkError(t, m.ClassifyInto(x, 1, tinySize, make([]float32, tinyClasses+1)), ErrInvalidArgument,
		"logits has 11 elements, expected 10")
	_, err = m.Features(x, 1, [3]int64{1, 32, 33})
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = m.Classify(x, 1, [3]int64{1, 0, 32})
	checkError(t, err, ErrInvalidArgument, "size[1] = 0")
	_, err = m.Classify(x, -1, tinySize)
	checkError(t, err, ErrInvalidArgument, "negative")
	// Sizes whose products are huge or overflow: refused before anything is allocated.
	_, err = m.Classify(x, 1<<50, tinySize)
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = m.Classify(x, math.MaxInt, tinySize)
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = m.Features(x, math.MaxInt/4, tinySize)
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = m.FeatureShapes([3]int64{1, math.MaxInt64, 1})
	checkError(t, err, ErrInvalidArgument, "size")

	// What only the library knows: frames != 1 for a 2D model, a size smaller than the patch.
	_, err = m.Classify(make([]float32, 3*2*32*32), 1, [3]int64{2, 32, 32})
	checkError(t, err, ErrInvalidArgument, "")
	_, err = m.FeatureShapes([3]int64{2, 32, 32})
	checkError(t, err, ErrInvalidArgument, "")
	_, err = m.Classify(make([]float32, 3*3*32), 1, [3]int64{1, 3, 32})
	checkError(t, err, ErrInvalidArgument, "")
	if out, err := m.Classify(x, 1, tinySize); err != nil || len(out) != tinyClasses {
		t.Fatalf("the model no longer works: %v", err)
	}
}

func TestBackboneHasFeaturesButNoLogits(t *testing.T) {
	m := createTiny(t, tinySwin(12, false, false))
	if m.Info().NumClasses != 0 {
		t.Fatal(m.Info())
	}
	r := lcg(13)
	x := r.vec(3*32*32, 1)
	_, err := m.Classify(x, 1, tinySize)
	checkError(t, err, ErrInvalidArgument, "num_classes 0")
	f, err := m.Features(x, 1, tinySize)
	if err != nil || len(f) != 2 || len(f[1]) != 4*4*2*tinyE {
		t.Fatalf("features: %v", err)
	}
}

func TestModelThreadBudgetDoesNotChangeBits(t *testing.T) {
	m := createTiny(t, tinySwin(14, false, true))
	r := lcg(15)
	x := r.vec(2*3*32*32, 1)
	run := func(n int) ([]float32, [][]float32) {
		if err := m.SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		if got, err := m.NumThreads(); err != nil || got != n {
			t.Fatalf("budget %d, %v; want %d", got, err, n)
		}
		logits, err1 := m.Classify(x, 2, tinySize)
		features, err2 := m.Features(x, 2, tinySize)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return logits, features
	}
	l1, f1 := run(1)
	l2, f2 := run(2)
	if !identicalBits(l1, l2) || !identicalBits(f1[0], f2[0]) || !identicalBits(f1[1], f2[1]) {
		t.Fatal("budgets 1 and 2 give different bits")
	}
	for _, n := range []int{-1, MaxThreads + 1, math.MinInt32 - 1} {
		checkError(t, m.SetNumThreads(n), ErrInvalidArgument, "num_threads")
	}
	if n, _ := m.NumThreads(); n != 2 {
		t.Fatalf("budget changed to %d by a refused call", n)
	}
}

func TestModelSharedBetweenGoroutinesAndClose(t *testing.T) {
	m, err := CreateModel(toTensors(tinySwin(16, false, true)), nil)
	if err != nil {
		t.Fatal(err)
	}
	inputs := make([][]float32, 4)
	want := make([][]float32, 4)
	for i := range inputs {
		r := lcg(100 + i)
		inputs[i] = r.vec(3*32*32, 1)
		if want[i], err = m.Classify(inputs[i], 1, tinySize); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*3)
	for i := range inputs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for round := 0; round < 3; round++ {
				if round == 1 {
					if err := m.SetNumThreads(1); err != nil {
						errs <- err
					}
				}
				got, err := m.Classify(inputs[i], 1, tinySize)
				if err != nil || !identicalBits(got, want[i]) {
					errs <- fmt.Errorf("goroutine %d round %d: %v", i, round, err)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	_, err = m.Classify(inputs[0], 1, tinySize)
	checkError(t, err, ErrInvalidArgument, "closed")
	_, err = m.FeatureShapes(tinySize)
	checkError(t, err, ErrInvalidArgument, "closed")
}
