//! A whole Swin network with `winattn::Model`: a `.safetensors` checkpoint when a path is given (e.g. one
//! written by `python3 -m winattn.export --torchvision swin_t swin_t.safetensors`), otherwise a Swin-T with
//! random weights built from tensors named as in torchvision's state_dict. Classifies one random 224x224
//! image, prints the top-5 classes, the stage shapes and the time per call.
//!
//!     cargo run --release --offline --example swin_model [model.safetensors] [iterations]
use std::time::Instant;
use winattn::{Model, ModelOptions, Tensor};

struct Lcg(u64);
impl Lcg {
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// torchvision swin_t's state_dict with random weights: (name, shape, data).
fn random_swin_t(rng: &mut Lcg) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    let (embed, depths, heads, window, classes) =
        (96usize, [2, 2, 6, 2], [3, 6, 12, 24], 7usize, 1000);
    let mut sd = Vec::new();
    let mut add = |name: String, shape: &[usize], scale: f32, offset: f32| {
        let len = shape.iter().product();
        let data = rng
            .vec(len, scale)
            .into_iter()
            .map(|v| v + offset)
            .collect();
        sd.push((name, shape.iter().map(|&d| d as i64).collect(), data));
    };
    let lin = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
    add(
        "features.0.0.weight".into(),
        &[embed, 3, 4, 4],
        lin(48),
        0.0,
    );
    add("features.0.0.bias".into(), &[embed], 0.02, 0.0);
    add("features.0.2.weight".into(), &[embed], 0.1, 1.0);
    add("features.0.2.bias".into(), &[embed], 0.02, 0.0);
    let mut c = embed;
    for (stage, (&depth, &h)) in depths.iter().zip(&heads).enumerate() {
        if stage > 0 {
            let p = format!("features.{}", 2 * stage);
            add(
                format!("{p}.reduction.weight"),
                &[2 * c, 4 * c],
                lin(4 * c),
                0.0,
            );
            add(format!("{p}.norm.weight"), &[4 * c], 0.1, 1.0);
            add(format!("{p}.norm.bias"), &[4 * c], 0.02, 0.0);
            c *= 2;
        }
        for i in 0..depth {
            let p = format!("features.{}.{i}", 2 * stage + 1);
            add(format!("{p}.norm1.weight"), &[c], 0.1, 1.0);
            add(format!("{p}.norm1.bias"), &[c], 0.02, 0.0);
            add(format!("{p}.attn.qkv.weight"), &[3 * c, c], lin(c), 0.0);
            add(format!("{p}.attn.qkv.bias"), &[3 * c], 0.02, 0.0);
            add(format!("{p}.attn.proj.weight"), &[c, c], lin(c), 0.0);
            add(format!("{p}.attn.proj.bias"), &[c], 0.02, 0.0);
            let rows = (2 * window - 1) * (2 * window - 1);
            add(
                format!("{p}.attn.relative_position_bias_table"),
                &[rows, h],
                0.02,
                0.0,
            );
            add(format!("{p}.norm2.weight"), &[c], 0.1, 1.0);
            add(format!("{p}.norm2.bias"), &[c], 0.02, 0.0);
            add(format!("{p}.mlp.0.weight"), &[4 * c, c], lin(c), 0.0);
            add(format!("{p}.mlp.0.bias"), &[4 * c], 0.02, 0.0);
            add(format!("{p}.mlp.3.weight"), &[c, 4 * c], lin(4 * c), 0.0);
            add(format!("{p}.mlp.3.bias"), &[c], 0.02, 0.0);
        }
    }
    add("norm.weight".into(), &[c], 0.1, 1.0);
    add("norm.bias".into(), &[c], 0.02, 0.0);
    add("head.weight".into(), &[classes, c], lin(c), 0.0);
    add("head.bias".into(), &[classes], 0.02, 0.0);
    sd
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|a| !a.is_empty() && a != "-");
    let iterations: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let mut rng = Lcg(2024);

    let start = Instant::now();
    let model = match &path {
        Some(path) => Model::load(path, &ModelOptions::default())?,
        None => {
            let sd = random_swin_t(&mut rng);
            let tensors: Vec<Tensor> = sd
                .iter()
                .map(|(name, shape, data)| Tensor::f32(name, shape, data))
                .collect();
            Model::from_tensors(&tensors, &ModelOptions::default())?
        }
    };
    let info = model.info();
    println!(
        "winattn {} ({} kernels): {} in {:.1} ms",
        winattn::version(),
        winattn::active_isa(),
        path.as_deref().unwrap_or("random Swin-T"),
        start.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{:?}: embed {}, depths {:?}, heads {:?}, dims {:?}, patch {:?}, window {:?}, {} classes",
        info.family,
        info.embed_dim,
        info.depths,
        info.num_heads,
        info.dims,
        info.patch,
        info.window,
        info.num_classes
    );

    let size = [1i64, 224, 224];
    let input = rng.vec(info.in_channels * 224 * 224, 1.0); // [1][3][224][224], normalised
    for (s, shape) in model.feature_shapes(size)?.iter().enumerate() {
        println!("stage {s}: [frames, height, width, channels] = {shape:?}");
    }
    if info.num_classes == 0 {
        let features = model.features(&input, 1, size)?;
        println!(
            "backbone: last stage holds {} floats",
            features.last().map_or(0, Vec::len)
        );
        return Ok(());
    }
    let mut logits = vec![0f32; info.num_classes];
    model.classify_into(&input, 1, size, &mut logits)?; // warm-up
    let start = Instant::now();
    for _ in 0..iterations {
        model.classify_into(&input, 1, size, &mut logits)?;
    }
    let per_call = start.elapsed().as_secs_f64() / iterations.max(1) as f64;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<String> = order
        .iter()
        .take(5)
        .map(|&k| format!("{k} ({:.4})", logits[k]))
        .collect();
    println!("top-5 classes: {}", top.join(", "));
    println!(
        "time per classify: {:.1} ms ({iterations} iterations)",
        per_call * 1e3
    );
    if !logits.iter().all(|v| v.is_finite()) {
        return Err("non-finite logits".into());
    }
    Ok(())
}
