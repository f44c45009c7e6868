package winattn

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The controls a long-running server uses: the per-layer thread budget, Trim, MemoryBytes,
// ReleaseThreadMemory, and Close while forwards run.

const servingC = 32

// shiftedLayer is a shifted 7x7-window layer of 32 channels and 4 heads with a bias table.
func shiftedLayer(t *testing.T, r *lcg) *Layer {
	t.Helper()
	layer, err := NewLayer(&LayerDesc{Channels: servingC, NumHeads: 4, Window: [3]int64{1, 7, 7},
		Shift: [3]int64{0, 3, 3}, QKVWeight: r.vec(3*servingC*servingC, 0.2), ProjWeight: r.vec(servingC*servingC, 0.2),
		RelativePositionBiasTable: r.vec(13*13*4, 0.1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { layer.Close() })
	return layer
}

func sameBits(a, b []float32) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestLayerThreadBudget(t *testing.T) {
	r := lcg(1)
	layer := shiftedLayer(t, &r)
	grid := [3]int64{1, 21, 28}
	x := r.vec(2*21*28*servingC, 1)
	if n, err := layer.NumThreads(); err != nil || n != 0 {
		t.Fatalf("budget at create: %d, %v", n, err)
	}
	ref, err := layer.Forward(x, 2, grid)
	if err != nil {
		t.Fatal(err)
	}
	for _, budget := range []int{1, 3, MaxThreads, 0} {
		if err := layer.SetNumThreads(budget); err != nil {
			t.Fatal(err)
		}
		if n, err := layer.NumThreads(); err != nil || n != budget {
			t.Fatalf("set %d, got %d (%v)", budget, n, err)
		}
		if out, err := layer.Forward(x, 2, grid); err != nil || !sameBits(out, ref) {
			t.Fatalf("budget %d: different result (%v)", budget, err)
		}
	}
}

func TestTrimKeepsTheResults(t *testing.T) {
	r := lcg(2)
	layer := shiftedLayer(t, &r)
	created, err := layer.MemoryBytes()
	if err != nil || created <= 0 {
		t.Fatalf("MemoryBytes after create: %d, %v", created, err)
	}
	grid := [3]int64{1, 14, 21}
	x := r.vec(3*14*21*servingC, 1)
	ref, err := layer.Forward(x, 3, grid)
	if err != nil {
		t.Fatal(err)
	}
	used, _ := layer.MemoryBytes()
	if err := layer.Trim(); err != nil {
		t.Fatal(err)
	}
	trimmed, _ := layer.MemoryBytes()
	if trimmed > used || trimmed > created {
		t.Fatalf("trim: %d after create, %d after a forward, %d after trim", created, used, trimmed)
	}
	for i := 0; i < 2; i++ {
		if out, err := layer.Forward(x, 3, grid); err != nil || !sameBits(out, ref) {
			t.Fatalf("forward after trim: different result (%v)", err)
		}
		if err := layer.Trim(); err != nil {
			t.Fatal(err)
		}
	}
}

// 50 forwards with 50 different grids on a shifted layer: the memory the layer keeps must not grow with
// the number of distinct grids (the header bounds it by the memory after create, 7*N*N floats of masks
// and a bounded number of projection plans).
func TestMemoryIsBoundedAcrossGrids(t *testing.T) {
	r := lcg(3)
	layer := shiftedLayer(t, &r)
	created, err := layer.MemoryBytes()
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	for i := int64(0); i < 50; i++ {
		g := [3]int64{1, 7 + (i*5)%29, 7 + (i*11)%31}
		if _, err := layer.Forward(make([]float32, int(g[1]*g[2])*servingC), 1, g); err != nil {
			t.Fatal(err)
		}
		m, err := layer.MemoryBytes()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, m)
	}
	peak := func(s []int64) (m int64) {
		for _, v := range s {
			if v > m {
				m = v
			}
		}
		return m
	}
	const masks = 7 * 49 * 49 * 4
	if first, second := peak(seen[:25]), peak(seen[25:]); second > first+masks {
		t.Fatalf("memory kept growing with new grids: %d after create, peak %d over grids 1-25, %d over 26-50",
			created, first, second)
	}
	if err := layer.Trim(); err != nil {
		t.Fatal(err)
	}
	if m, _ := layer.MemoryBytes(); m > created+masks {
		t.Fatalf("after trim the layer holds %d bytes, %d after create", m, created)
	}
}

func TestBudgetAndTrimWhileForwardsRun(t *testing.T) {
	r := lcg(4)
	layer := shiftedLayer(t, &r)
	grid := [3]int64{1, 14, 14}
	x := r.vec(14*14*servingC, 1)
	ref, err := layer.Forward(x, 1, grid)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				out, err := layer.Forward(x, 1, grid)
				if err == nil && !sameBits(out, ref) {
					err = fmt.Errorf("different result while the budget changes")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 30; i++ {
		if err := layer.SetNumThreads(i % 4); err != nil {
			t.Fatal(err)
		}
		if err := layer.Trim(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestReleaseThreadMemory(t *testing.T) {
	r := lcg(5)
	layer := shiftedLayer(t, &r)
	grid := [3]int64{1, 14, 14}
	x := r.vec(14*14*servingC, 1)
	ref, err := layer.Forward(x, 1, grid)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := 0; i < 2; i++ {
				ReleaseThreadMemory()
				if out, err := layer.Forward(x, 1, grid); err != nil || !sameBits(out, ref) {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatal("a forward after ReleaseThreadMemory failed or gave a different result")
	}
}

// Close while goroutines run forwards: no crash, the forwards that succeed are right, one that starts
// after Close returned fails, and every later call reports that the layer is closed.
func TestCloseWhileForwardsRun(t *testing.T) {
	r := lcg(6)
	layer := shiftedLayer(t, &r)
	grid := [3]int64{1, 42, 42}
	x := r.vec(2*42*42*servingC, 1)
	ref, err := layer.Forward(x, 2, grid)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		start time.Time
		ok    bool
		err   error
	}
	results := make(chan result, 1000)
	var started, wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			for {
				start := time.Now()
				out, err := layer.Forward(x, 2, grid)
				results <- result{start, err == nil && sameBits(out, ref), err}
				if err != nil {
					return
				}
			}
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	if err := layer.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	wg.Wait()
	close(results)
	for res := range results {
		if res.err != nil {
			checkError(t, res.err, ErrInvalidArgument, "closed")
			continue
		}
		if !res.ok {
			t.Fatal("a forward that succeeded gave a different result")
		}
		if res.start.After(closed) {
			t.Fatal("a forward that started after Close returned succeeded")
		}
	}
	for _, err := range []error{layer.Trim(), layer.SetNumThreads(1)} {
		checkError(t, err, ErrInvalidArgument, "closed")
	}
	_, err = layer.MemoryBytes()
	checkError(t, err, ErrInvalidArgument, "closed")
	_, err = layer.NumThreads()
	checkError(t, err, ErrInvalidArgument, "closed")
}

// Close must not destroy the handle while a call holds it: with the read side of the layer's lock held (as
// every call on the layer holds it), Close blocks until it is released.
func TestCloseWaitsForCallsInFlight(t *testing.T) {
	r := lcg(7)
	layer := shiftedLayer(t, &r)
	layer.mu.RLock()
	done := make(chan struct{})
	go func() {
		layer.Close()
		close(done)
	}()
	select {
	case <-done:
		layer.mu.RUnlock()
		t.Fatal("Close returned while a call was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	layer.mu.RUnlock()
	<-done
	if _, err := layer.MemoryBytes(); err == nil {
		t.Fatal("the layer still answers after Close")
	}
}
