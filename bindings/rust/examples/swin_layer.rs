//! A Swin-T stage-1 attention layer end to end: random weights from a tiny deterministic LCG, a prepacked
//! `winattn::Layer`, one 56x56x96 feature map, an output checksum and the time per forward.
//!
//!     cargo run --release --offline --example swin_layer [batch] [iterations]
use std::time::Instant;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let iterations: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    // Swin-T, stage 1: C = 96, 3 heads, 7x7 windows shifted by 3, 56x56 tokens.
    let (channels, heads) = (96usize, 3usize);
    let window = [1i64, 7, 7];
    let shift = [0i64, 3, 3];
    let grid = [1i64, 56, 56];
    let mut rng = Lcg(2024);
    let w_scale = 1.0 / (channels as f32).sqrt();
    let qkv_weight = rng.vec(3 * channels * channels, w_scale);
    let qkv_bias = rng.vec(3 * channels, 0.02);
    let proj_weight = rng.vec(channels * channels, w_scale);
    let proj_bias = rng.vec(channels, 0.02);
    let rows = winattn::relative_position_table_rows(&window[1..])?;
    let table = rng.vec(rows * heads, 0.02);

    let layer = winattn::Layer::new(&winattn::LayerDesc {
        channels,
        num_heads: heads,
        window,
        shift,
        qkv_weight: &qkv_weight,
        qkv_bias: Some(&qkv_bias),
        proj_weight: &proj_weight,
        proj_bias: Some(&proj_bias),
        relative_position_bias_table: Some(&table),
        ..Default::default()
    })?;

    let tokens = (grid[1] * grid[2]) as usize;
    let input = rng.vec(batch * tokens * channels, 1.0);
    let mut output = vec![0f32; input.len()];
    println!(
        "winattn {} ({} kernels, {} threads requested; 0 = OpenMP default)",
        winattn::version(),
        winattn::active_isa(),
        winattn::num_threads()
    );
    layer.forward_into(&input, batch, grid, &mut output)?; // warm-up
    let start = Instant::now();
    for _ in 0..iterations {
        layer.forward_into(&input, batch, grid, &mut output)?;
    }
    let per_call = start.elapsed().as_secs_f64() / iterations.max(1) as f64;

    let checksum: f64 = output.iter().map(|&x| x as f64).sum();
    let abs_sum: f64 = output.iter().map(|&x| (x as f64).abs()).sum();
    println!(
        "Swin-T stage 1 layer: batch {batch}, {}x{} tokens, C {channels}, {heads} heads, window 7, shift 3",
        grid[1], grid[2]
    );
    println!("output checksum: sum {checksum:.6}, sum|x| {abs_sum:.6}");
    println!(
        "time per forward: {:.3} ms ({iterations} iterations)",
        per_call * 1e3
    );
    if !checksum.is_finite() {
        return Err("non-finite output".into());
    }
    Ok(())
}
