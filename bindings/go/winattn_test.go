package winattn

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

func assertClose(t *testing.T, name string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", name, len(got), len(want))
	}
	for i := range got {
		if err := math.Abs(float64(got[i]) - want[i]); !(err <= atol+rtol*math.Abs(want[i])) {
			t.Fatalf("%s[%d]: got %v, want %v (err %g)", name, i, got[i], want[i], err)
		}
	}
}

func TestVersionAndISA(t *testing.T) {
	if want := fmt.Sprintf("%d.%d.%d", VersionMajor, VersionMinor, VersionPatch); Version() != want {
		t.Fatalf("Version() = %q, header says %q", Version(), want)
	}
	switch ActiveISA() {
	case "amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar":
	default:
		t.Fatalf("ActiveISA() = %q", ActiveISA())
	}
	if StatusInvalidArgument.String() != "invalid argument" {
		t.Fatalf("status string %q", StatusInvalidArgument.String())
	}
}

func TestRelativePositionIndex(t *testing.T) {
	for _, w := range [][]int64{{5}, {3, 4}, {2, 3, 2}, {1, 1}, {1, 7}} {
		got, err := RelativePositionIndex(w)
		if err != nil {
			t.Fatal(err)
		}
		want := refIndex(w)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("window %v: got %v, want %v", w, got, want)
		}
	}
}

func TestBiasLookupAndBackward(t *testing.T) {
	r := lcg(7)
	window := []int64{3, 4}
	heads, n := 3, 12
	rows, err := RelativePositionTableRows(window)
	if err != nil || rows != 35 {
		t.Fatalf("rows %d, %v", rows, err)
	}
	index := refIndex(window)
	table := r.vec(rows*heads, 2)
	bias, err := RelativePositionBias(table, heads, index, n)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "bias", bias, refLookup(to64(table), heads, index, n), 0, 0)

	gradBias := r.vec(heads*n*n, 1)
	start := r.vec(rows*heads, 1)
	gradTable := append([]float32(nil), start...)
	if err := RelativePositionBiasBackward(gradBias, heads, index, n, gradTable); err != nil {
		t.Fatal(err)
	}
	want := to64(start)
	for h := 0; h < heads; h++ {
		for ij := 0; ij < n*n; ij++ {
			want[int(index[ij])*heads+h] += float64(gradBias[h*n*n+ij])
		}
	}
	assertClose(t, "gradTable", gradTable, want, 1e-5, 1e-5)
}

func TestContinuousPositionBiasTable(t *testing.T) {
	r := lcg(11)
	for _, c := range []struct {
		wh, ww        int64
		hidden, heads int
	}{{3, 4, 16, 2}, {1, 5, 8, 3}, {4, 4, 32, 4}} {
		w1, b1, w2 := r.vec(c.hidden*2, 1), r.vec(c.hidden, 0.5), r.vec(c.heads*c.hidden, 0.3)
		got, err := ContinuousPositionBiasTable(c.wh, c.ww, w1, b1, w2, c.hidden, c.heads)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "cpb", got, refCPBTable(c.wh, c.ww, w1, b1, w2, c.hidden, c.heads), 1e-4, 1e-4)
		got, err = ContinuousPositionBiasTable(c.wh, c.ww, w1, nil, w2, c.hidden, c.heads)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "cpb (no b1)", got, refCPBTable(c.wh, c.ww, w1, nil, w2, c.hidden, c.heads), 1e-4, 1e-4)
	}
}

func TestShiftedWindowMask(t *testing.T) {
	for _, c := range [][3][3]int64{
		{{1, 8, 8}, {1, 4, 4}, {0, 2, 2}},
		{{1, 6, 9}, {1, 3, 3}, {0, 1, 2}},
		{{4, 4, 4}, {2, 2, 2}, {1, 1, 1}},
		{{1, 4, 4}, {1, 2, 2}, {0, 0, 0}},
	} {
		got, err := ShiftedWindowMask(c[0], c[1], c[2])
		if err != nil {
			t.Fatal(err)
		}
		u := func(a [3]int64) [3]int { return [3]int{int(a[0]), int(a[1]), int(a[2])} }
		assertClose(t, fmt.Sprint("mask ", c), got, refMask(u(c[0]), u(c[1]), u(c[2])), 0, 0)
	}
}

