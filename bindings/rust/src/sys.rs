//! Raw declarations of the C interface in `include/winattn/winattn.h`, one to one.
//!
//! Everything here is `unsafe` to call; the safe layer in the crate root checks lengths first. C enums are
//! `int`-sized, so the enum types are `c_int` aliases with the enumerators as constants (a Rust `enum`
//! would be undefined behaviour for a value the library adds later).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int};

/// `winattn_status`: the result of every fallible call.
pub type winattn_status = c_int;
/// Success.
pub const WINATTN_STATUS_OK: winattn_status = 0;
/// An argument was NULL, out of range, inconsistent, or sizes overflowed.
pub const WINATTN_STATUS_INVALID_ARGUMENT: winattn_status = 1;
/// A valid request this build cannot serve (e.g. BF16 compute).
pub const WINATTN_STATUS_UNSUPPORTED: winattn_status = 2;
/// A workspace could not be allocated.
pub const WINATTN_STATUS_OUT_OF_MEMORY: winattn_status = 3;
/// A bug in the library.
pub const WINATTN_STATUS_INTERNAL_ERROR: winattn_status = 4;

/// `winattn_dtype`: compute precision of a prepacked layer.
pub type winattn_dtype = c_int;
/// float32 compute.
pub const WINATTN_DTYPE_F32: winattn_dtype = 0;
/// bfloat16 compute (UNSUPPORTED in version 0.1).
pub const WINATTN_DTYPE_BF16: winattn_dtype = 1;

/// `WINATTN_VERSION_MAJOR` of the header these declarations were written against.
pub const WINATTN_VERSION_MAJOR: c_int = 0;
/// `WINATTN_VERSION_MINOR`.
pub const WINATTN_VERSION_MINOR: c_int = 1;
/// `WINATTN_VERSION_PATCH`.
pub const WINATTN_VERSION_PATCH: c_int = 0;

/// `WINATTN_MAX_THREADS`: the most threads any call uses; larger thread counts are rejected.
pub const WINATTN_MAX_THREADS: c_int = 256;
/// `WINATTN_THREAD_SCRATCH_KEEP_BYTES`: scratch a thread keeps between calls; more is freed after the call.
pub const WINATTN_THREAD_SCRATCH_KEEP_BYTES: usize = 16 * 1024 * 1024;

/// `winattn_window_attention_args`: the stateless layer's description.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct winattn_window_attention_args {
    /// Images in the batch.
    pub batch: i64,
    /// Depth, height, width of the feature map.
    pub grid: [i64; 3],
    /// Channels C.
    pub channels: i64,
    /// Heads (divides C).
    pub num_heads: i64,
    /// Window per axis, each >= 1.
    pub window: [i64; 3],
    /// Cyclic shift per axis, 0 <= shift < window.
    pub shift: [i64; 3],
    /// [3C][C].
    pub qkv_weight: *const f32,
    /// [3C] or NULL.
    pub qkv_bias: *const f32,
    /// [C][C].
    pub proj_weight: *const f32,
    /// [C] or NULL.
    pub proj_bias: *const f32,
    /// [heads][N][N] or NULL.
    pub relative_position_bias: *const f32,
    /// [heads] or NULL (non-NULL selects SwinV2 cosine attention).
    pub logit_scale: *const f32,
    /// Reserved, 0.
    pub flags: u32,
}

/// `winattn_layer`: opaque prepacked layer.
#[repr(C)]
pub struct winattn_layer {
    _opaque: [u8; 0],
}

