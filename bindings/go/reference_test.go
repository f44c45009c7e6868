package winattn

// Plain float64 references the tests compare the library with.

import "math"

// lcg is a tiny deterministic generator, values in [-scale, scale).
type lcg uint64

func (r *lcg) next() float32 {
	*r = lcg(uint64(*r)*6364136223846793005 + 1442695040888963407)
	return float32(uint64(*r)>>40)/float32(1<<24)*2 - 1
}

func (r *lcg) vec(n int, scale float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = r.next() * scale
	}
	return out
}

func to64(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = float64(v)
	}
	return out
}

func refIndex(window []int64) []int64 {
	n := int64(1)
	for _, w := range window {
		n *= w
	}
	coords := func(t int64) []int64 {
		c := make([]int64, len(window))
		for d := len(window) - 1; d >= 0; d-- {
			c[d] = t % window[d]
			t /= window[d]
		}
		return c
	}
	var out []int64
	for i := int64(0); i < n; i++ {
		for j := int64(0); j < n; j++ {
			ci, cj := coords(i), coords(j)
			idx := int64(0)
			for d, w := range window {
				idx = idx*(2*w-1) + ci[d] - cj[d] + w - 1
			}
			out = append(out, idx)
		}
	}
	return out
}

func refLookup(table []float64, heads int, index []int64, n int) []float64 {
	bias := make([]float64, heads*n*n)
	for h := 0; h < heads; h++ {
		for ij := 0; ij < n*n; ij++ {
			bias[h*n*n+ij] = table[int(index[ij])*heads+h]
		}
	}
	return bias
}

func refCPBTable(wh, ww int64, w1, b1, w2 []float32, hidden, heads int) []float64 {
	f := func(d, w int64) float64 {
		x := float64(d)
		if w > 1 {
			x /= float64(w - 1)
		}
		x *= 8
		s := 0.0
		if x > 0 {
			s = 1
		} else if x < 0 {
			s = -1
		}
		return s * math.Log2(math.Abs(x)+1) / 3
	}
	var table []float64
	for dh := -(wh - 1); dh < wh; dh++ {
		for dw := -(ww - 1); dw < ww; dw++ {
			ch, cw := f(dh, wh), f(dw, ww)
			hid := make([]float64, hidden)
			for j := range hid {
				b := 0.0
				if b1 != nil {
					b = float64(b1[j])
				}
				hid[j] = math.Max(0, float64(w1[2*j])*ch+float64(w1[2*j+1])*cw+b)
			}
			for h := 0; h < heads; h++ {
				z := 0.0
				for j := 0; j < hidden; j++ {
					z += float64(w2[h*hidden+j]) * hid[j]
				}
				table = append(table, 16/(1+math.Exp(-z)))
			}
		}
	}
	return table
}

func region(pos, g, w, s int) int {
	switch {
	case pos < g-w:
		return 0
	case pos < g-s:
		return 1
	default:
		return 2
	}
}

func windowTokens(w [3]int) [][3]int {
	var out [][3]int
	for i := 0; i < w[0]; i++ {
		for j := 0; j < w[1]; j++ {
			for k := 0; k < w[2]; k++ {
				out = append(out, [3]int{i, j, k})
			}
		}
	}
	return out
}

func refMask(grid, window, shift [3]int) []float64 {
	var mask []float64
	for a0 := 0; a0 < grid[0]/window[0]; a0++ {
		for a1 := 0; a1 < grid[1]/window[1]; a1++ {
			for a2 := 0; a2 < grid[2]/window[2]; a2++ {
				var labels []int
				for _, t := range windowTokens(window) {
					p := [3]int{a0*window[0] + t[0], a1*window[1] + t[1], a2*window[2] + t[2]}
					l := 0
					for d := 0; d < 3; d++ {
						l = l*3 + region(p[d], grid[d], window[d], shift[d])
					}
					labels = append(labels, l)
				}
				for _, li := range labels {
					for _, lj := range labels {
						if li == lj {
							mask = append(mask, 0)
						} else {
							mask = append(mask, -100)
						}
					}
				}
			}
		}
	}
	return mask
}

func softmaxRows(logits []float64, n int) {
	for r := 0; r < len(logits); r += n {
		row := logits[r : r+n]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, x)
		}
		sum := 0.0
		for i := range row {
			row[i] = math.Exp(row[i] - mx)
			sum += row[i]
		}
		for i := range row {
			row[i] /= sum
		}
	}
}

func refWindowAttention(s AttentionShape, q, k, v []float32, scale float64, bias, mask []float32) []float64 {
	n, d := s.N, s.HeadDim
	maskWindows := 1
	if mask != nil {
		maskWindows = len(mask) / (n * n)
	}
	out := make([]float64, len(q))
	for w := 0; w < s.NumWindows; w++ {
		for h := 0; h < s.NumHeads; h++ {
			base := (w*s.NumHeads + h) * n * d
			logits := make([]float64, n*n)
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					dot := 0.0
					for c := 0; c < d; c++ {
						dot += float64(q[base+i*d+c]) * float64(k[base+j*d+c])
					}
					x := scale * dot
					if bias != nil {
						x += float64(bias[h*n*n+i*n+j])
					}
					if mask != nil {
						x += float64(mask[(w%maskWindows)*n*n+i*n+j])
					}
					logits[i*n+j] = x
				}
			}
			softmaxRows(logits, n)
			for i := 0; i < n; i++ {
				for c := 0; c < d; c++ {
					acc := 0.0
					for j := 0; j < n; j++ {
						acc += logits[i*n+j] * float64(v[base+j*d+c])
					}
					out[base+i*d+c] = acc
				}
			}
		}
	}
	return out
}

