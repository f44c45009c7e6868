package winattn_test

import (
	"fmt"

	"winattn.dev/winattn"
)

// A prepacked Swin layer: with a zero output projection the output is the projection bias everywhere.
func ExampleNewLayer() {
	const channels = 4
	layer, err := winattn.NewLayer(&winattn.LayerDesc{
		Channels:   channels,
		NumHeads:   2,
		Window:     [3]int64{1, 2, 2}, // 2D: depth 1
		Shift:      [3]int64{0, 1, 1},
		QKVWeight:  make([]float32, 3*channels*channels),
		ProjWeight: make([]float32, channels*channels),
		ProjBias:   []float32{1, 2, 3, 4},
	})
	if err != nil {
		panic(err)
	}
	defer layer.Close()
	input := make([]float32, 1*4*4*channels) // [batch 1][depth 1][4][4][channels]
	out, err := layer.Forward(input, 1, [3]int64{1, 4, 4})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(out), out[:channels])
	// Output: 64 [1 2 3 4]
}

// Two tokens with equal logits: each output row is the mean of the value rows.
func ExampleWindowAttention() {
	shape := winattn.AttentionShape{NumWindows: 1, NumHeads: 1, N: 2, HeadDim: 2}
	q := []float32{0, 0, 0, 0}
	k := []float32{1, 2, 3, 4}
	v := []float32{1, 10, 3, 20}
	out, err := winattn.WindowAttention(shape, q, k, v, 1, nil, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(out)
	// Output: [2 15 2 15]
}

// Errors carry a status (matched with errors.Is) and a message naming the argument.
func ExampleError() {
	_, err := winattn.RelativePositionIndex([]int64{7, 0})
	fmt.Println(err)
	// Output: winattn: invalid argument: window[1] = 0 must be in [1, 2^31)
}
