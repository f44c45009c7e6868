package winattn_test

import (
	"fmt"

	"winattn.dev/winattn"
)

// A layer in a server that runs requests on four goroutines at once on a 4-core machine: each forward on it
// uses one thread, and Trim drops the masks kept for the grids seen so far (they are rebuilt when needed).
func ExampleLayer_SetNumThreads() {
	const channels = 4
	layer, err := winattn.NewLayer(&winattn.LayerDesc{
		Channels:   channels,
		NumHeads:   2,
		Window:     [3]int64{1, 2, 2},
		Shift:      [3]int64{0, 1, 1},
		QKVWeight:  make([]float32, 3*channels*channels),
		ProjWeight: make([]float32, channels*channels),
	})
	if err != nil {
		panic(err)
	}
	defer layer.Close()
	if err := layer.SetNumThreads(1); err != nil {
		panic(err)
	}
	if _, err := layer.Forward(make([]float32, 6*6*channels), 1, [3]int64{1, 6, 6}); err != nil {
		panic(err)
	}
	if err := layer.Trim(); err != nil {
		panic(err)
	}
	budget, _ := layer.NumThreads()
	bytes, _ := layer.MemoryBytes()
	fmt.Println(budget, bytes > 0)
	fmt.Println(layer.SetNumThreads(winattn.MaxThreads+1) != nil)
	// Output:
	// 1 true
	// true
}
