//! Real calls into libwinattn, checked against plain float64 references written here.
use std::sync::Mutex;
use winattn::{AttentionShape, Dtype, Layer, LayerDesc, Status, WindowAttentionArgs};

/// Serialises the tests that change process-wide settings (ISA cap, thread count).
static GLOBAL_SETTINGS: Mutex<()> = Mutex::new(());

mod common;
use common::Lcg;

fn assert_close(name: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{name}[{i}]: got {g}, want {w} (err {err})"
        );
    }
}

// ---- references ---------------------------------------------------------------------------------------

fn ref_index(window: &[i64]) -> Vec<i64> {
    let w: Vec<i64> = window.to_vec();
    let n: i64 = w.iter().product();
    let coords = |t: i64| -> Vec<i64> {
        let mut c = vec![0; w.len()];
        let mut r = t;
        for d in (0..w.len()).rev() {
            c[d] = r % w[d];
            r /= w[d];
        }
        c
    };
    let mut out = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let (ci, cj) = (coords(i), coords(j));
            let mut idx = 0;
            for d in 0..w.len() {
                idx = idx * (2 * w[d] - 1) + (ci[d] - cj[d] + w[d] - 1);
            }
            out.push(idx);
        }
    }
    out
}

/// bias[h][i][j] = table[index[i][j]][h], in f64.
fn ref_lookup(table: &[f64], heads: usize, index: &[i64], n: usize) -> Vec<f64> {
    let mut bias = vec![0.0; heads * n * n];
    for h in 0..heads {
        for ij in 0..n * n {
            bias[h * n * n + ij] = table[index[ij] as usize * heads + h];
        }
    }
    bias
}

fn ref_cpb_table(
    wh: i64,
    ww: i64,
    w1: &[f32],
    b1: Option<&[f32]>,
    w2: &[f32],
    hidden: usize,
    heads: usize,
) -> Vec<f64> {
    let f = |d: i64, w: i64| -> f64 {
        let mut x = d as f64;
        if w > 1 {
            x /= (w - 1) as f64;
        }
        x *= 8.0;
        x.signum() * (x.abs() + 1.0).log2() / 3.0
    };
    let mut table = Vec::new();
    for dh in -(wh - 1)..wh {
        for dw in -(ww - 1)..ww {
            let (ch, cw) = (f(dh, wh), f(dw, ww));
            let hid: Vec<f64> = (0..hidden)
                .map(|j| {
                    let b = b1.map_or(0.0, |b| b[j] as f64);
                    (w1[2 * j] as f64 * ch + w1[2 * j + 1] as f64 * cw + b).max(0.0)
                })
                .collect();
            for h in 0..heads {
                let z: f64 = (0..hidden)
                    .map(|j| w2[h * hidden + j] as f64 * hid[j])
                    .sum();
                table.push(16.0 / (1.0 + (-z).exp()));
            }
        }
    }
    table
}

/// Region label of a position on one axis of size g with window w and shift s.
fn region(pos: usize, g: usize, w: usize, s: usize) -> usize {
    if pos < g - w {
        0
    } else if pos < g - s {
        1
    } else {
        2
    }
}

fn ref_mask(grid: [usize; 3], window: [usize; 3], shift: [usize; 3]) -> Vec<f64> {
    let nw = [
        grid[0] / window[0],
        grid[1] / window[1],
        grid[2] / window[2],
    ];
    let n = window[0] * window[1] * window[2];
    let mut mask = Vec::new();
    for a0 in 0..nw[0] {
        for a1 in 0..nw[1] {
            for a2 in 0..nw[2] {
                let labels: Vec<usize> = tokens(window)
                    .map(|t| {
                        let p = [
                            a0 * window[0] + t[0],
                            a1 * window[1] + t[1],
                            a2 * window[2] + t[2],
                        ];
                        (0..3).fold(0, |acc, d| {
                            acc * 3 + region(p[d], grid[d], window[d], shift[d])
                        })
                    })
                    .collect();
                for i in 0..n {
                    for j in 0..n {
                        mask.push(if labels[i] == labels[j] { 0.0 } else { -100.0 });
                    }
                }
            }
        }
    }
    mask
}

