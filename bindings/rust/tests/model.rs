//! The whole-model API on a tiny Swin v1 built here from tensors with torchvision's names (no checkpoint
//! needed): patch 4, embedding 16, depths (2, 2), heads (1, 2), window 4, 10 classes, 32x32 inputs.
//! What is checked against plain float64 code written here: the patch embedding, the patch merging, the
//! final norm, the pooling and the head (with identity blocks), and that classify is the head of the
//! features (with random blocks).
use std::ffi::CStr;
use winattn::{Model, ModelFamily, ModelOptions, Status, Tensor, TensorData};

mod common;
use common::{assert_error, Lcg};

const E: usize = 16; // embedding width
const PATCH: usize = 4;
const WINDOW: usize = 4;
const HEADS: [usize; 2] = [1, 2];
const DEPTHS: [usize; 2] = [2, 2];
const CLASSES: usize = 10;
const SIZE: [i64; 3] = [1, 32, 32];
const EPS: f64 = 1e-5; // torchvision's LayerNorm epsilon

/// An owned state_dict entry.
#[derive(Clone)]
struct Entry {
    name: String,
    shape: Vec<i64>,
    data: Vec<f32>,
}

struct Builder<'r> {
    rng: &'r mut Lcg,
    entries: Vec<Entry>,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, shape: &[usize], scale: f32) {
        let len = shape.iter().product();
        let data = self.rng.vec(len, scale);
        self.entries.push(Entry {
            name: name.to_string(),
            shape: shape.iter().map(|&d| d as i64).collect(),
            data,
        });
    }
    /// A LayerNorm's weight (around 1) and bias.
    fn norm(&mut self, prefix: &str, c: usize) {
        self.add(&format!("{prefix}.weight"), &[c], 0.5);
        for x in &mut self.entries.last_mut().unwrap().data {
            *x += 1.0;
        }
        self.add(&format!("{prefix}.bias"), &[c], 0.2);
    }
    fn block(&mut self, prefix: &str, c: usize, heads: usize, zero: bool) {
        let s = |fan_in: usize| {
            if zero {
                0.0
            } else {
                1.0 / (fan_in as f32).sqrt()
            }
        };
        let b = if zero { 0.0 } else { 0.05 };
        self.norm(&format!("{prefix}.norm1"), c);
        self.add(&format!("{prefix}.attn.qkv.weight"), &[3 * c, c], s(c));
        self.add(&format!("{prefix}.attn.qkv.bias"), &[3 * c], b);
        self.add(&format!("{prefix}.attn.proj.weight"), &[c, c], s(c));
        self.add(&format!("{prefix}.attn.proj.bias"), &[c], b);
        let rows = (2 * WINDOW - 1) * (2 * WINDOW - 1);
        self.add(
            &format!("{prefix}.attn.relative_position_bias_table"),
            &[rows, heads],
            0.5,
        );
        self.norm(&format!("{prefix}.norm2"), c);
        self.add(&format!("{prefix}.mlp.0.weight"), &[4 * c, c], s(c));
        self.add(&format!("{prefix}.mlp.0.bias"), &[4 * c], b);
        self.add(&format!("{prefix}.mlp.3.weight"), &[c, 4 * c], s(4 * c));
        self.add(&format!("{prefix}.mlp.3.bias"), &[c], b);
    }
}

/// torchvision swin_t's names at a tiny size. `zero_blocks`: every block's linear weights and biases are
/// zero, so each block is the identity (attention gives proj.bias = 0, the MLP gives mlp.3.bias = 0).
fn tiny_swin(seed: u64, zero_blocks: bool, head: bool) -> Vec<Entry> {
    let mut rng = Lcg(seed);
    let mut b = Builder {
        rng: &mut rng,
        entries: Vec::new(),
    };
    b.add(
        "features.0.0.weight",
        &[E, 3, PATCH, PATCH],
        1.0 / ((3 * PATCH * PATCH) as f32).sqrt(),
    );
    b.add("features.0.0.bias", &[E], 0.1);
    b.norm("features.0.2", E);
    for i in 0..DEPTHS[0] {
        b.block(&format!("features.1.{i}"), E, HEADS[0], zero_blocks);
    }
    b.add(
        "features.2.reduction.weight",
        &[2 * E, 4 * E],
        1.0 / ((4 * E) as f32).sqrt(),
    );
    b.norm("features.2.norm", 4 * E);
    for i in 0..DEPTHS[1] {
        b.block(&format!("features.3.{i}"), 2 * E, HEADS[1], zero_blocks);
    }
    b.norm("norm", 2 * E);
    if head {
        b.add(
            "head.weight",
            &[CLASSES, 2 * E],
            1.0 / ((2 * E) as f32).sqrt(),
        );
        b.add("head.bias", &[CLASSES], 0.1);
    }
    b.entries
}

