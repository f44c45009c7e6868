package winattn_test

import (
	"fmt"

	"winattn.dev/winattn"
)

// A tiny Swin v1 (torchvision's names: embedding 16, depths (2, 2), heads (1, 2), window 4, 10 classes)
// built from tensors. Every weight is zero except the norms' and the head's bias, so the features are zero
// and the logits are the head's bias. A real model: winattn.LoadModel("swin_t.safetensors", nil).
func ExampleCreateModel() {
	var tensors []winattn.Tensor
	add := func(name string, value float32, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = value
		}
		tensors = append(tensors, winattn.F32Tensor(name, shape, data))
	}
	norm := func(prefix string, c int64) { add(prefix+".weight", 1, c); add(prefix+".bias", 0, c) }
	block := func(prefix string, c, heads int64) {
		norm(prefix+".norm1", c)
		add(prefix+".attn.qkv.weight", 0, 3*c, c)
		add(prefix+".attn.qkv.bias", 0, 3*c)
		add(prefix+".attn.proj.weight", 0, c, c)
		add(prefix+".attn.proj.bias", 0, c)
		add(prefix+".attn.relative_position_bias_table", 0, 7*7, heads) // (2*window-1)^2 rows
		norm(prefix+".norm2", c)
		add(prefix+".mlp.0.weight", 0, 4*c, c)
		add(prefix+".mlp.0.bias", 0, 4*c)
		add(prefix+".mlp.3.weight", 0, c, 4*c)
		add(prefix+".mlp.3.bias", 0, c)
	}
	add("features.0.0.weight", 0, 16, 3, 4, 4) // patch embedding: [embed][3][patch][patch]
	add("features.0.0.bias", 0, 16)
	norm("features.0.2", 16)
	block("features.1.0", 16, 1)
	block("features.1.1", 16, 1)
	add("features.2.reduction.weight", 0, 32, 64) // patch merging
	norm("features.2.norm", 64)
	block("features.3.0", 32, 2)
	block("features.3.1", 32, 2)
	norm("norm", 32)
	add("head.weight", 0, 10, 32)
	tensors = append(tensors, winattn.F32Tensor("head.bias", []int64{10}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))

	model, err := winattn.CreateModel(tensors, nil)
	if err != nil {
		panic(err)
	}
	defer model.Close() // safe to share between goroutines
	info := model.Info()
	fmt.Println(info.Family, info.Depths, info.NumHeads, info.Dims, info.NumClasses)

	size := [3]int64{1, 32, 32} // (frames, height, width); 2D models: frames 1
	shapes, _ := model.FeatureShapes(size)
	fmt.Println(shapes)
	logits, err := model.Classify(make([]float32, 1*3*32*32), 1, size) // [batch][3][32][32]
	if err != nil {
		panic(err)
	}
	fmt.Println(logits)
	// Output:
	// Swin [2 2] [1 2] [16 32] 10
	// [[1 8 8 16] [1 4 4 32]]
	// [0 1 2 3 4 5 6 7 8 9]
}