// refLayer is torchvision's shifted_window_attention (eval) generalised to 3 axes, in float64.
type refLayer struct {
	channels, heads int
	window, shift   [3]int
	qkvW, qkvB      []float32
	projW, projB    []float32
	rpb             []float64 // [heads][N][N] or nil
	logitScale      []float32 // nil for v1
}

func (l *refLayer) forward(input []float32, batch int, grid [3]int) []float64 {
	c, heads, w := l.channels, l.heads, l.window
	hd := c / heads
	n := w[0] * w[1] * w[2]
	var padded [3]int
	s := l.shift
	anyShift := false
	for d := 0; d < 3; d++ {
		padded[d] = (grid[d] + w[d] - 1) / w[d] * w[d]
		if w[d] >= padded[d] {
			s[d] = 0
		}
		anyShift = anyShift || s[d] > 0
	}
	out := make([]float64, len(input))
	toks := windowTokens(w)
	for b := 0; b < batch; b++ {
		for a0 := 0; a0 < padded[0]/w[0]; a0++ {
			for a1 := 0; a1 < padded[1]/w[1]; a1++ {
				for a2 := 0; a2 < padded[2]/w[2]; a2++ {
					src := make([]int, n) // -1: padding
					labels := make([]int, n)
					x := make([]float64, n*c)
					for t, tok := range toks {
						p := [3]int{a0*w[0] + tok[0], a1*w[1] + tok[1], a2*w[2] + tok[2]}
						var q [3]int
						inside := true
						for d := 0; d < 3; d++ {
							q[d] = (p[d] + s[d]) % padded[d]
							inside = inside && q[d] < grid[d]
							labels[t] = labels[t]*3 + region(p[d], padded[d], w[d], s[d])
						}
						src[t] = -1
						if inside {
							src[t] = ((b*grid[0]+q[0])*grid[1]+q[1])*grid[2] + q[2]
							for i := 0; i < c; i++ {
								x[t*c+i] = float64(input[src[t]*c+i])
							}
						}
					}
					qkv := make([]float64, n*3*c)
					for t := 0; t < n; t++ {
						for o := 0; o < 3*c; o++ {
							acc := 0.0
							for i := 0; i < c; i++ {
								acc += x[t*c+i] * float64(l.qkvW[o*c+i])
							}
							if l.qkvB != nil && !(l.logitScale != nil && o >= c && o < 2*c) {
								acc += float64(l.qkvB[o])
							}
							qkv[t*3*c+o] = acc
						}
					}
					attn := make([]float64, n*c)
					for h := 0; h < heads; h++ {
						get := func(part, t int) []float64 {
							v := make([]float64, hd)
							copy(v, qkv[t*3*c+part*c+h*hd:t*3*c+part*c+h*hd+hd])
							return v
						}
						qs, ks := make([][]float64, n), make([][]float64, n)
						factor := 1.0
						for t := 0; t < n; t++ {
							qs[t], ks[t] = get(0, t), get(1, t)
							if l.logitScale == nil {
								for e := range qs[t] {
									qs[t][e] /= math.Sqrt(float64(hd))
								}
							} else {
								for _, vec := range [][]float64{qs[t], ks[t]} {
									norm := 0.0
									for _, e := range vec {
										norm += e * e
									}
									norm = math.Max(math.Sqrt(norm), 1e-12)
									for e := range vec {
										vec[e] /= norm
									}
								}
							}
						}
						if l.logitScale != nil {
							factor = math.Exp(math.Min(float64(l.logitScale[h]), math.Log(100)))
						}
						logits := make([]float64, n*n)
						for i := 0; i < n; i++ {
							for j := 0; j < n; j++ {
								dot := 0.0
								for e := 0; e < hd; e++ {
									dot += qs[i][e] * ks[j][e]
								}
								v := factor * dot
								if l.rpb != nil {
									v += l.rpb[h*n*n+i*n+j]
								}
								if anyShift && labels[i] != labels[j] {
									v -= 100
								}
								logits[i*n+j] = v
							}
						}
						softmaxRows(logits, n)
						for i := 0; i < n; i++ {
							for e := 0; e < hd; e++ {
								acc := 0.0
								for j := 0; j < n; j++ {
									acc += logits[i*n+j] * qkv[j*3*c+2*c+h*hd+e]
								}
								attn[i*c+h*hd+e] = acc
							}
						}
					}
					for t := 0; t < n; t++ {
						if src[t] < 0 {
							continue
						}
						for o := 0; o < c; o++ {
							acc := 0.0
							for i := 0; i < c; i++ {
								acc += attn[t*c+i] * float64(l.projW[o*c+i])
							}
							if l.projB != nil {
								acc += float64(l.projB[o])
							}
							out[src[t]*c+o] = acc
						}
					}
				}
			}
		}
	}
	return out
}