fn tensors(entries: &[Entry]) -> Vec<Tensor<'_>> {
    entries
        .iter()
        .map(|e| Tensor::f32(&e.name, &e.shape, &e.data))
        .collect()
}

fn create(entries: &[Entry]) -> winattn::Result<Model> {
    Model::from_tensors(&tensors(entries), &ModelOptions::default())
}

fn get<'e>(entries: &'e [Entry], name: &str) -> &'e [f32] {
    &entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .data
}

fn assert_close(name: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * scale,
            "{name}[{i}]: got {g}, want {w} (err {err}, scale {scale})"
        );
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

// ---- float64 references ---------------------------------------------------------------------------------

/// LayerNorm over the last axis of rows of `c` values (biased variance, as torch).
fn layer_norm(x: &[f64], c: usize, w: &[f32], b: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let mean = row.iter().sum::<f64>() / c as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + EPS).sqrt();
        for (k, v) in row.iter().enumerate() {
            out.push((v - mean) * inv * w[k] as f64 + b[k] as f64);
        }
    }
    out
}

/// Patch embedding: the stride-4 4x4 convolution of [batch][3][H][W], then LayerNorm; [batch][H/4][W/4][E].
#[allow(clippy::needless_range_loop)] // the index arithmetic of the formula
fn ref_embed(m: &[Entry], x: &[f32], batch: usize, h: usize, w: usize) -> Vec<f64> {
    let (cw, cb) = (get(m, "features.0.0.weight"), get(m, "features.0.0.bias"));
    let (gh, gw) = (h / PATCH, w / PATCH);
    let mut out = Vec::new();
    for b in 0..batch {
        for i in 0..gh {
            for j in 0..gw {
                for e in 0..E {
                    let mut acc = cb[e] as f64;
                    for c in 0..3 {
                        for ky in 0..PATCH {
                            for kx in 0..PATCH {
                                let xi = ((b * 3 + c) * h + i * PATCH + ky) * w + j * PATCH + kx;
                                let wi = ((e * 3 + c) * PATCH + ky) * PATCH + kx;
                                acc += cw[wi] as f64 * x[xi] as f64;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    layer_norm(
        &out,
        E,
        get(m, "features.0.2.weight"),
        get(m, "features.0.2.bias"),
    )
}

/// torchvision's PatchMerging: zero-pad an odd height or width at the end, concat (2i,2j), (2i+1,2j),
/// (2i,2j+1), (2i+1,2j+1), LayerNorm, reduction.
fn ref_merge(m: &[Entry], x: &[f64], batch: usize, gh: usize, gw: usize, c: usize) -> Vec<f64> {
    let (oh, ow) = (gh.div_ceil(2), gw.div_ceil(2));
    let zeros = vec![0.0; c];
    let mut cat = Vec::new();
    for b in 0..batch {
        for i in 0..oh {
            for j in 0..ow {
                for (di, dj) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (y, x_) = (2 * i + di, 2 * j + dj);
                    if y < gh && x_ < gw {
                        let t = (b * gh + y) * gw + x_;
                        cat.extend_from_slice(&x[t * c..(t + 1) * c]);
                    } else {
                        cat.extend_from_slice(&zeros);
                    }
                }
            }
        }
    }
    let normed = layer_norm(
        &cat,
        4 * c,
        get(m, "features.2.norm.weight"),
        get(m, "features.2.norm.bias"),
    );
    let r = get(m, "features.2.reduction.weight");
    let mut out = Vec::new();
    for row in normed.chunks(4 * c) {
        for o in 0..2 * c {
            out.push((0..4 * c).map(|k| r[o * 4 * c + k] as f64 * row[k]).sum());
        }
    }
    out
}

/// Final LayerNorm, average over the tokens, head: [batch][classes] from [batch][tokens][c].
fn ref_head(m: &[Entry], x: &[f64], batch: usize, c: usize) -> Vec<f64> {
    let normed = layer_norm(x, c, get(m, "norm.weight"), get(m, "norm.bias"));
    let tokens = x.len() / (batch * c);
    let (hw, hb) = (get(m, "head.weight"), get(m, "head.bias"));
    let mut out = Vec::new();
    for b in 0..batch {
        let mut pooled = vec![0.0; c];
        for t in 0..tokens {
            for k in 0..c {
                pooled[k] += normed[(b * tokens + t) * c + k] / tokens as f64;
            }
        }
        for o in 0..CLASSES {
            out.push(
                hb[o] as f64
                    + (0..c)
                        .map(|k| hw[o * c + k] as f64 * pooled[k])
                        .sum::<f64>(),
            );
        }
    }
    out
}

fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

// ---- tests ----------------------------------------------------------------------------------------------

#[test]
fn model_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
}

#[test]
fn info_describes_the_architecture() {
    let model = create(&tiny_swin(1, false, true)).unwrap();
    let info = model.info();
    assert_eq!(info.family, ModelFamily::Swin);
    assert_eq!(info.in_channels, 3);
    assert_eq!(info.num_classes, CLASSES);
    assert_eq!(info.embed_dim, E);
    assert_eq!(info.num_stages(), 2);
    assert_eq!(info.depths, DEPTHS.to_vec());
    assert_eq!(info.num_heads, HEADS.to_vec());
    assert_eq!(info.dims, vec![E, 2 * E]);
    assert_eq!(info.patch, [1, PATCH as i64, PATCH as i64]);
    assert_eq!(info.window, [1, WINDOW as i64, WINDOW as i64]);
    assert_eq!(model.num_threads().unwrap(), 0);
}

#[test]
fn classify_is_deterministic_finite_and_the_head_of_the_features() {
    let entries = tiny_swin(2, false, true);
    let model = create(&entries).unwrap();
    let batch = 2;
    let x = Lcg(3).vec(batch * 3 * 32 * 32, 1.0);
    let logits = model.classify(&x, batch, SIZE).unwrap();
    assert_eq!(logits.len(), batch * CLASSES);
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
    assert!(logits.iter().any(|&v| v != 0.0));
    assert!(same_bits(
        &logits,
        &model.classify(&x, batch, SIZE).unwrap()
    ));
    let mut into = vec![f32::NAN; batch * CLASSES];
    model.classify_into(&x, batch, SIZE, &mut into).unwrap();
    assert!(same_bits(&logits, &into));
    // The two images differ, so do their logits.
    assert!(!same_bits(&logits[..CLASSES], &logits[CLASSES..]));

    let shapes = model.feature_shapes(SIZE).unwrap();
    assert_eq!(shapes, vec![[1, 8, 8, E as i64], [1, 4, 4, 2 * E as i64]]);
    let features = model.features(&x, batch, SIZE).unwrap();
    assert_eq!(features.len(), 2);
    for (f, s) in features.iter().zip(&shapes) {
        assert_eq!(f.len(), batch * s.iter().product::<i64>() as usize);
        assert!(f.iter().all(|v| v.is_finite()));
    }
    let want = ref_head(&entries, &to64(&features[1]), batch, 2 * E);
    assert_close("logits vs head(features)", &logits, &want, 1e-4);

    // features_into: skipping stage 0 gives the same last stage.
    let mut last = vec![0f32; features[1].len()];
    model
        .features_into(&x, batch, SIZE, &mut [None, Some(&mut last)])
        .unwrap();
    assert!(same_bits(&last, &features[1]));
    assert_error(
        model.features_into(&x, batch, SIZE, &mut [None]),
        Status::InvalidArgument,
        "features has 1 entries",
    );
    let mut short = vec![0f32; 3];
    assert_error(
        model.features_into(&x, batch, SIZE, &mut [Some(&mut short), None]),
        Status::InvalidArgument,
        "features[0]",
    );
}

#[test]
fn embedding_merging_norm_and_head_match_a_reference() {
    // Identity blocks: stage 1 = embed(x), stage 2 = merge(stage 1), logits = head(stage 2).
    let entries = tiny_swin(4, true, true);
    let model = create(&entries).unwrap();
    // Non-square images: 8x10 then 4x5 tokens (padded to the window); 38x45 drops the pixels the patches
    // do not cover (9x11 tokens) and pads the odd grid for the merging (5x6).
    for (batch, h, w, merged) in [(2, 32, 40, [4, 5]), (1, 38, 45, [5, 6])] {
        let size = [1, h as i64, w as i64];
        let (gh, gw) = (h / PATCH, w / PATCH);
        let x = Lcg(5).vec(batch * 3 * h * w, 1.0);
        let features = model.features(&x, batch, size).unwrap();
        assert_eq!(
            model.feature_shapes(size).unwrap(),
            vec![
                [1, gh as i64, gw as i64, E as i64],
                [1, merged[0], merged[1], 2 * E as i64]
            ]
        );
        let stage1 = ref_embed(&entries, &x, batch, h, w);
        assert_close("stage 1", &features[0], &stage1, 1e-4);
        let stage2 = ref_merge(&entries, &stage1, batch, gh, gw, E);
        assert_close("stage 2", &features[1], &stage2, 1e-4);
        let logits = model.classify(&x, batch, size).unwrap();
        assert_close(
            "logits",
            &logits,
            &ref_head(&entries, &stage2, batch, 2 * E),
            1e-4,
        );
    }
}

/// Rounds to a value that bfloat16 and float16 both hold exactly (8 significant bits, |x| >= 2^-14 or 0).
fn halvable(x: f32) -> f32 {
    if x.abs() < 1.0 / 16384.0 {
        0.0
    } else {
        f32::from_bits(x.to_bits() & 0xffff_0000)
    }
}

fn bf16_bits(x: f32) -> u16 {
    (x.to_bits() >> 16) as u16
}

/// float16 bits of a value `halvable` returned (normal or zero: no rounding needed).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    if x == 0.0 {
        return sign;
    }
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!(
        (1..31).contains(&exp),
        "{x} is outside float16's normal range"
    );
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

#[test]
fn half_precision_tensors_widen_exactly() {
    let mut entries = tiny_swin(6, false, true);
    for e in &mut entries {
        e.data.iter_mut().for_each(|v| *v = halvable(*v));
    }
    let reference = create(&entries).unwrap();
    // Every other tensor F16, the rest BF16, one left F32.
    let bits: Vec<Vec<u16>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.data
                .iter()
                .map(|&v| {
                    if i % 2 == 0 {
                        f16_bits(v)
                    } else {
                        bf16_bits(v)
                    }
                })
                .collect()
        })
        .collect();
    let mixed: Vec<Tensor> = entries
        .iter()
        .zip(&bits)
        .enumerate()
        .map(|(i, (e, b))| Tensor {
            name: &e.name,
            shape: &e.shape,
            data: if i == 3 {
                TensorData::F32(&e.data)
            } else if i % 2 == 0 {
                TensorData::F16(b)
            } else {
                TensorData::Bf16(b)
            },
        })
        .collect();
    let model = Model::from_tensors(&mixed, &ModelOptions::default()).unwrap();
    let x = Lcg(7).vec(3 * 32 * 32, 1.0);
    let want = reference.classify(&x, 1, SIZE).unwrap();
    let got = model.classify(&x, 1, SIZE).unwrap();
    assert!(same_bits(&got, &want), "{got:?} != {want:?}");
}

/// A .safetensors file of the entries (F32, or F16 for the names `as_f16` selects).
fn write_safetensors(path: &std::path::Path, entries: &[Entry], as_f16: impl Fn(&str) -> bool) {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let start = data.len();
        let dtype = if as_f16(&e.name) {
            e.data
                .iter()
                .for_each(|&v| data.extend_from_slice(&f16_bits(v).to_le_bytes()));
            "F16"
        } else {
            e.data
                .iter()
                .for_each(|&v| data.extend_from_slice(&v.to_le_bytes()));
            "F32"
        };
        let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            if i == 0 { "" } else { "," },
            e.name,
            shape.join(","),
            data.len()
        );
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

#[test]
fn load_reads_a_safetensors_file() {
    let mut entries = tiny_swin(8, false, true);
    for e in &mut entries {
        e.data.iter_mut().for_each(|v| *v = halvable(*v));
    }
    let path = std::env::temp_dir().join(format!(
        "winattn-rust-model-{}.safetensors",
        std::process::id()
    ));
    write_safetensors(&path, &entries, |name| name.contains("mlp"));
    let loaded = Model::load(
        &path,
        &ModelOptions {
            num_threads: 2,
            ..Default::default()
        },
    );
    std::fs::remove_file(&path).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.num_threads().unwrap(), 2);
    let created = create(&entries).unwrap();
    assert_eq!(loaded.info(), created.info());
    let x = Lcg(9).vec(2 * 3 * 32 * 32, 1.0);
    assert!(same_bits(
        &loaded.classify(&x, 2, SIZE).unwrap(),
        &created.classify(&x, 2, SIZE).unwrap()
    ));

    let missing = std::env::temp_dir().join("winattn-rust-no-such-dir/none.safetensors");
    assert_error(
        Model::load(&missing, &ModelOptions::default()),
        Status::InvalidArgument,
        "none.safetensors",
    );
    assert_error(
        Model::load("a\0b", &ModelOptions::default()),
        Status::InvalidArgument,
        "NUL",
    );
}

#[test]
fn bad_tensors_are_named_in_the_error() {
    let entries = tiny_swin(10, false, true);

    let name = "features.1.0.mlp.3.weight";
    let without: Vec<Entry> = entries.iter().filter(|e| e.name != name).cloned().collect();
    assert_error(create(&without), Status::InvalidArgument, name);

    let name = "features.3.1.attn.qkv.weight";
    let mut reshaped = entries.clone();
    let e = reshaped.iter_mut().find(|e| e.name == name).unwrap();
    e.shape = vec![3 * 2 * E as i64 + 3, 2 * E as i64];
    e.data = vec![0.01; (3 * 2 * E + 3) * 2 * E];
    assert_error(create(&reshaped), Status::InvalidArgument, name);

    let mut extra = entries.clone();
    extra.push(Entry {
        name: "features.9.unused.weight".into(),
        shape: vec![2],
        data: vec![0.0; 2],
    });
    assert_error(
        create(&extra),
        Status::InvalidArgument,
        "features.9.unused.weight",
    );

    let mut nan = entries.clone();
    nan[5].data[0] = f32::NAN;
    assert_error(create(&nan), Status::InvalidArgument, &nan[5].name.clone());

    // The crate's own checks, before the library is called.
    let mut t = tensors(&entries);
    t[0].shape = &[16, 3, 4, 5];
    assert_error(
        Model::from_tensors(&t, &ModelOptions::default()),
        Status::InvalidArgument,
        "tensor \"features.0.0.weight\" has 768 elements, expected 960",
    );
    let mut t = tensors(&entries);
    t[1].name = "bad\0name";
    assert_error(
        Model::from_tensors(&t, &ModelOptions::default()),
        Status::InvalidArgument,
        "NUL",
    );
    let mut t = tensors(&entries);
    t[1].shape = &[1, 1, 1, 1, 1, 1, 1, 1, 16];
    assert_error(
        Model::from_tensors(&t, &ModelOptions::default()),
        Status::InvalidArgument,
        "9 dimensions",
    );
    let mut t = tensors(&entries);
    t[1].shape = &[-16];
    assert_error(
        Model::from_tensors(&t, &ModelOptions::default()),
        Status::InvalidArgument,
        "negative",
    );
    let mut t = tensors(&entries);
    t[1].shape = &[i64::MAX, i64::MAX];
    assert_error(
        Model::from_tensors(&t, &ModelOptions::default()),
        Status::InvalidArgument,
        "overflow",
    );
    assert_error(
        Model::from_tensors(
            &tensors(&entries),
            &ModelOptions {
                num_threads: winattn::MAX_THREADS + 1,
                ..Default::default()
            },
        ),
        Status::InvalidArgument,
        "num_threads",
    );
    assert_error(
        Model::from_tensors(&[], &ModelOptions::default()),
        Status::InvalidArgument,
        "",
    );
}

fn last_library_message() -> String {
    // SAFETY: a NUL-terminated string valid until this thread's next failing call.
    unsafe { CStr::from_ptr(winattn::sys::winattn_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn wrong_inputs_are_refused() {
    let model = create(&tiny_swin(11, false, true)).unwrap();
    let x = vec![0.5f32; 3 * 32 * 32];
    // Make the library's per-thread message something known, then check the crate's own length checks
    // leave it alone: the library was not called.
    assert!(winattn::set_max_isa("no-such-isa").is_err());
    let before = last_library_message();
    assert_error(
        model.classify(&x[1..], 1, SIZE),
        Status::InvalidArgument,
        "input has 3071 elements, expected 3072",
    );
    assert_error(
        model.classify(&x, 2, SIZE),
        Status::InvalidArgument,
        "expected 6144",
    );
    let mut logits = vec![0f32; CLASSES + 1];
    assert_error(
        model.classify_into(&x, 1, SIZE, &mut logits),
        Status::InvalidArgument,
        "logits has 11 elements, expected 10",
    );
    assert_error(
        model.features(&x, 1, [1, 32, 33]),
        Status::InvalidArgument,
        "input",
    );
    assert_error(
        model.classify(&x, 1, [1, 0, 32]),
        Status::InvalidArgument,
        "size[1] = 0",
    );
    // Sizes whose products are huge or overflow: refused before anything is allocated.
    assert_error(
        model.classify(&x, 1 << 50, SIZE),
        Status::InvalidArgument,
        "input",
    );
    assert_error(
        model.classify(&x, usize::MAX, SIZE),
        Status::InvalidArgument,
        "overflow",
    );
    assert_error(
        model.features(&x, 1, [i64::MAX, i64::MAX, 2]),
        Status::InvalidArgument,
        "overflow",
    );
    assert_eq!(last_library_message(), before);

    // What only the library knows: frames != 1 for a 2D model, a size smaller than the patch.
    let x2 = vec![0.5f32; 3 * 2 * 32 * 32];
    assert!(model.classify(&x2, 1, [2, 32, 32]).is_err());
    assert!(model.feature_shapes([2, 32, 32]).is_err());
    let small = vec![0.5f32; 3 * 3 * 32];
    assert!(model.classify(&small, 1, [1, 3, 32]).is_err());
    assert_ne!(last_library_message(), before);
    // The model still works.
    assert_eq!(model.classify(&x, 1, SIZE).unwrap().len(), CLASSES);
}

#[test]
fn a_backbone_has_features_but_no_logits() {
    let model = create(&tiny_swin(12, false, false)).unwrap();
    assert_eq!(model.info().num_classes, 0);
    let x = Lcg(13).vec(3 * 32 * 32, 1.0);
    assert_error(
        model.classify(&x, 1, SIZE),
        Status::InvalidArgument,
        "num_classes 0",
    );
    let features = model.features(&x, 1, SIZE).unwrap();
    assert_eq!(features[1].len(), 4 * 4 * 2 * E);
}

#[test]
fn thread_budget_does_not_change_bits() {
    let model = create(&tiny_swin(14, false, true)).unwrap();
    let x = Lcg(15).vec(2 * 3 * 32 * 32, 1.0);
    model.set_num_threads(1).unwrap();
    assert_eq!(model.num_threads().unwrap(), 1);
    let one = model.classify(&x, 2, SIZE).unwrap();
    let one_f = model.features(&x, 2, SIZE).unwrap();
    model.set_num_threads(2).unwrap();
    assert_eq!(model.num_threads().unwrap(), 2);
    let two = model.classify(&x, 2, SIZE).unwrap();
    let two_f = model.features(&x, 2, SIZE).unwrap();
    assert!(same_bits(&one, &two));
    for (a, b) in one_f.iter().zip(&two_f) {
        assert!(same_bits(a, b));
    }
    assert_error(
        model.set_num_threads(winattn::MAX_THREADS + 1),
        Status::InvalidArgument,
        "num_threads",
    );
    assert_eq!(model.num_threads().unwrap(), 2);
    model.set_num_threads(winattn::MAX_THREADS).unwrap();
    model.set_num_threads(0).unwrap();
    assert_eq!(model.num_threads().unwrap(), 0);
}

#[test]
fn model_is_shared_between_threads() {
    let model = create(&tiny_swin(16, false, true)).unwrap();
    let inputs: Vec<Vec<f32>> = (0..4).map(|i| Lcg(100 + i).vec(3 * 32 * 32, 1.0)).collect();
    let serial: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| model.classify(x, 1, SIZE).unwrap())
        .collect();
    std::thread::scope(|s| {
        for (x, want) in inputs.iter().zip(&serial) {
            let model = &model;
            s.spawn(move || {
                for round in 0..3 {
                    if round == 1 {
                        model.set_num_threads(1).unwrap();
                    }
                    assert!(same_bits(&model.classify(x, 1, SIZE).unwrap(), want));
                }
            });
        }
    });
}