func checkWindowAttention(t *testing.T, r *lcg) {
	s := AttentionShape{NumWindows: 4, NumHeads: 2, N: 9, HeadDim: 8}
	total := 4 * 2 * 9 * 8
	q, k, v := r.vec(total, 1), r.vec(total, 1), r.vec(total, 1)
	bias := r.vec(2*81, 1)
	mask := make([]float32, 2*81)
	for i := range mask {
		if i*7%5 == 0 {
			mask[i] = -100
		}
	}
	const scale = 0.35
	got, err := WindowAttention(s, q, k, v, scale, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "attention", got, refWindowAttention(s, q, k, v, float64(float32(scale)), nil, nil), 1e-5, 1e-4)
	got, err = WindowAttention(s, q, k, v, scale, bias, mask)
	if err != nil {
		t.Fatal(err)
	}
	want := refWindowAttention(s, q, k, v, float64(float32(scale)), bias, mask)
	assertClose(t, "attention+bias+mask", got, want, 1e-5, 1e-4)
	out := make([]float32, total)
	if err := WindowAttentionInto(s, q, k, v, scale, bias, mask, out); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "WindowAttentionInto", out, want, 1e-5, 1e-4)
}

type layerCase struct {
	channels, heads int
	window, shift   [3]int64
	batch           int
	grid            [3]int64
	v2              bool
}

func ints(a [3]int64) [3]int { return [3]int{int(a[0]), int(a[1]), int(a[2])} }

func checkLayer(t *testing.T, r *lcg, lc layerCase) {
	c, heads := lc.channels, lc.heads
	qkvW, qkvB := r.vec(3*c*c, 0.4), r.vec(3*c, 0.2)
	projW, projB := r.vec(c*c, 0.4), r.vec(c, 0.2)
	n := int(lc.window[0] * lc.window[1] * lc.window[2])
	total := lc.batch * int(lc.grid[0]*lc.grid[1]*lc.grid[2]) * c
	input := r.vec(total, 1)

	desc := LayerDesc{Channels: c, NumHeads: heads, Window: lc.window, Shift: lc.shift, QKVWeight: qkvW,
		QKVBias: qkvB, ProjWeight: projW, ProjBias: projB}
	var rpb64 []float64
	if lc.v2 {
		const hidden = 16
		desc.CPBWeight1, desc.CPBBias1, desc.CPBWeight2, desc.CPBHidden = r.vec(hidden*2, 1), r.vec(hidden, 0.5),
			r.vec(heads*hidden, 0.3), hidden
		desc.LogitScale = r.vec(heads, 2)
		for h := range desc.LogitScale {
			desc.LogitScale[h] += 3
		}
		table := refCPBTable(lc.window[1], lc.window[2], desc.CPBWeight1, desc.CPBBias1, desc.CPBWeight2, hidden, heads)
		rpb64 = refLookup(table, heads, refIndex(lc.window[1:]), n)
	} else {
		rows, err := RelativePositionTableRows(lc.window[:])
		if err != nil {
			t.Fatal(err)
		}
		desc.RelativePositionBiasTable = r.vec(rows*heads, 1)
		rpb64 = refLookup(to64(desc.RelativePositionBiasTable), heads, refIndex(lc.window[:]), n)
	}
	ref := &refLayer{channels: c, heads: heads, window: ints(lc.window), shift: ints(lc.shift), qkvW: qkvW,
		qkvB: qkvB, projW: projW, projB: projB, rpb: rpb64, logitScale: desc.LogitScale}
	want := ref.forward(input, lc.batch, ints(lc.grid))
	const tol = 2e-4

	rpb := make([]float32, len(rpb64))
	for i, x := range rpb64 {
		rpb[i] = float32(x)
	}
	args := &WindowAttentionArgs{Batch: lc.batch, Grid: lc.grid, Channels: c, NumHeads: heads, Window: lc.window,
		Shift: lc.shift, QKVWeight: qkvW, QKVBias: qkvB, ProjWeight: projW, ProjBias: projB,
		RelativePositionBias: rpb, LogitScale: desc.LogitScale}
	got, err := ShiftedWindowAttention(args, input)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, fmt.Sprintf("ShiftedWindowAttention %+v", lc), got, want, tol, tol)

	layer, err := NewLayer(&desc)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	got, err = layer.Forward(input, lc.batch, lc.grid)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, fmt.Sprintf("Layer.Forward %+v", lc), got, want, tol, tol)
}

var layerCases = []layerCase{
	// 2D Swin, shifted, grid padded from 5x7 to 6x9.
	{channels: 8, heads: 2, window: [3]int64{1, 3, 3}, shift: [3]int64{0, 1, 2}, batch: 2, grid: [3]int64{1, 5, 7}},
	// 2D, window larger than the map: the shift is dropped.
	{channels: 6, heads: 3, window: [3]int64{1, 4, 4}, shift: [3]int64{0, 2, 2}, batch: 1, grid: [3]int64{1, 3, 4}},
	// 3D Video Swin, shifted on every axis.
	{channels: 8, heads: 2, window: [3]int64{2, 2, 2}, shift: [3]int64{1, 1, 1}, batch: 1, grid: [3]int64{4, 4, 2}},
	// SwinV2: cosine attention + continuous position bias.
	{channels: 8, heads: 2, window: [3]int64{1, 3, 3}, shift: [3]int64{0, 1, 1}, batch: 1, grid: [3]int64{1, 6, 6}, v2: true},
}

