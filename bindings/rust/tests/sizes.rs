//! Sizes too large to allocate, or whose products overflow: every function answers with an Err, and
//! neither aborts the process on the allocation nor panics on an arithmetic overflow (tests run as a debug
//! build, where an unchecked overflowing multiplication panics). Kept in their own test binary: before the
//! fix, the allocation failures aborted the whole process.
use winattn::{AttentionShape, Layer, LayerDesc, Status, WindowAttentionArgs};

mod common;
use common::assert_error as assert_status;

fn small_layer() -> Layer {
    let w = [0.01f32; 3 * 16];
    Layer::new(&LayerDesc {
        channels: 4,
        num_heads: 2,
        window: [1, 2, 2],
        shift: [0, 1, 1],
        qkv_weight: &w,
        proj_weight: &w[..16],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn layer_forward_checks_the_input_before_allocating() {
    let layer = small_layer();
    // The example: 2^40 * 4 floats (16 TiB) were allocated before the input length was checked.
    assert_status(
        layer.forward(&[1.0; 4], 1 << 40, [1, 1, 1]),
        Status::InvalidArgument,
        "input",
    );
    // 2^54 bytes: more than any address space, so this aborted whatever the overcommit policy.
    assert_status(
        layer.forward(&[1.0; 4], 1 << 50, [1, 1, 1]),
        Status::InvalidArgument,
        "input",
    );
    assert_status(
        layer.forward(&[1.0; 4], 1, [1 << 20, 1 << 20, 1 << 10]),
        Status::InvalidArgument,
        "input",
    );
    // Products that overflow usize.
    assert_status(
        layer.forward(&[1.0; 4], usize::MAX, [2, 2, 2]),
        Status::InvalidArgument,
        "overflow",
    );
    assert_status(
        layer.forward(&[1.0; 4], 1, [i64::MAX, i64::MAX, i64::MAX]),
        Status::InvalidArgument,
        "overflow",
    );
    // The layer still works.
    assert_eq!(layer.forward(&[1.0; 64], 1, [1, 4, 4]).unwrap().len(), 64);
}

#[test]
fn stateless_layer_checks_the_input_before_allocating() {
    let w = [0.01f32; 3 * 16];
    let args = WindowAttentionArgs {
        batch: 1 << 50,
        grid: [1, 1, 1],
        channels: 4,
        num_heads: 2,
        window: [1, 1, 1],
        qkv_weight: &w,
        proj_weight: &w[..16],
        ..Default::default()
    };
    assert_status(
        winattn::shifted_window_attention(&args, &[0.0; 4]),
        Status::InvalidArgument,
        "input",
    );
    let overflow = WindowAttentionArgs {
        batch: usize::MAX / 2,
        grid: [3, 1, 1],
        ..args
    };
    assert_status(
        winattn::shifted_window_attention(&overflow, &[0.0; 4]),
        Status::InvalidArgument,
        "overflow",
    );
}

#[test]
fn window_attention_checks_the_inputs_before_allocating() {
    let x = [0f32; 16];
    let huge = AttentionShape {
        num_windows: 1 << 50,
        num_heads: 1,
        n: 2,
        head_dim: 2,
    };
    assert_status(
        winattn::window_attention(huge, &x, &x, &x, 1.0, None, None),
        Status::InvalidArgument,
        "q",
    );
    let overflow = AttentionShape {
        num_windows: usize::MAX / 2,
        num_heads: 3,
        n: 1,
        head_dim: 1,
    };
    assert_status(
        winattn::window_attention(overflow, &x, &x, &x, 1.0, None, None),
        Status::InvalidArgument,
        "overflow",
    );
    let square_overflow = AttentionShape {
        num_windows: 1,
        num_heads: 1,
        n: 1 << 33,
        head_dim: 0,
    };
    assert_status(
        winattn::window_attention(square_overflow, &[], &[], &[], 1.0, None, Some(&x)),
        Status::InvalidArgument,
        "overflow",
    );
}

#[test]
fn relative_position_index_of_huge_windows() {
    // N = 2^28 tokens: N*N int64 entries are 2^59 bytes, a valid size no allocator can give (it aborted).
    assert_status(
        winattn::relative_position_index(&[1 << 14, 1 << 14]),
        Status::OutOfMemory,
        "index",
    );
    // N*N overflows isize in bytes (it panicked with "capacity overflow").
    assert_status(
        winattn::relative_position_index(&[1 << 15, 1 << 15]),
        Status::InvalidArgument,
        "index",
    );
    // N*N overflows usize.
    assert_status(
        winattn::relative_position_index(&[1 << 20, 1 << 20, 1 << 20]),
        Status::InvalidArgument,
        "overflow",
    );
    assert_status(
        winattn::relative_position_index(&[i64::MAX, 2]),
        Status::InvalidArgument,
        "overflow",
    );
}

#[test]
fn shifted_window_mask_of_huge_grids() {
    // 2^23 * 2^23 windows: the window count multiplied unchecked (a panic in debug builds) and the 2^48-byte
    // mask could not be allocated.
    assert_status(
        winattn::shifted_window_mask([1, 1 << 23, 1 << 23], [1, 1, 1], [0, 0, 0]),
        Status::OutOfMemory,
        "mask",
    );
    // The window count alone overflows usize.
    assert_status(
        winattn::shifted_window_mask([1 << 30, 1 << 30, 1 << 30], [1, 1, 1], [0, 0, 0]),
        Status::InvalidArgument,
        "overflow",
    );
    assert_status(
        winattn::shifted_window_mask([i64::MAX, i64::MAX, 1], [1, 1, 1], [0, 0, 0]),
        Status::InvalidArgument,
        "overflow",
    );
    assert_eq!(
        winattn::shifted_window_mask([1, 4, 4], [1, 2, 2], [0, 1, 1])
            .unwrap()
            .len(),
        4 * 16
    );
}

#[test]
fn continuous_position_bias_table_with_no_hidden_units() {
    // hidden = 0 makes w1 and w2 empty, so their lengths bounded nothing and the 2^50-head table was
    // allocated before the library could reject hidden = 0.
    assert_status(
        winattn::continuous_position_bias_table(1, 1, &[], None, &[], 0, 1 << 50),
        Status::InvalidArgument,
        "hidden",
    );
    assert_status(
        winattn::continuous_position_bias_table(2, 2, &[0.0; 2], None, &[], 1, 0),
        Status::InvalidArgument,
        "num_heads",
    );
    assert_status(
        winattn::continuous_position_bias_table(i64::MAX, i64::MAX, &[0.0; 2], None, &[0.0], 1, 1),
        Status::InvalidArgument,
        "overflow",
    );
}

#[test]
fn bias_lookup_sizes() {
    // n*n overflows usize.
    assert_status(
        winattn::relative_position_bias(&[0.0; 2], 1, &[0; 4], 1 << 33),
        Status::InvalidArgument,
        "overflow",
    );
    let mut grad = [0f32; 2];
    assert_status(
        winattn::relative_position_bias_backward(&[0.0; 4], 1, &[0; 4], 1 << 33, &mut grad),
        Status::InvalidArgument,
        "overflow",
    );
}

#[test]
fn thread_counts_out_of_range() {
    let layer = small_layer();
    for n in [winattn::MAX_THREADS + 1, 1 << 31, (1 << 32) + 5, usize::MAX] {
        assert_status(
            winattn::set_num_threads(n),
            Status::InvalidArgument,
            "num_threads",
        );
        assert_status(
            layer.set_num_threads(n),
            Status::InvalidArgument,
            "num_threads",
        );
    }
}
