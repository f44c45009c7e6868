//! The controls a long-running server uses: the per-layer thread budget, trim, the memory report, the
//! release of a thread's scratch memory, and MAX_THREADS.
use winattn::{Layer, LayerDesc, Status};

mod common;
use common::Lcg;

const C: usize = 32;
const HEADS: usize = 4;

/// A shifted 7x7-window layer of 32 channels with a relative position bias table.
fn shifted_layer(rng: &mut Lcg) -> Layer {
    let qkv_w = rng.vec(3 * C * C, 0.2);
    let proj_w = rng.vec(C * C, 0.2);
    let table = rng.vec(13 * 13 * HEADS, 0.1);
    Layer::new(&LayerDesc {
        channels: C,
        num_heads: HEADS,
        window: [1, 7, 7],
        shift: [0, 3, 3],
        qkv_weight: &qkv_w,
        proj_weight: &proj_w,
        relative_position_bias_table: Some(&table),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn max_threads_matches_the_header() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../include/winattn/winattn.h"
    ))
    .unwrap();
    let value = header
        .lines()
        .find_map(|l| l.strip_prefix("#define WINATTN_MAX_THREADS "))
        .expect("no WINATTN_MAX_THREADS in the header");
    assert_eq!(value.trim().parse::<usize>().unwrap(), winattn::MAX_THREADS);
}

#[test]
fn layer_thread_budget() {
    let mut rng = Lcg(1);
    let layer = shifted_layer(&mut rng);
    let x = rng.vec(2 * 21 * 28 * C, 1.0);
    assert_eq!(layer.num_threads().unwrap(), 0);
    let reference = layer.forward(&x, 2, [1, 21, 28]).unwrap();
    for budget in [1, 3, winattn::MAX_THREADS, 0] {
        layer.set_num_threads(budget).unwrap();
        assert_eq!(layer.num_threads().unwrap(), budget);
        assert_eq!(
            layer.forward(&x, 2, [1, 21, 28]).unwrap(),
            reference,
            "budget {budget}"
        );
    }
    layer.set_num_threads(2).unwrap();
    let e = layer
        .set_num_threads(winattn::MAX_THREADS + 1)
        .expect_err("budget above MAX_THREADS accepted");
    assert_eq!(e.status, Status::InvalidArgument);
    assert_eq!(
        layer.num_threads().unwrap(),
        2,
        "a refused budget changed the setting"
    );
}

#[test]
fn trim_keeps_the_results() {
    let mut rng = Lcg(2);
    let layer = shifted_layer(&mut rng);
    let created = layer.memory_bytes().unwrap();
    assert!(created > 0);
    let x = rng.vec(3 * 14 * 21 * C, 1.0);
    let reference = layer.forward(&x, 3, [1, 14, 21]).unwrap();
    let used = layer.memory_bytes().unwrap();
    layer.trim().unwrap();
    let trimmed = layer.memory_bytes().unwrap();
    assert!(
        trimmed <= used && trimmed <= created,
        "trim: {created} after create, {used} after a forward, {trimmed} after trim"
    );
    assert_eq!(layer.forward(&x, 3, [1, 14, 21]).unwrap(), reference);
    layer.trim().unwrap();
    layer.trim().unwrap();
    assert_eq!(layer.forward(&x, 3, [1, 14, 21]).unwrap(), reference);
}

/// 50 forwards with 50 different grids on a shifted layer: the memory the layer keeps must not grow with
/// the number of distinct grids (the header bounds it by the memory after create, 7*N*N floats of masks
/// and a bounded number of projection plans).
#[test]
fn memory_is_bounded_across_grids() {
    let mut rng = Lcg(3);
    let layer = shifted_layer(&mut rng);
    let created = layer.memory_bytes().unwrap();
    let grids: Vec<[i64; 3]> = (0..50)
        .map(|i| [1, 7 + (i * 5) % 29, 7 + (i * 11) % 31])
        .collect();
    let mut seen = Vec::new();
    for g in &grids {
        let len = (g[1] * g[2]) as usize * C;
        layer.forward(&vec![1.0; len], 1, *g).unwrap();
        seen.push(layer.memory_bytes().unwrap());
    }
    let masks = 7 * 49 * 49 * 4;
    let first = *seen[..25].iter().max().unwrap();
    let second = *seen[25..].iter().max().unwrap();
    assert!(
        second <= first + masks,
        "memory kept growing with new grids: {created} after create, peak {first} over grids 1-25, \
         {second} over 26-50"
    );
    layer.trim().unwrap();
    assert!(layer.memory_bytes().unwrap() <= created + masks);
}

#[test]
fn budget_and_trim_while_forwards_run() {
    let mut rng = Lcg(4);
    let layer = shifted_layer(&mut rng);
    let x = rng.vec(14 * 14 * C, 1.0);
    let reference = layer.forward(&x, 1, [1, 14, 14]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(layer.forward(&x, 1, [1, 14, 14]).unwrap(), reference);
                }
            });
        }
        for i in 0..30 {
            layer.set_num_threads(i % 4).unwrap();
            layer.trim().unwrap();
        }
    });
}

#[test]
fn release_thread_memory_between_calls() {
    let mut rng = Lcg(5);
    let layer = shifted_layer(&mut rng);
    let x = rng.vec(14 * 14 * C, 1.0);
    let reference = layer.forward(&x, 1, [1, 14, 14]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                winattn::release_thread_memory();
                assert_eq!(layer.forward(&x, 1, [1, 14, 14]).unwrap(), reference);
                winattn::release_thread_memory();
                assert_eq!(layer.forward(&x, 1, [1, 14, 14]).unwrap(), reference);
            });
        }
    });
    winattn::release_thread_memory();
    assert_eq!(layer.forward(&x, 1, [1, 14, 14]).unwrap(), reference);
}