func TestAttentionAndLayersOnEveryISA(t *testing.T) {
	defer SetMaxISA("native")
	ranks := []string{"scalar", "avx2", "avx512", "avx512_bf16", "amx_bf16"}
	for rank, isa := range ranks {
		if err := SetMaxISA(isa); err != nil {
			t.Fatal(err)
		}
		active := ActiveISA()
		activeRank := -1
		for i, name := range ranks {
			if name == active {
				activeRank = i
			}
		}
		if activeRank < 0 || activeRank > rank || (isa == "scalar" && active != "scalar") {
			t.Fatalf("cap %s, active %s", isa, active)
		}
		r := lcg(1234)
		checkWindowAttention(t, &r)
		for _, lc := range layerCases {
			checkLayer(t, &r, lc)
		}
	}
}

func TestThreadCountDoesNotChangeBits(t *testing.T) {
	defer SetNumThreads(0)
	r := lcg(99)
	s := AttentionShape{NumWindows: 6, NumHeads: 2, N: 16, HeadDim: 8}
	total := 6 * 2 * 16 * 8
	q, k, v := r.vec(total, 1), r.vec(total, 1), r.vec(total, 1)
	var results [][]float32
	for _, threads := range []int{1, 2} {
		if err := SetNumThreads(threads); err != nil || NumThreads() != threads {
			t.Fatalf("SetNumThreads(%d): %v, NumThreads %d", threads, err, NumThreads())
		}
		out, err := WindowAttention(s, q, k, v, 0.3, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, out)
	}
	if fmt.Sprint(results[0]) != fmt.Sprint(results[1]) {
		t.Fatal("1 and 2 threads give different results")
	}
}