fn tokens(window: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    (0..window[0])
        .flat_map(move |i| (0..window[1]).flat_map(move |j| (0..window[2]).map(move |k| [i, j, k])))
}

/// Softmax attention of one (window, head): logits [n][n] (already scaled and biased), v [n][d].
fn softmax_rows(logits: &mut [f64], n: usize) {
    for row in logits.chunks_mut(n) {
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row
            .iter_mut()
            .map(|x| {
                *x = (*x - mx).exp();
                *x
            })
            .sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

fn ref_window_attention(
    s: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f64,
    bias: Option<&[f32]>,
    mask: Option<&[f32]>,
) -> Vec<f64> {
    let (n, d) = (s.n, s.head_dim);
    let mask_windows = mask.map_or(1, |m| m.len() / (n * n));
    let mut out = vec![0.0; q.len()];
    for w in 0..s.num_windows {
        for h in 0..s.num_heads {
            let base = (w * s.num_heads + h) * n * d;
            let mut logits = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..d)
                        .map(|c| q[base + i * d + c] as f64 * k[base + j * d + c] as f64)
                        .sum();
                    let mut x = scale * dot;
                    if let Some(b) = bias {
                        x += b[h * n * n + i * n + j] as f64;
                    }
                    if let Some(m) = mask {
                        x += m[(w % mask_windows) * n * n + i * n + j] as f64;
                    }
                    logits[i * n + j] = x;
                }
            }
            softmax_rows(&mut logits, n);
            for i in 0..n {
                for c in 0..d {
                    out[base + i * d + c] = (0..n)
                        .map(|j| logits[i * n + j] * v[base + j * d + c] as f64)
                        .sum();
                }
            }
        }
    }
    out
}

/// A whole layer, torchvision's shifted_window_attention (eval) generalised to 3 axes, in float64.
struct RefLayer<'a> {
    channels: usize,
    heads: usize,
    window: [usize; 3],
    shift: [usize; 3],
    qkv_w: &'a [f32],
    qkv_b: Option<&'a [f32]>,
    proj_w: &'a [f32],
    proj_b: Option<&'a [f32]>,
    rpb: Option<Vec<f64>>,
    logit_scale: Option<&'a [f32]>,
}

