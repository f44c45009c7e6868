//! Raw declarations of the C interface in `include/winattn/winattn.h`, one to one.
//!
//! Everything here is `unsafe` to call; the safe layer in the crate root checks lengths first. C enums are
//! `int`-sized, so the enum types are `c_int` aliases with the enumerators as constants (a Rust `enum`
//! would be undefined behaviour for a value the library adds later).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

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
/// bfloat16 compute (UNSUPPORTED in version 0.1); also a tensor storage type (`winattn_tensor`).
pub const WINATTN_DTYPE_BF16: winattn_dtype = 1;
/// IEEE half precision: a tensor storage type (`winattn_tensor`), not a compute precision.
pub const WINATTN_DTYPE_F16: winattn_dtype = 2;

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

/// `winattn_model`: opaque whole network (Swin, SwinV2, Video Swin).
#[repr(C)]
pub struct winattn_model {
    _opaque: [u8; 0],
}

/// `winattn_model_options`: what `winattn_model_load` and `winattn_model_create` take besides the weights.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct winattn_model_options {
    /// `WINATTN_DTYPE_F32` (0, the zero-initialised default) or BF16 (UNSUPPORTED in version 0.1).
    pub compute_dtype: winattn_dtype,
    /// The model's thread budget; 0 = the process default.
    pub num_threads: c_int,
    /// Reserved, 0.
    pub flags: u32,
}

/// `winattn_model_family`: the architecture a model's weights were recognised as.
pub type winattn_model_family = c_int;
/// Swin v1 (torchvision swin_t/s/b, timm swin_*).
pub const WINATTN_MODEL_SWIN: winattn_model_family = 1;
/// SwinV2 (torchvision swin_v2_t/s/b, timm swinv2_*).
pub const WINATTN_MODEL_SWIN_V2: winattn_model_family = 2;
/// Video Swin 3D (torchvision swin3d_t/s/b, the original Video Swin).
pub const WINATTN_MODEL_SWIN_3D: winattn_model_family = 3;

/// `winattn_model_info`: a model's architecture.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct winattn_model_info {
    /// A `WINATTN_MODEL_*` value.
    pub family: winattn_model_family,
    /// Input channels (3 for RGB).
    pub in_channels: i64,
    /// Classes of the head; 0 for a backbone without one.
    pub num_classes: i64,
    /// Channels after the patch embedding.
    pub embed_dim: i64,
    /// Stages (entries used in `depths` and `num_heads`).
    pub num_stages: i64,
    /// Blocks per stage; unused entries 0.
    pub depths: [i64; 8],
    /// Heads per stage; unused entries 0.
    pub num_heads: [i64; 8],
    /// Patch (depth, height, width); 2D: depth 1.
    pub patch: [i64; 3],
    /// Window (depth, height, width); 2D: depth 1.
    pub window: [i64; 3],
}

/// `winattn_tensor`: one caller-held tensor of a state_dict, dense row-major.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct winattn_tensor {
    /// NUL-terminated name as in a torchvision or timm state_dict.
    pub name: *const c_char,
    /// `WINATTN_DTYPE_F32`, `_F16` or `_BF16`.
    pub dtype: winattn_dtype,
    /// Dimensions used in `shape` (at most 8).
    pub ndim: i32,
    /// The shape; entries past `ndim` unused.
    pub shape: [i64; 8],
    /// The elements, `prod(shape)` of `dtype`.
    pub data: *const c_void,
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
    /// See winattn.h.
    pub fn winattn_model_load(
        path: *const c_char,
        options: *const winattn_model_options,
        model: *mut *mut winattn_model,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_create(
        tensors: *const winattn_tensor,
        count: i64,
        options: *const winattn_model_options,
        model: *mut *mut winattn_model,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_get_info(
        model: *const winattn_model,
        info: *mut winattn_model_info,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_classify(
        model: *const winattn_model,
        input: *const f32,
        batch: i64,
        size: *const i64,
        logits: *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_feature_shapes(
        model: *const winattn_model,
        size: *const i64,
        shapes: *mut i64,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_features(
        model: *const winattn_model,
        input: *const f32,
        batch: i64,
        size: *const i64,
        features: *const *mut f32,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_set_num_threads(
        model: *mut winattn_model,
        num_threads: c_int,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_get_num_threads(
        model: *const winattn_model,
        num_threads: *mut c_int,
    ) -> winattn_status;
    /// See winattn.h.
    pub fn winattn_model_destroy(model: *mut winattn_model);
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
        assert_eq!(offset_of!(winattn_model_options, num_threads), 4);
        assert_eq!(offset_of!(winattn_model_options, flags), 8);
        assert_eq!(size_of::<winattn_model_options>(), 12);
        assert_eq!(offset_of!(winattn_model_info, in_channels), 8);
        assert_eq!(offset_of!(winattn_model_info, num_stages), 32);
        assert_eq!(offset_of!(winattn_model_info, depths), 40);
        assert_eq!(offset_of!(winattn_model_info, num_heads), 104);
        assert_eq!(offset_of!(winattn_model_info, patch), 168);
        assert_eq!(offset_of!(winattn_model_info, window), 192);
        assert_eq!(size_of::<winattn_model_info>(), 216);
        assert_eq!(offset_of!(winattn_tensor, dtype), 8);
        assert_eq!(offset_of!(winattn_tensor, ndim), 12);
        assert_eq!(offset_of!(winattn_tensor, shape), 16);
        assert_eq!(offset_of!(winattn_tensor, data), 80);
        assert_eq!(size_of::<winattn_tensor>(), 88);
    }
}