/// `winattn_layer_desc`: what `winattn_layer_create` copies.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct winattn_layer_desc {
    /// Channels C.
    pub channels: i64,
    /// Heads (divides C).
    pub num_heads: i64,
    /// Window per axis.
    pub window: [i64; 3],
    /// Cyclic shift per axis.
    pub shift: [i64; 3],
    /// [3C][C].
    pub qkv_weight: *const f32,
    /// [3C] or NULL.
    pub qkv_bias: *const f32,
    /// [C][C].
    pub proj_weight: *const f32,
    /// [C] or NULL.
    pub proj_bias: *const f32,
    /// v1: [prod(2*window[d]-1)][heads] or NULL.
    pub relative_position_bias_table: *const f32,
    /// v2: [heads]; NULL for v1.
    pub logit_scale: *const f32,
    /// v2 CPB MLP: [cpb_hidden][2].
    pub cpb_weight1: *const f32,
    /// [cpb_hidden].
    pub cpb_bias1: *const f32,
    /// [heads][cpb_hidden].
    pub cpb_weight2: *const f32,
    /// Hidden width of the CPB MLP (0 = none).
    pub cpb_hidden: i64,
    /// A `WINATTN_DTYPE_*` value.
    pub compute_dtype: winattn_dtype,
    /// Reserved, 0.
    pub flags: u32,
}

extern "C" {
    /// See winattn.h.
    pub fn winattn_status_string(status: winattn_status) -> *const c_char;
    /// See winattn.h.
    pub fn winattn_last_error_message() -> *const c_char;
    /// See winattn.h.
    pub fn winattn_version() -> *const c_char;
    /// See winattn.h.
    pub fn winattn_active_isa() -> *const c_char;
    /// See winattn.h.
    pub fn winattn_set_max_isa(isa: *const c_char) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_set_num_threads(num_threads: c_int) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_get_num_threads() -> c_int;
    /// See winattn.h.
    pub fn winattn_release_thread_memory();
    /// See winattn.h.
    pub fn winattn_relative_position_index(
        ndim: c_int,
        window: *const i64,
        index: *mut i64,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_relative_position_bias(
        table: *const f32,
        table_rows: i64,
        num_heads: i64,
        index: *const i64,
        n: i64,
        bias: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_relative_position_bias_backward(
        grad_bias: *const f32,
        table_rows: i64,
        num_heads: i64,
        index: *const i64,
        n: i64,
        grad_table: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_continuous_position_bias_table(
        window_h: i64,
        window_w: i64,
        w1: *const f32,
        b1: *const f32,
        w2: *const f32,
        hidden: i64,
        num_heads: i64,
        table: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_shifted_window_mask(
        grid: *const i64,
        window: *const i64,
        shift: *const i64,
        mask: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_window_attention(
        num_windows: i64,
        num_heads: i64,
        n: i64,
        head_dim: i64,
        q: *const f32,
        k: *const f32,
        v: *const f32,
        scale: f32,
        bias: *const f32,
        mask: *const f32,
        mask_windows: i64,
        out: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_shifted_window_attention(
        args: *const winattn_window_attention_args,
        input: *const f32,
        output: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_create(
        desc: *const winattn_layer_desc,
        layer: *mut *mut winattn_layer,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_forward(
        layer: *const winattn_layer,
        input: *const f32,
        batch: i64,
        grid: *const i64,
        output: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_destroy(layer: *mut winattn_layer);
    /// See winattn.h.
    pub fn winattn_layer_set_num_threads(
        layer: *mut winattn_layer,
        num_threads: c_int,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_get_num_threads(
        layer: *const winattn_layer,
        num_threads: *mut c_int,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_trim(layer: *mut winattn_layer) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_layer_memory_bytes(
        layer: *const winattn_layer,
        bytes: *mut i64,
    ) -> winattn_status;
}

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    // The offsets a C compiler gives these structs on LP64 targets.
    #[test]
    fn struct_layouts_match_c() {
        assert_eq!(offset_of!(winattn_window_attention_args, qkv_weight), 96);
        assert_eq!(offset_of!(winattn_window_attention_args, flags), 144);
        assert_eq!(size_of::<winattn_window_attention_args>(), 152);
        assert_eq!(offset_of!(winattn_layer_desc, qkv_weight), 64);
        assert_eq!(offset_of!(winattn_layer_desc, cpb_hidden), 136);
        assert_eq!(offset_of!(winattn_layer_desc, compute_dtype), 144);
        assert_eq!(offset_of!(winattn_layer_desc, flags), 148);
        assert_eq!(size_of::<winattn_layer_desc>(), 152);
        assert_eq!(align_of::<winattn_layer_desc>(), 8);
    }
}