impl RefLayer<'_> {
    fn forward(&self, input: &[f32], batch: usize, grid: [usize; 3]) -> Vec<f64> {
        let (c, heads, w) = (self.channels, self.heads, self.window);
        let hd = c / heads;
        let n = w[0] * w[1] * w[2];
        let mut padded = [0; 3];
        let mut s = self.shift;
        for d in 0..3 {
            padded[d] = grid[d].div_ceil(w[d]) * w[d];
            if w[d] >= padded[d] {
                s[d] = 0;
            }
        }
        let any_shift = s.iter().any(|&x| x > 0);
        let mut out = vec![0.0; input.len()];
        for b in 0..batch {
            for a0 in 0..padded[0] / w[0] {
                for a1 in 0..padded[1] / w[1] {
                    for a2 in 0..padded[2] / w[2] {
                        // Gather the window's tokens from the shifted, padded map.
                        let mut src = Vec::new();
                        let mut labels = Vec::new();
                        for t in tokens(w) {
                            let p = [a0 * w[0] + t[0], a1 * w[1] + t[1], a2 * w[2] + t[2]];
                            let q = [
                                (p[0] + s[0]) % padded[0],
                                (p[1] + s[1]) % padded[1],
                                (p[2] + s[2]) % padded[2],
                            ];
                            let inside = q[0] < grid[0] && q[1] < grid[1] && q[2] < grid[2];
                            src.push(if inside {
                                Some(((b * grid[0] + q[0]) * grid[1] + q[1]) * grid[2] + q[2])
                            } else {
                                None
                            });
                            labels.push(
                                (0..3).fold(0, |acc, d| {
                                    acc * 3 + region(p[d], padded[d], w[d], s[d])
                                }),
                            );
                        }
                        let x: Vec<f64> = src
                            .iter()
                            .flat_map(|&p| {
                                (0..c).map(move |i| p.map_or(0.0, |p| input[p * c + i] as f64))
                            })
                            .collect();
                        let mut qkv = vec![0.0; n * 3 * c];
                        for t in 0..n {
                            for o in 0..3 * c {
                                let mut acc: f64 = (0..c)
                                    .map(|i| x[t * c + i] * self.qkv_w[o * c + i] as f64)
                                    .sum();
                                if let Some(bias) = self.qkv_b {
                                    let is_k = (c..2 * c).contains(&o);
                                    if !(self.logit_scale.is_some() && is_k) {
                                        acc += bias[o] as f64;
                                    }
                                }
                                qkv[t * 3 * c + o] = acc;
                            }
                        }
                        let mut attn_out = vec![0.0; n * c];
                        for h in 0..heads {
                            let get = |part: usize, t: usize| -> Vec<f64> {
                                (0..hd)
                                    .map(|e| qkv[t * 3 * c + part * c + h * hd + e])
                                    .collect()
                            };
                            let norm = |v: Vec<f64>| -> Vec<f64> {
                                let l = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                                v.into_iter().map(|x| x / l).collect()
                            };
                            let (qs, ks): (Vec<Vec<f64>>, Vec<Vec<f64>>) = match self.logit_scale {
                                None => (
                                    (0..n)
                                        .map(|t| {
                                            get(0, t)
                                                .into_iter()
                                                .map(|x| x / (hd as f64).sqrt())
                                                .collect()
                                        })
                                        .collect(),
                                    (0..n).map(|t| get(1, t)).collect(),
                                ),
                                Some(_) => (
                                    (0..n).map(|t| norm(get(0, t))).collect(),
                                    (0..n).map(|t| norm(get(1, t))).collect(),
                                ),
                            };
                            let factor = self
                                .logit_scale
                                .map_or(1.0, |ls| (ls[h] as f64).min(100f64.ln()).exp());
                            let mut logits = vec![0.0; n * n];
                            for i in 0..n {
                                for j in 0..n {
                                    let mut l =
                                        factor * (0..hd).map(|e| qs[i][e] * ks[j][e]).sum::<f64>();
                                    if let Some(rpb) = &self.rpb {
                                        l += rpb[h * n * n + i * n + j];
                                    }
                                    if any_shift && labels[i] != labels[j] {
                                        l -= 100.0;
                                    }
                                    logits[i * n + j] = l;
                                }
                            }
                            softmax_rows(&mut logits, n);
                            for i in 0..n {
                                for e in 0..hd {
                                    attn_out[i * c + h * hd + e] =
                                        (0..n).map(|j| logits[i * n + j] * get(2, j)[e]).sum();
                                }
                            }
                        }
                        for (t, p) in src.iter().enumerate() {
                            if let Some(p) = p {
                                for o in 0..c {
                                    let acc: f64 = (0..c)
                                        .map(|i| {
                                            attn_out[t * c + i] * self.proj_w[o * c + i] as f64
                                        })
                                        .sum();
                                    out[p * c + o] = acc + self.proj_b.map_or(0.0, |b| b[o] as f64);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

// ---- tests ---------------------------------------------------------------------------------------------

#[test]
fn version_and_isa() {
    let v = winattn::version();
    assert_eq!(
        v,
        format!(
            "{}.{}.{}",
            winattn::sys::WINATTN_VERSION_MAJOR,
            winattn::sys::WINATTN_VERSION_MINOR,
            winattn::sys::WINATTN_VERSION_PATCH
        )
    );
    assert!(["avx512_bf16", "avx512", "avx2", "scalar"].contains(&winattn::active_isa()));
    assert_eq!(Status::InvalidArgument.name(), "invalid argument");
    assert_eq!(
        Status::from_raw(Status::OutOfMemory.as_raw()),
        Status::OutOfMemory
    );
}

#[test]
fn relative_position_index_matches_reference() {
    for window in [&[5i64][..], &[3, 4], &[2, 3, 2], &[1, 1], &[1, 7]] {
        let got = winattn::relative_position_index(window).unwrap();
        assert_eq!(got, ref_index(window), "window {window:?}");
        let rows = winattn::relative_position_table_rows(window).unwrap();
        assert!(got.iter().all(|&i| i >= 0 && (i as usize) < rows));
    }
}

#[test]
fn bias_lookup_and_backward() {
    let mut rng = Lcg(7);
    let window = [3i64, 4];
    let (heads, n) = (3usize, 12usize);
    let rows = winattn::relative_position_table_rows(&window).unwrap();
    assert_eq!(rows, 5 * 7);
    let index = ref_index(&window);
    let table = rng.vec(rows * heads, 2.0);
    let bias = winattn::relative_position_bias(&table, heads, &index, n).unwrap();
    let table64: Vec<f64> = table.iter().map(|&x| x as f64).collect();
    assert_close(
        "bias",
        &bias,
        &ref_lookup(&table64, heads, &index, n),
        0.0,
        0.0,
    );

    let grad_bias = rng.vec(heads * n * n, 1.0);
    let start = rng.vec(rows * heads, 1.0);
    let mut grad_table = start.clone();
    winattn::relative_position_bias_backward(&grad_bias, heads, &index, n, &mut grad_table)
        .unwrap();
    let mut want: Vec<f64> = start.iter().map(|&x| x as f64).collect();
    for h in 0..heads {
        for ij in 0..n * n {
            want[index[ij] as usize * heads + h] += grad_bias[h * n * n + ij] as f64;
        }
    }
    assert_close("grad_table", &grad_table, &want, 1e-5, 1e-5);
}

#[test]
fn continuous_position_bias_table_matches_reference() {
    let mut rng = Lcg(11);
    for (wh, ww, hidden, heads) in [(3i64, 4i64, 16usize, 2usize), (1, 5, 8, 3), (4, 4, 32, 4)] {
        let w1 = rng.vec(hidden * 2, 1.0);
        let b1 = rng.vec(hidden, 0.5);
        let w2 = rng.vec(heads * hidden, 0.3);
        let got =
            winattn::continuous_position_bias_table(wh, ww, &w1, Some(&b1), &w2, hidden, heads)
                .unwrap();
        assert_close(
            "cpb",
            &got,
            &ref_cpb_table(wh, ww, &w1, Some(&b1), &w2, hidden, heads),
            1e-4,
            1e-4,
        );
        let got =
            winattn::continuous_position_bias_table(wh, ww, &w1, None, &w2, hidden, heads).unwrap();
        assert_close(
            "cpb (no b1)",
            &got,
            &ref_cpb_table(wh, ww, &w1, None, &w2, hidden, heads),
            1e-4,
            1e-4,
        );
    }
}

#[test]
fn shifted_window_mask_matches_reference() {
    for (grid, window, shift) in [
        ([1i64, 8, 8], [1i64, 4, 4], [0i64, 2, 2]),
        ([1, 6, 9], [1, 3, 3], [0, 1, 2]),
        ([4, 4, 4], [2, 2, 2], [1, 1, 1]),
        ([1, 4, 4], [1, 2, 2], [0, 0, 0]),
    ] {
        let got = winattn::shifted_window_mask(grid, window, shift).unwrap();
        let u = |a: [i64; 3]| a.map(|x| x as usize);
        assert_close(
            "mask",
            &got,
            &ref_mask(u(grid), u(window), u(shift)),
            0.0,
            0.0,
        );
    }
}

fn check_window_attention(rng: &mut Lcg) {
    let shape = AttentionShape {
        num_windows: 4,
        num_heads: 2,
        n: 9,
        head_dim: 8,
    };
    let len = 4 * 2 * 9 * 8;
    let (q, k, v) = (rng.vec(len, 1.0), rng.vec(len, 1.0), rng.vec(len, 1.0));
    let bias = rng.vec(2 * 81, 1.0);
    let mask: Vec<f32> = (0..2 * 81)
        .map(|i| if (i * 7) % 5 == 0 { -100.0 } else { 0.0 })
        .collect();
    let scale = 0.35;
    let got = winattn::window_attention(shape, &q, &k, &v, scale, None, None).unwrap();
    assert_close(
        "attention",
        &got,
        &ref_window_attention(shape, &q, &k, &v, scale as f64, None, None),
        1e-5,
        1e-4,
    );
    let got =
        winattn::window_attention(shape, &q, &k, &v, scale, Some(&bias), Some(&mask)).unwrap();
    let want = ref_window_attention(shape, &q, &k, &v, scale as f64, Some(&bias), Some(&mask));
    assert_close("attention+bias+mask", &got, &want, 1e-5, 1e-4);
    let mut out = vec![0f32; len];
    winattn::window_attention_into(shape, &q, &k, &v, scale, Some(&bias), Some(&mask), &mut out)
        .unwrap();
    assert_close("attention_into", &out, &want, 1e-5, 1e-4);
}

/// A layer case: weights, the reference, and the library's stateless and prepacked results.
struct Case {
    channels: usize,
    heads: usize,
    window: [i64; 3],
    shift: [i64; 3],
    batch: usize,
    grid: [i64; 3],
    v2: bool,
}

fn check_layer(rng: &mut Lcg, case: &Case) {
    let c = case.channels;
    let heads = case.heads;
    let qkv_w = rng.vec(3 * c * c, 0.4);
    let qkv_b = rng.vec(3 * c, 0.2);
    let proj_w = rng.vec(c * c, 0.4);
    let proj_b = rng.vec(c, 0.2);
    let n: usize = case.window.iter().product::<i64>() as usize;
    let len = case.batch * case.grid.iter().product::<i64>() as usize * c;
    let input = rng.vec(len, 1.0);
    let wu = case.window.map(|x| x as usize);

    let (table, logit_scale, cpb) = if case.v2 {
        let hidden = 16;
        let cpb = (
            rng.vec(hidden * 2, 1.0),
            rng.vec(hidden, 0.5),
            rng.vec(heads * hidden, 0.3),
            hidden,
        );
        (
            None,
            Some(
                rng.vec(heads, 2.0)
                    .into_iter()
                    .map(|x| x + 3.0)
                    .collect::<Vec<f32>>(),
            ),
            Some(cpb),
        )
    } else {
        let rows = winattn::relative_position_table_rows(&case.window).unwrap();
        (Some(rng.vec(rows * heads, 1.0)), None, None)
    };
    let index = ref_index(if case.window[0] == 1 && case.v2 {
        &case.window[1..]
    } else {
        &case.window[..]
    });
    let rpb64 = match (&table, &cpb) {
        (Some(t), _) => ref_lookup(
            &t.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            heads,
            &index,
            n,
        ),
        (None, Some((w1, b1, w2, hidden))) => ref_lookup(
            &ref_cpb_table(
                case.window[1],
                case.window[2],
                w1,
                Some(b1),
                w2,
                *hidden,
                heads,
            ),
            heads,
            &index,
            n,
        ),
        _ => unreachable!(),
    };
    let reference = RefLayer {
        channels: c,
        heads,
        window: wu,
        shift: case.shift.map(|x| x as usize),
        qkv_w: &qkv_w,
        qkv_b: Some(&qkv_b),
        proj_w: &proj_w,
        proj_b: Some(&proj_b),
        rpb: Some(rpb64.clone()),
        logit_scale: logit_scale.as_deref(),
    }
    .forward(&input, case.batch, case.grid.map(|x| x as usize));
    let tol = 2e-4;

    // Stateless, with the bias looked up by the library.
    let rpb: Vec<f32> = rpb64.iter().map(|&x| x as f32).collect();
    let args = WindowAttentionArgs {
        batch: case.batch,
        grid: case.grid,
        channels: c,
        num_heads: heads,
        window: case.window,
        shift: case.shift,
        qkv_weight: &qkv_w,
        qkv_bias: Some(&qkv_b),
        proj_weight: &proj_w,
        proj_bias: Some(&proj_b),
        relative_position_bias: Some(&rpb),
        logit_scale: logit_scale.as_deref(),
    };
    let got = winattn::shifted_window_attention(&args, &input).unwrap();
    assert_close("shifted_window_attention", &got, &reference, tol, tol);

    // Prepacked.
    let desc = LayerDesc {
        channels: c,
        num_heads: heads,
        window: case.window,
        shift: case.shift,
        qkv_weight: &qkv_w,
        qkv_bias: Some(&qkv_b),
        proj_weight: &proj_w,
        proj_bias: Some(&proj_b),
        relative_position_bias_table: table.as_deref(),
        logit_scale: logit_scale.as_deref(),
        cpb_weight1: cpb.as_ref().map(|x| &x.0[..]),
        cpb_bias1: cpb.as_ref().map(|x| &x.1[..]),
        cpb_weight2: cpb.as_ref().map(|x| &x.2[..]),
        cpb_hidden: cpb.as_ref().map_or(0, |x| x.3),
        compute_dtype: Dtype::F32,
    };
    let layer = Layer::new(&desc).unwrap();
    assert_eq!(layer.channels(), c);
    let got = layer.forward(&input, case.batch, case.grid).unwrap();
    assert_close("Layer::forward", &got, &reference, tol, tol);
    let mut out = vec![f32::NAN; len];
    layer
        .forward_into(&input, case.batch, case.grid, &mut out)
        .unwrap();
    assert_eq!(out, got, "forward_into differs from forward");
}

fn layer_cases() -> Vec<Case> {
    vec![
        // 2D Swin, shifted, grid padded from 5x7 to 6x9.
        Case {
            channels: 8,
            heads: 2,
            window: [1, 3, 3],
            shift: [0, 1, 2],
            batch: 2,
            grid: [1, 5, 7],
            v2: false,
        },
        // 2D, window larger than the map: the shift is dropped.
        Case {
            channels: 6,
            heads: 3,
            window: [1, 4, 4],
            shift: [0, 2, 2],
            batch: 1,
            grid: [1, 3, 4],
            v2: false,
        },
        // 3D Video Swin, shifted on every axis.
        Case {
            channels: 8,
            heads: 2,
            window: [2, 2, 2],
            shift: [1, 1, 1],
            batch: 1,
            grid: [4, 4, 2],
            v2: false,
        },
        // SwinV2: cosine attention + continuous position bias.
        Case {
            channels: 8,
            heads: 2,
            window: [1, 3, 3],
            shift: [0, 1, 1],
            batch: 1,
            grid: [1, 6, 6],
            v2: true,
        },
    ]
}

#[test]
fn attention_and_layers_on_every_isa() {
    let _guard = GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let ranks = ["scalar", "avx2", "avx512", "avx512_bf16"];
    for (rank, isa) in ranks.iter().enumerate() {
        winattn::set_max_isa(isa).unwrap();
        let active = winattn::active_isa();
        let active_rank = ranks.iter().position(|r| *r == active).unwrap();
        assert!(active_rank <= rank, "cap {isa} but active {active}");
        if *isa == "scalar" {
            assert_eq!(active, "scalar");
        }
        let mut rng = Lcg(1234);
        check_window_attention(&mut rng);
        for case in layer_cases() {
            check_layer(&mut rng, &case);
        }
    }
    winattn::set_max_isa("native").unwrap();
}

#[test]
fn thread_count_does_not_change_bits() {
    let _guard = GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Lcg(99);
    let shape = AttentionShape {
        num_windows: 6,
        num_heads: 2,
        n: 16,
        head_dim: 8,
    };
    let len = 6 * 2 * 16 * 8;
    let (q, k, v) = (rng.vec(len, 1.0), rng.vec(len, 1.0), rng.vec(len, 1.0));
    winattn::set_num_threads(1).unwrap();
    assert_eq!(winattn::num_threads(), 1);
    let one = winattn::window_attention(shape, &q, &k, &v, 0.3, None, None).unwrap();
    winattn::set_num_threads(2).unwrap();
    let two = winattn::window_attention(shape, &q, &k, &v, 0.3, None, None).unwrap();
    winattn::set_num_threads(0).unwrap();
    assert_eq!(winattn::num_threads(), 0);
    assert_eq!(one, two);
}

#[test]
fn layer_is_shared_between_threads() {
    // Bitwise equality needs one kernel ISA throughout: keep the tests that change the (process-wide) ISA
    // cap out while this one runs.
    let _guard = GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Lcg(5);
    let c = 8;
    let window = [1i64, 4, 4];
    let qkv_w = rng.vec(3 * c * c, 0.4);
    let proj_w = rng.vec(c * c, 0.4);
    let table = rng.vec(49 * 2, 1.0);
    let layer = Layer::new(&LayerDesc {
        channels: c,
        num_heads: 2,
        window,
        shift: [0, 2, 2],
        qkv_weight: &qkv_w,
        proj_weight: &proj_w,
        relative_position_bias_table: Some(&table),
        ..Default::default()
    })
    .unwrap();
    let grid = [1i64, 8, 8];
    let inputs: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(2 * 64 * c, 1.0)).collect();
    let serial: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| layer.forward(x, 2, grid).unwrap())
        .collect();
    // Check one against the float64 reference too, so the threads are compared with something right.
    let index = ref_index(&window[1..]);
    let reference = RefLayer {
        channels: c,
        heads: 2,
        window: [1, 4, 4],
        shift: [0, 2, 2],
        qkv_w: &qkv_w,
        qkv_b: None,
        proj_w: &proj_w,
        proj_b: None,
        rpb: Some(ref_lookup(
            &table.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            2,
            &index,
            16,
        )),
        logit_scale: None,
    };
    assert_close(
        "serial",
        &serial[0],
        &reference.forward(&inputs[0], 2, [1, 8, 8]),
        2e-4,
        2e-4,
    );
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (layer, inputs, serial) = (&layer, &inputs, &serial);
            scope.spawn(move || {
                for round in 0..5 {
                    let i = (t + round) % inputs.len();
                    let got = layer.forward(&inputs[i], 2, grid).unwrap();
                    assert_eq!(got, serial[i], "thread {t}, round {round}");
                }
            });
        }
    });
}

fn assert_error<T: std::fmt::Debug>(r: winattn::Result<T>, status: Status, mentions: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.status, status, "{e}");
    assert!(!e.message.is_empty(), "empty message");
    assert!(
        e.message.contains(mentions),
        "message {:?} does not mention {mentions:?}",
        e.message
    );
    let shown = e.to_string();
    assert!(
        shown.contains(&e.message) && shown.contains(status.name()),
        "{shown}"
    );
    let _: &dyn std::error::Error = &e;
}

#[test]
fn errors_from_length_checks() {
    let shape = AttentionShape {
        num_windows: 1,
        num_heads: 1,
        n: 2,
        head_dim: 2,
    };
    let x = [0f32; 4];
    assert_error(
        winattn::window_attention(shape, &x[..3], &x, &x, 1.0, None, None),
        Status::InvalidArgument,
        "q",
    );
    assert_error(
        winattn::window_attention(shape, &x, &x, &x[..1], 1.0, None, None),
        Status::InvalidArgument,
        "v",
    );
    assert_error(
        winattn::window_attention(shape, &x, &x, &x, 1.0, Some(&x[..3]), None),
        Status::InvalidArgument,
        "bias",
    );
    assert_error(
        winattn::window_attention(shape, &x, &x, &x, 1.0, None, Some(&[0.0; 6])),
        Status::InvalidArgument,
        "mask",
    );
    let mut out = [0f32; 5];
    assert_error(
        winattn::window_attention_into(shape, &x, &x, &x, 1.0, None, None, &mut out),
        Status::InvalidArgument,
        "out",
    );
    assert_error(
        winattn::relative_position_index(&[]),
        Status::InvalidArgument,
        "window",
    );
    assert_error(
        winattn::relative_position_index(&[2, 0]),
        Status::InvalidArgument,
        "window",
    );
    assert_error(
        winattn::relative_position_bias(&[0.0; 7], 2, &[0; 4], 2),
        Status::InvalidArgument,
        "table",
    );
    assert_error(
        winattn::shifted_window_mask([1, 5, 4], [1, 2, 2], [0, 0, 0]),
        Status::InvalidArgument,
        "grid",
    );
    let w = [0f32; 3 * 16];
    assert_error(
        Layer::new(&LayerDesc {
            channels: 4,
            num_heads: 2,
            window: [1, 2, 2],
            qkv_weight: &w[..47],
            proj_weight: &w[..16],
            ..Default::default()
        }),
        Status::InvalidArgument,
        "qkv_weight",
    );
    let layer = Layer::new(&LayerDesc {
        channels: 4,
        num_heads: 2,
        window: [1, 2, 2],
        qkv_weight: &w[..48],
        proj_weight: &w[..16],
        ..Default::default()
    })
    .unwrap();
    assert_error(
        layer.forward(&[0.0; 15], 1, [1, 2, 2]),
        Status::InvalidArgument,
        "input",
    );
    assert_error(
        layer.forward(&[0.0; 16], 1, [1, -2, 2]),
        Status::InvalidArgument,
        "grid",
    );
}

#[test]
fn errors_from_the_library() {
    assert_error(winattn::set_max_isa("mmx"), Status::InvalidArgument, "");
    // Index entry out of range: the table has 3 rows.
    let table = [1f32; 3];
    assert_error(
        winattn::relative_position_bias(&table, 1, &[0, 1, 2, 5], 2),
        Status::InvalidArgument,
        "",
    );
    // Shift out of range.
    assert_error(
        winattn::shifted_window_mask([1, 4, 4], [1, 2, 2], [0, 2, 0]),
        Status::InvalidArgument,
        "",
    );
    // channels % num_heads != 0; outputs untouched on failure.
    let w = vec![0.1f32; 3 * 36];
    let args = WindowAttentionArgs {
        batch: 1,
        grid: [1, 2, 2],
        channels: 6,
        num_heads: 4,
        window: [1, 2, 2],
        qkv_weight: &w,
        proj_weight: &w[..36],
        ..Default::default()
    };
    let input = [0.5f32; 24];
    let mut out = [7f32; 24];
    assert_error(
        winattn::shifted_window_attention_into(&args, &input, &mut out).map(|_| ()),
        Status::InvalidArgument,
        "",
    );
    assert!(out.iter().all(|&x| x == 7.0), "output written on failure");
    let shifted = WindowAttentionArgs {
        num_heads: 2,
        shift: [0, 0, 2],
        ..args
    };
    assert_error(
        winattn::shifted_window_attention_into(&shifted, &input, &mut out),
        Status::InvalidArgument,
        "",
    );
    assert!(out.iter().all(|&x| x == 7.0), "output written on failure");
    // BF16 compute is UNSUPPORTED in 0.1; v1 table together with v2 logit_scale is inconsistent.
    let desc = LayerDesc {
        channels: 6,
        num_heads: 2,
        window: [1, 2, 2],
        qkv_weight: &w,
        proj_weight: &w[..36],
        ..Default::default()
    };
    assert_error(
        Layer::new(&LayerDesc {
            compute_dtype: Dtype::Bf16,
            ..desc
        }),
        Status::Unsupported,
        "",
    );
    let table = [0f32; 9 * 2];
    let scale = [1f32; 2];
    assert_error(
        Layer::new(&LayerDesc {
            relative_position_bias_table: Some(&table),
            logit_scale: Some(&scale),
            ..desc
        }),
        Status::InvalidArgument,
        "",
    );
    assert_error(
        Layer::new(&LayerDesc {
            num_heads: 4,
            ..desc
        }),
        Status::InvalidArgument,
        "",
    );
}
