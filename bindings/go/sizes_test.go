package winattn

import (
	"math"
	"testing"
)

// Sizes too large to allocate, or whose products overflow: every function returns an error instead of
// ending the process ("fatal error: runtime: out of memory" cannot be recovered from) or panicking.

func smallLayer(t *testing.T) *Layer {
	t.Helper()
	w := make([]float32, 48)
	layer, err := NewLayer(&LayerDesc{Channels: 4, NumHeads: 2, Window: [3]int64{1, 2, 2},
		Shift: [3]int64{0, 1, 1}, QKVWeight: w, ProjWeight: w[:16]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { layer.Close() })
	return layer
}

func TestForwardChecksTheInputBeforeAllocating(t *testing.T) {
	layer := smallLayer(t)
	x := make([]float32, 4)
	// The example: 2^40 * 4 floats (16 TiB) were allocated before the input length was checked.
	_, err := layer.Forward(x, 1<<40, [3]int64{1, 1, 1})
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = layer.Forward(x, 1<<50, [3]int64{1, 1, 1})
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = layer.Forward(x, 1, [3]int64{1 << 20, 1 << 20, 1 << 10})
	checkError(t, err, ErrInvalidArgument, "input")
	_, err = layer.Forward(x, math.MaxInt, [3]int64{2, 2, 2})
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = layer.Forward(x, -1, [3]int64{1, 1, 1})
	checkError(t, err, ErrInvalidArgument, "negative")
	_, err = layer.Forward(x, 1, [3]int64{1, math.MaxInt64, 1})
	checkError(t, err, ErrInvalidArgument, "grid")
	if out, err := layer.Forward(make([]float32, 64), 1, [3]int64{1, 4, 4}); err != nil || len(out) != 64 {
		t.Fatalf("the layer no longer works: %v", err)
	}
}

func TestStatelessLayerChecksTheInputBeforeAllocating(t *testing.T) {
	w := make([]float32, 48)
	args := WindowAttentionArgs{Batch: 1 << 50, Grid: [3]int64{1, 1, 1}, Channels: 4, NumHeads: 2,
		Window: [3]int64{1, 1, 1}, QKVWeight: w, ProjWeight: w[:16]}
	_, err := ShiftedWindowAttention(&args, make([]float32, 4))
	checkError(t, err, ErrInvalidArgument, "input")
	args.Batch = math.MaxInt / 2
	args.Grid = [3]int64{3, 1, 1}
	_, err = ShiftedWindowAttention(&args, make([]float32, 4))
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = ShiftedWindowAttention(nil, nil)
	checkError(t, err, ErrInvalidArgument, "args")
}

func TestWindowAttentionChecksTheInputsBeforeAllocating(t *testing.T) {
	x := make([]float32, 16)
	_, err := WindowAttention(AttentionShape{NumWindows: 1 << 50, NumHeads: 1, N: 2, HeadDim: 2}, x, x, x, 1, nil, nil)
	checkError(t, err, ErrInvalidArgument, "q")
	_, err = WindowAttention(AttentionShape{NumWindows: math.MaxInt / 2, NumHeads: 3, N: 1, HeadDim: 1}, x, x, x, 1,
		nil, nil)
	checkError(t, err, ErrInvalidArgument, "overflow")
	// N*N overflows while q, k and v are empty (head_dim 0): it wrapped around before.
	_, err = WindowAttention(AttentionShape{NumWindows: 1, NumHeads: 1, N: 1 << 33, HeadDim: 0}, nil, nil, nil, 1,
		nil, x)
	checkError(t, err, ErrInvalidArgument, "overflow")
}

func TestOutputsLargerThanMemoryAreRefused(t *testing.T) {
	if physicalMemory <= 0 {
		t.Skip("the system does not report its physical memory")
	}
	// N = 2^28 tokens: the N*N int64 index takes 2^59 bytes (make panicked: len out of range).
	_, err := RelativePositionIndex([]int64{1 << 14, 1 << 14})
	checkError(t, err, ErrOutOfMemory, "index")
	// 2^46 windows of one token: a 2^48-byte mask (the runtime could not allocate it and ended the process).
	_, err = ShiftedWindowMask([3]int64{1, 1 << 23, 1 << 23}, [3]int64{1, 1, 1}, [3]int64{})
	checkError(t, err, ErrOutOfMemory, "mask")
	// hidden = 0 leaves w1 and w2 empty, so nothing bounded the 2^50-head table allocated before the call.
	_, err = ContinuousPositionBiasTable(1, 1, nil, nil, nil, 0, 1<<50)
	checkError(t, err, ErrInvalidArgument, "hidden")
	_, err = ContinuousPositionBiasTable(2, 2, make([]float32, 2), nil, nil, 1, 0)
	checkError(t, err, ErrInvalidArgument, "num_heads")
	// Products that overflow.
	_, err = ShiftedWindowMask([3]int64{1 << 30, 1 << 30, 1 << 30}, [3]int64{1, 1, 1}, [3]int64{})
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = ShiftedWindowMask([3]int64{1 << 30, 1 << 30, 1}, [3]int64{1 << 30, 1 << 30, 1}, [3]int64{})
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = RelativePositionBias(make([]float32, 2), 1, make([]int64, 4), 1<<33)
	checkError(t, err, ErrInvalidArgument, "overflow")
	_, err = NewLayer(&LayerDesc{Channels: 4, NumHeads: 2, Window: [3]int64{1, 2, 2}, QKVWeight: make([]float32, 48),
		ProjWeight: make([]float32, 16), LogitScale: []float32{1, 1}, CPBWeight1: make([]float32, 2),
		CPBHidden: math.MaxInt/2 + 1})
	checkError(t, err, ErrInvalidArgument, "overflow")
}

func TestThreadCountsOutOfRange(t *testing.T) {
	defer SetNumThreads(0)
	layer := smallLayer(t)
	if err := SetNumThreads(3); err != nil {
		t.Fatal(err)
	}
	if err := layer.SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	// -4294967291 is 5 modulo 2^32: it was truncated to a C int and accepted as 5.
	for _, n := range []int{-4294967291, 1<<32 + 5, 1 << 31, -1, MaxThreads + 1, math.MinInt, math.MaxInt} {
		checkError(t, SetNumThreads(n), ErrInvalidArgument, "num_threads")
		if NumThreads() != 3 {
			t.Fatalf("SetNumThreads(%d) changed the setting to %d", n, NumThreads())
		}
		checkError(t, layer.SetNumThreads(n), ErrInvalidArgument, "num_threads")
		if got, err := layer.NumThreads(); err != nil || got != 2 {
			t.Fatalf("layer.SetNumThreads(%d) changed the budget to %d (%v)", n, got, err)
		}
	}
	if err := SetNumThreads(MaxThreads); err != nil || NumThreads() != MaxThreads {
		t.Fatalf("SetNumThreads(MaxThreads): %v, NumThreads %d", err, NumThreads())
	}
}