func TestLayerSharedBetweenGoroutines(t *testing.T) {
	r := lcg(5)
	c := 8
	window := [3]int64{1, 4, 4}
	desc := &LayerDesc{Channels: c, NumHeads: 2, Window: window, Shift: [3]int64{0, 2, 2},
		QKVWeight: r.vec(3*c*c, 0.4), ProjWeight: r.vec(c*c, 0.4), RelativePositionBiasTable: r.vec(49*2, 1)}
	layer, err := NewLayer(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	grid := [3]int64{1, 8, 8}
	inputs := make([][]float32, 4)
	serial := make([][]float32, 4)
	for i := range inputs {
		inputs[i] = r.vec(2*64*c, 1)
		if serial[i], err = layer.Forward(inputs[i], 2, grid); err != nil {
			t.Fatal(err)
		}
	}
	ref := &refLayer{channels: c, heads: 2, window: ints(window), shift: [3]int{0, 2, 2}, qkvW: desc.QKVWeight,
		projW: desc.ProjWeight, rpb: refLookup(to64(desc.RelativePositionBiasTable), 2, refIndex(window[1:]), 16)}
	assertClose(t, "serial", serial[0], ref.forward(inputs[0], 2, ints(grid)), 2e-4, 2e-4)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				i := (g + round) % len(inputs)
				out, err := layer.Forward(inputs[i], 2, grid)
				if err != nil {
					errs <- err
					return
				}
				if fmt.Sprint(out) != fmt.Sprint(serial[i]) {
					errs <- fmt.Errorf("goroutine %d round %d: result differs from the serial one", g, round)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestLayerClose(t *testing.T) {
	w := make([]float32, 48)
	layer, err := NewLayer(&LayerDesc{Channels: 4, NumHeads: 2, Window: [3]int64{1, 2, 2}, QKVWeight: w,
		ProjWeight: w[:16]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := layer.Forward(make([]float32, 16), 1, [3]int64{1, 2, 2}); err != nil {
		t.Fatal(err)
	}
	if err := layer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := layer.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	_, err = layer.Forward(make([]float32, 16), 1, [3]int64{1, 2, 2})
	checkError(t, err, ErrInvalidArgument, "closed")
}

func checkError(t *testing.T, err error, sentinel *Error, mentions string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *Error with status %v", err, sentinel.Status)
	}
	if !errors.Is(err, sentinel) || e.Status != sentinel.Status {
		t.Fatalf("got status %v (%v), want %v", e.Status, err, sentinel.Status)
	}
	for _, other := range []*Error{ErrInvalidArgument, ErrUnsupported, ErrOutOfMemory, ErrInternal} {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("%v matches %v too", err, other)
		}
	}
	if e.Message == "" || !strings.Contains(e.Message, mentions) || !strings.Contains(err.Error(), e.Message) {
		t.Fatalf("message %q should be non-empty and mention %q", e.Message, mentions)
	}
}

func TestErrorsFromLengthChecks(t *testing.T) {
	s := AttentionShape{NumWindows: 1, NumHeads: 1, N: 2, HeadDim: 2}
	x := make([]float32, 4)
	_, err := WindowAttention(s, x[:3], x, x, 1, nil, nil)
	checkError(t, err, ErrInvalidArgument, "q")
	_, err = WindowAttention(s, x, x, x[:1], 1, nil, nil)
	checkError(t, err, ErrInvalidArgument, "v")
	_, err = WindowAttention(s, x, x, x, 1, x[:3], nil)
	checkError(t, err, ErrInvalidArgument, "bias")
	_, err = WindowAttention(s, x, x, x, 1, nil, make([]float32, 6))
	checkError(t, err, ErrInvalidArgument, "mask")
	checkError(t, WindowAttentionInto(s, x, x, x, 1, nil, nil, make([]float32, 5)), ErrInvalidArgument, "out")
	_, err = RelativePositionIndex(nil)
	checkError(t, err, ErrInvalidArgument, "window")
	_, err = RelativePositionIndex([]int64{2, 0})
	checkError(t, err, ErrInvalidArgument, "window")
	_, err = RelativePositionBias(make([]float32, 7), 2, make([]int64, 4), 2)
	checkError(t, err, ErrInvalidArgument, "table")
	_, err = ShiftedWindowMask([3]int64{1, 5, 4}, [3]int64{1, 2, 2}, [3]int64{})
	checkError(t, err, ErrInvalidArgument, "grid")
	w := make([]float32, 48)
	_, err = NewLayer(&LayerDesc{Channels: 4, NumHeads: 2, Window: [3]int64{1, 2, 2}, QKVWeight: w[:47],
		ProjWeight: w[:16]})
	checkError(t, err, ErrInvalidArgument, "qkv_weight")
	layer, err := NewLayer(&LayerDesc{Channels: 4, NumHeads: 2, Window: [3]int64{1, 2, 2}, QKVWeight: w,
		ProjWeight: w[:16]})
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	_, err = layer.Forward(make([]float32, 15), 1, [3]int64{1, 2, 2})
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = layer.Forward(make([]float32, 16), 1, [3]int64{1, -2, 2})
	checkError(t, err, ErrInvalidArgument, "grid")
}

func TestErrorsFromTheLibrary(t *testing.T) {
	checkError(t, SetMaxISA("mmx"), ErrInvalidArgument, "")
	checkError(t, SetNumThreads(-1), ErrInvalidArgument, "")
	// Index entry out of range: the table has 3 rows.
	_, err := RelativePositionBias([]float32{1, 1, 1}, 1, []int64{0, 1, 2, 5}, 2)
	checkError(t, err, ErrInvalidArgument, "")
	// Shift out of range.
	_, err = ShiftedWindowMask([3]int64{1, 4, 4}, [3]int64{1, 2, 2}, [3]int64{0, 2, 0})
	checkError(t, err, ErrInvalidArgument, "")
	// channels % num_heads != 0, and a shift out of range: outputs untouched.
	w := make([]float32, 3*36)
	args := WindowAttentionArgs{Batch: 1, Grid: [3]int64{1, 2, 2}, Channels: 6, NumHeads: 4,
		Window: [3]int64{1, 2, 2}, QKVWeight: w, ProjWeight: w[:36]}
	input := make([]float32, 24)
	out := make([]float32, 24)
	for i := range out {
		out[i] = 7
	}
	checkError(t, ShiftedWindowAttentionInto(&args, input, out), ErrInvalidArgument, "")
	args.NumHeads, args.Shift = 2, [3]int64{0, 0, 2}
	checkError(t, ShiftedWindowAttentionInto(&args, input, out), ErrInvalidArgument, "")
	for _, x := range out {
		if x != 7 {
			t.Fatal("output written on failure")
		}
	}
	desc := LayerDesc{Channels: 6, NumHeads: 2, Window: [3]int64{1, 2, 2}, QKVWeight: w, ProjWeight: w[:36]}
	bf16 := desc
	bf16.ComputeDType = BF16
	_, err = NewLayer(&bf16)
	checkError(t, err, ErrUnsupported, "")
	mixed := desc
	mixed.RelativePositionBiasTable, mixed.LogitScale = make([]float32, 9*2), []float32{1, 1}
	_, err = NewLayer(&mixed)
	checkError(t, err, ErrInvalidArgument, "")
	heads := desc
	heads.NumHeads = 4
	_, err = NewLayer(&heads)
	checkError(t, err, ErrInvalidArgument, "")
}
