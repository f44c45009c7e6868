//! Safe Rust bindings to **winattn**: Swin-style windowed multi-head attention with relative position bias,
//! on the CPU, through the library's C interface (`winattn.h`).
//!
//! Every function takes slices, checks their lengths against the sizes it is given *before* calling the
//! library, and returns [`Result`]. Arrays are dense, row-major `f32` in the layouts of the C header
//! (written as `[dim0][dim1]...` in the docs below). Window, grid and shift triples are
//! `(depth, height, width)`; 2D feature maps use depth 1, window 1 and shift 0 on the first axis.
//!
//! No argument makes a function panic or abort the process: sizes are multiplied with checked arithmetic
//! (an overflow is [`Status::InvalidArgument`]), every input's length is checked before an output is
//! allocated, and outputs are allocated fallibly (an allocation that fails is [`Status::OutOfMemory`]).
//! A [`Layer`] can be shared between threads for the life of a server; [`Layer::set_num_threads`],
//! [`Layer::trim`], [`Layer::memory_bytes`] and [`release_thread_memory`] bound the threads and memory it
//! uses. A [`Model`] runs a whole Swin, SwinV2 or Video Swin network from a `.safetensors` file or from
//! tensors named as in a torchvision or timm state_dict.
//!
//! ```no_run
//! let desc = winattn::LayerDesc {
//!     channels: 4,
//!     num_heads: 2,
//!     window: [1, 2, 2],
//!     shift: [0, 1, 1],
//!     qkv_weight: &[0.01; 3 * 4 * 4],
//!     proj_weight: &[0.02; 4 * 4],
//!     ..Default::default()
//! };
//! let layer = winattn::Layer::new(&desc)?;
//! let input = vec![1.0f32; 1 * 4 * 4 * 4]; // [batch 1][depth 1][4][4][4 channels]
//! let output = layer.forward(&input, 1, [1, 4, 4])?;
//! assert_eq!(output.len(), input.len());
//! # Ok::<(), winattn::Error>(())
//! ```
#![warn(missing_docs)]

pub mod sys;

use std::alloc::{self, Layout};
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// Status of a failed call, mirroring `winattn_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// An argument was missing, out of range or inconsistent (also: slice lengths checked by this crate).
    InvalidArgument,
    /// A valid request this build of the library cannot serve (e.g. BF16 compute).
    Unsupported,
    /// The library could not allocate its workspace.
    OutOfMemory,
    /// A bug in the library.
    InternalError,
    /// A status value this crate does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    /// The status for a raw `winattn_status` value other than OK.
    pub fn from_raw(raw: sys::winattn_status) -> Status {
        match raw {
            sys::WINATTN_STATUS_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::WINATTN_STATUS_UNSUPPORTED => Status::Unsupported,
            sys::WINATTN_STATUS_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::WINATTN_STATUS_INTERNAL_ERROR => Status::InternalError,
            other => Status::Unknown(other),
        }
    }

    /// The raw `winattn_status` value.
    pub fn as_raw(self) -> sys::winattn_status {
        match self {
            Status::InvalidArgument => sys::WINATTN_STATUS_INVALID_ARGUMENT,
            Status::Unsupported => sys::WINATTN_STATUS_UNSUPPORTED,
            Status::OutOfMemory => sys::WINATTN_STATUS_OUT_OF_MEMORY,
            Status::InternalError => sys::WINATTN_STATUS_INTERNAL_ERROR,
            Status::Unknown(raw) => raw,
        }
    }

    /// The library's English name for the status, e.g. "invalid argument".
    pub fn name(self) -> &'static str {
        // SAFETY: winattn_status_string accepts any value and returns a static, non-NULL string.
        unsafe { static_str(sys::winattn_status_string(self.as_raw())) }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error from the library or from this crate's argument checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub status: Status,
    /// A sentence naming the offending argument (the library's `winattn_last_error_message`, or this
    /// crate's own for length checks).
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "winattn: {}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// `std::result::Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn invalid(message: String) -> Error {
    Error {
        status: Status::InvalidArgument,
        message,
    }
}

/// Turns a status into a Result, reading this thread's error message right away on failure.
fn check(status: sys::winattn_status) -> Result<()> {
    if status == sys::WINATTN_STATUS_OK {
        return Ok(());
    }
    // SAFETY: the message is a NUL-terminated string valid until the next failing call on this thread,
    // and it is copied before anything else runs here.
    let message = unsafe { CStr::from_ptr(sys::winattn_last_error_message()) }
        .to_string_lossy()
        .into_owned();
    Err(Error {
        status: Status::from_raw(status),
        message,
    })
}

/// # Safety
/// `p` must be a non-NULL, NUL-terminated string with static lifetime.
unsafe fn static_str(p: *const c_char) -> &'static str {
    CStr::from_ptr(p).to_str().unwrap_or("?")
}

fn to_i64(name: &str, value: usize) -> Result<i64> {
    i64::try_from(value).map_err(|_| invalid(format!("{name} = {value} does not fit in int64")))
}

/// The product of sizes, or an error naming what overflowed.
fn product(what: &str, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| invalid(format!("the size of {what} overflows")))
}

/// Checks that a slice holds exactly `expected` elements.
fn expect_len(name: &str, actual: usize, expected: usize, shape: &str) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name} has {actual} elements, expected {expected} ({shape})"
        )))
    }
}

/// Element types whose all-zero bit pattern is a valid value, for [`zeroed_vec`].
trait ZeroBits: Copy {}
impl ZeroBits for f32 {}
impl ZeroBits for i64 {}

/// A zero-filled vector of `len` elements for the output `what`. Unlike `vec![0; len]`, which aborts the
/// process when the memory cannot be had, this returns [`Status::OutOfMemory`] (and
/// [`Status::InvalidArgument`] when the byte size overflows `isize`).
fn zeroed_vec<T: ZeroBits>(what: &str, len: usize) -> Result<Vec<T>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<T>(len).map_err(|_| {
        invalid(format!(
            "the size of {what} ({len} elements) overflows the address space"
        ))
    })?;
    // SAFETY: the layout's size is non-zero (len > 0 and T is f32 or i64).
    let p = unsafe { alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return Err(Error {
            status: Status::OutOfMemory,
            message: format!("cannot allocate {} bytes for {what}", layout.size()),
        });
    }
    // SAFETY: p comes from the global allocator with the layout of `len` elements of T, which is what a
    // Vec of capacity len uses; every element is initialised (all-zero bits are a valid T).
    Ok(unsafe { Vec::from_raw_parts(p, len, len) })
}

/// A thread count in 0..=MAX_THREADS as a C int, or an error naming the argument.
fn thread_count(name: &str, n: usize) -> Result<c_int> {
    if n > MAX_THREADS {
        return Err(invalid(format!(
            "{name} = {n} must be in 0..={MAX_THREADS} (WINATTN_MAX_THREADS)"
        )));
    }
    // Cannot fail: MAX_THREADS fits in a C int.
    c_int::try_from(n).map_err(|_| invalid(format!("{name} = {n} does not fit in an int")))
}

fn opt_ptr(s: Option<&[f32]>) -> *const f32 {
    s.map_or(ptr::null(), <[f32]>::as_ptr)
}

/// Positive dimensions as usize, or an error naming the argument.
fn positive_dims<const K: usize>(name: &str, dims: &[i64; K]) -> Result<[usize; K]> {
    let mut out = [0usize; K];
    for (d, (&v, o)) in dims.iter().zip(out.iter_mut()).enumerate() {
        *o = usize::try_from(v)
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| invalid(format!("{name}[{d}] = {v} must be >= 1")))?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Version, dispatch, threading
// ---------------------------------------------------------------------------------------------------------

/// The library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: static string.
    unsafe { static_str(sys::winattn_version()) }
}

/// The kernels in use: "amx_bf16", "avx512_bf16", "avx512", "avx2" or "scalar".
pub fn active_isa() -> &'static str {
    // SAFETY: static string.
    unsafe { static_str(sys::winattn_active_isa()) }
}

/// Caps the kernel dispatch at `isa` (one of the [`active_isa`] names, or "native" for no cap). Affects
/// calls that start afterwards, from every thread.
pub fn set_max_isa(isa: &str) -> Result<()> {
    let c = CString::new(isa).map_err(|_| invalid(format!("isa {isa:?} contains a NUL byte")))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    check(unsafe { sys::winattn_set_max_isa(c.as_ptr()) })
}

/// The most threads any call uses (`WINATTN_MAX_THREADS`); larger thread counts are rejected.
pub const MAX_THREADS: usize = sys::WINATTN_MAX_THREADS as usize;

/// Sets the number of OpenMP threads the library uses, process-wide (0 = OpenMP's default). Results are
/// bit-identical for every thread count. `num_threads` above [`MAX_THREADS`] is
/// [`Status::InvalidArgument`] and leaves the setting unchanged. A layer's own budget
/// ([`Layer::set_num_threads`]) overrides this setting.
pub fn set_num_threads(num_threads: usize) -> Result<()> {
    let n = thread_count("num_threads", num_threads)?;
    // SAFETY: plain value.
    check(unsafe { sys::winattn_set_num_threads(n) })
}

/// Frees the scratch memory the library keeps for the calling thread between calls (it is allocated again
/// by the next call that needs it); for a server thread that goes idle after large requests.
pub fn release_thread_memory() {
    // SAFETY: no arguments; never fails.
    unsafe { sys::winattn_release_thread_memory() }
}

/// The value last set by [`set_num_threads`] (0 = OpenMP default).
pub fn num_threads() -> usize {
    // SAFETY: no arguments.
    let n = unsafe { sys::winattn_get_num_threads() };
    usize::try_from(n).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------
// Relative position bias and masks
// ---------------------------------------------------------------------------------------------------------

/// Rows of the relative position bias table for `window` (1 to 3 entries): `prod(2*window[d] - 1)`.
pub fn relative_position_table_rows(window: &[i64]) -> Result<usize> {
    let mut rows = 1usize;
    for (d, &w) in window.iter().enumerate() {
        let w = usize::try_from(w)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("window[{d}] = {w} must be >= 1")))?;
        rows = w
            .checked_mul(2)
            .and_then(|x| rows.checked_mul(x - 1))
            .ok_or_else(|| invalid("the relative position table size overflows".into()))?;
    }
    Ok(rows)
}

/// The relative position index of a window of 1 to 3 dimensions (`[T]`, `[Wh, Ww]` or `[Wd, Wh, Ww]`):
/// `[N][N]` int64 with `N = prod(window)`, PyTorch's `relative_position_index`.
pub fn relative_position_index(window: &[i64]) -> Result<Vec<i64>> {
    if window.is_empty() || window.len() > 3 {
        return Err(invalid(format!(
            "window has {} entries, expected 1 to 3",
            window.len()
        )));
    }
    let mut n = 1usize;
    for (d, &w) in window.iter().enumerate() {
        let w = usize::try_from(w)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("window[{d}] = {w} must be >= 1")))?;
        n = n
            .checked_mul(w)
            .ok_or_else(|| invalid("the window size overflows".into()))?;
    }
    let mut index = zeroed_vec::<i64>("index", product("index", &[n, n])?)?;
    // SAFETY: window has window.len() entries; index has N*N.
    check(unsafe {
        sys::winattn_relative_position_index(
            window.len() as c_int,
            window.as_ptr(),
            index.as_mut_ptr(),
        )
    })?;
    Ok(index)
}

/// The bias-table lookup `bias[h][i][j] = table[index[i*n + j]][h]`.
///
/// `table`: `[table_rows][num_heads]` (PyTorch's `relative_position_bias_table`; `table_rows` is taken
/// from its length), `index`: `[n][n]`. Returns `[num_heads][n][n]`.
pub fn relative_position_bias(
    table: &[f32],
    num_heads: usize,
    index: &[i64],
    n: usize,
) -> Result<Vec<f32>> {
    let table_rows = table_rows_of("table", table.len(), num_heads)?;
    expect_len("index", index.len(), product("index", &[n, n])?, "n*n")?;
    let mut bias = zeroed_vec::<f32>("bias", product("bias", &[num_heads, n, n])?)?;
    // SAFETY: lengths checked above.
    check(unsafe {
        sys::winattn_relative_position_bias(
            table.as_ptr(),
            to_i64("table_rows", table_rows)?,
            to_i64("num_heads", num_heads)?,
            index.as_ptr(),
            to_i64("n", n)?,
            bias.as_mut_ptr(),
        )
    })?;
    Ok(bias)
}

fn table_rows_of(name: &str, len: usize, num_heads: usize) -> Result<usize> {
    if num_heads == 0 {
        return Err(invalid("num_heads = 0 must be >= 1".into()));
    }
    if len == 0 || len / num_heads * num_heads != len {
        return Err(invalid(format!(
            "{name} has {len} elements, expected a positive multiple of num_heads = {num_heads} \
             ([table_rows][num_heads])"
        )));
    }
    Ok(len / num_heads)
}

/// The gradient of [`relative_position_bias`]: `grad_table[index[i*n + j]][h] += grad_bias[h][i][j]`.
///
/// Accumulates into `grad_table` (`[table_rows][num_heads]`; zero it first for a plain gradient).
/// `grad_bias`: `[num_heads][n][n]`; `index`: `[n][n]`. Deterministic for any thread count.
pub fn relative_position_bias_backward(
    grad_bias: &[f32],
    num_heads: usize,
    index: &[i64],
    n: usize,
    grad_table: &mut [f32],
) -> Result<()> {
    let table_rows = table_rows_of("grad_table", grad_table.len(), num_heads)?;
    expect_len("index", index.len(), product("index", &[n, n])?, "n*n")?;
    expect_len(
        "grad_bias",
        grad_bias.len(),
        product("grad_bias", &[num_heads, n, n])?,
        "num_heads*n*n",
    )?;
    // SAFETY: lengths checked above.
    check(unsafe {
        sys::winattn_relative_position_bias_backward(
            grad_bias.as_ptr(),
            to_i64("table_rows", table_rows)?,
            to_i64("num_heads", num_heads)?,
            index.as_ptr(),
            to_i64("n", n)?,
            grad_table.as_mut_ptr(),
        )
    })
}

/// The SwinV2 continuous position bias table `16 * sigmoid(MLP(coords))`, `[(2Wh-1)(2Ww-1)][num_heads]`,
/// as torchvision's `ShiftedWindowAttentionV2` builds it.
///
/// `w1`: `[hidden][2]`, `b1`: `[hidden]` or `None`, `w2`: `[num_heads][hidden]` (nn.Linear layouts).
pub fn continuous_position_bias_table(
    window_h: i64,
    window_w: i64,
    w1: &[f32],
    b1: Option<&[f32]>,
    w2: &[f32],
    hidden: usize,
    num_heads: usize,
) -> Result<Vec<f32>> {
    let rows = relative_position_table_rows(&[window_h, window_w])?;
    // The output's size depends on num_heads: with hidden = 0 no input bounds it, so check it here.
    if hidden == 0 || num_heads == 0 {
        return Err(invalid(format!(
            "hidden = {hidden} and num_heads = {num_heads} must be >= 1"
        )));
    }
    expect_len("w1", w1.len(), product("w1", &[hidden, 2])?, "hidden*2")?;
    if let Some(b1) = b1 {
        expect_len("b1", b1.len(), hidden, "hidden")?;
    }
    expect_len(
        "w2",
        w2.len(),
        product("w2", &[num_heads, hidden])?,
        "num_heads*hidden",
    )?;
    let mut table = zeroed_vec::<f32>("table", product("table", &[rows, num_heads])?)?;
    // SAFETY: lengths checked above.
    check(unsafe {
        sys::winattn_continuous_position_bias_table(
            window_h,
            window_w,
            w1.as_ptr(),
            opt_ptr(b1),
            w2.as_ptr(),
            to_i64("hidden", hidden)?,
            to_i64("num_heads", num_heads)?,
            table.as_mut_ptr(),
        )
    })?;
    Ok(table)
}

/// The shifted-window attention mask, `[num_windows][N][N]` with 0 (same region) or -100.
///
/// `grid`, `window`, `shift`: (depth, height, width); each grid entry a multiple of its window entry,
/// `0 <= shift < window`. `num_windows = prod(grid / window)`, `N = prod(window)`.
pub fn shifted_window_mask(grid: [i64; 3], window: [i64; 3], shift: [i64; 3]) -> Result<Vec<f32>> {
    let g = positive_dims("grid", &grid)?;
    let w = positive_dims("window", &window)?;
    for d in 0..3 {
        if g[d] % w[d] != 0 {
            return Err(invalid(format!(
                "grid[{d}] = {} is not a multiple of window[{d}] = {}",
                g[d], w[d]
            )));
        }
    }
    let windows = product("mask", &[g[0] / w[0], g[1] / w[1], g[2] / w[2]])?;
    let n = product("window", &w)?;
    let mut mask = zeroed_vec::<f32>("mask", product("mask", &[windows, n, n])?)?;
    // SAFETY: three entries each; mask sized from them.
    check(unsafe {
        sys::winattn_shifted_window_mask(
            grid.as_ptr(),
            window.as_ptr(),
            shift.as_ptr(),
            mask.as_mut_ptr(),
        )
    })?;
    Ok(mask)
}

// ---------------------------------------------------------------------------------------------------------
// Fused window attention
// ---------------------------------------------------------------------------------------------------------

/// Sizes of a [`window_attention`] call: q, k, v and out are `[num_windows][num_heads][n][head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Windows (of all images together, image-major).
    pub num_windows: usize,
    /// Heads.
    pub num_heads: usize,
    /// Tokens per window.
    pub n: usize,
    /// Channels per head.
    pub head_dim: usize,
}

/// `out[w][h] = softmax(scale * q k^T + bias[h] + mask[w % mask_windows]) v`, fused.
///
/// `bias`: `[num_heads][n][n]` or `None`; `mask`: `[mask_windows][n][n]` or `None`, `mask_windows` taken
/// from its length (Swin's `[nW][N][N]` mask). Returns `[num_windows][num_heads][n][head_dim]`.
pub fn window_attention(
    shape: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f32,
    bias: Option<&[f32]>,
    mask: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let len = attention_len(shape)?;
    check_attention_inputs(shape, len, q, k, v, bias, mask)?;
    let mut out = zeroed_vec::<f32>("out", len)?;
    window_attention_into(shape, q, k, v, scale, bias, mask, &mut out)?;
    Ok(out)
}

fn attention_len(s: AttentionShape) -> Result<usize> {
    product("q", &[s.num_windows, s.num_heads, s.n, s.head_dim])
}

/// Checks the lengths of q, k, v, bias and mask against the shape; returns mask_windows (0 without mask).
fn check_attention_inputs(
    shape: AttentionShape,
    len: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    mask: Option<&[f32]>,
) -> Result<usize> {
    let layout = "num_windows*num_heads*n*head_dim";
    expect_len("q", q.len(), len, layout)?;
    expect_len("k", k.len(), len, layout)?;
    expect_len("v", v.len(), len, layout)?;
    let nn = product("bias", &[shape.n, shape.n])?;
    if let Some(bias) = bias {
        expect_len(
            "bias",
            bias.len(),
            product("bias", &[shape.num_heads, nn])?,
            "num_heads*n*n",
        )?;
    }
    match mask {
        None => Ok(0),
        Some(mask) if nn == 0 || mask.is_empty() || mask.len() % nn != 0 => Err(invalid(format!(
            "mask has {} elements, expected a positive multiple of n*n = {nn} ([mask_windows][n][n])",
            mask.len()
        ))),
        Some(mask) => Ok(mask.len() / nn),
    }
}

/// [`window_attention`] writing into `out` (`[num_windows][num_heads][n][head_dim]`).
#[allow(clippy::too_many_arguments)]
pub fn window_attention_into(
    shape: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f32,
    bias: Option<&[f32]>,
    mask: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let len = attention_len(shape)?;
    let mask_windows = check_attention_inputs(shape, len, q, k, v, bias, mask)?;
    expect_len("out", out.len(), len, "num_windows*num_heads*n*head_dim")?;
    // SAFETY: lengths checked above; out is a distinct &mut, so it cannot alias q, k or v.
    check(unsafe {
        sys::winattn_window_attention(
            to_i64("num_windows", shape.num_windows)?,
            to_i64("num_heads", shape.num_heads)?,
            to_i64("n", shape.n)?,
            to_i64("head_dim", shape.head_dim)?,
            q.as_ptr(),
            k.as_ptr(),
            v.as_ptr(),
            scale,
            opt_ptr(bias),
            opt_ptr(mask),
            to_i64("mask_windows", mask_windows)?,
            out.as_mut_ptr(),
        )
    })
}

// ---------------------------------------------------------------------------------------------------------
// The shifted-window attention layer
// ---------------------------------------------------------------------------------------------------------

/// Arguments of the stateless [`shifted_window_attention`] (torchvision's `shifted_window_attention` in
/// eval mode). `N = prod(window)`, `C = channels`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowAttentionArgs<'a> {
    /// Images in the batch.
    pub batch: usize,
    /// Feature map (depth, height, width).
    pub grid: [i64; 3],
    /// Channels C.
    pub channels: usize,
    /// Heads (divides C).
    pub num_heads: usize,
    /// Window (depth, height, width), each >= 1.
    pub window: [i64; 3],
    /// Cyclic shift per axis, `0 <= shift < window`.
    pub shift: [i64; 3],
    /// `[3C][C]`, nn.Linear layout.
    pub qkv_weight: &'a [f32],
    /// `[3C]`.
    pub qkv_bias: Option<&'a [f32]>,
    /// `[C][C]`.
    pub proj_weight: &'a [f32],
    /// `[C]`.
    pub proj_bias: Option<&'a [f32]>,
    /// `[num_heads][N][N]`, already looked up (see [`relative_position_bias`]).
    pub relative_position_bias: Option<&'a [f32]>,
    /// `[num_heads]`; selects SwinV2 cosine attention.
    pub logit_scale: Option<&'a [f32]>,
}

/// Checks the weights shared by the stateless and the prepacked layer; returns N = prod(window).
#[allow(clippy::too_many_arguments)]
fn check_weights(
    channels: usize,
    num_heads: usize,
    window: &[i64; 3],
    qkv_weight: &[f32],
    qkv_bias: Option<&[f32]>,
    proj_weight: &[f32],
    proj_bias: Option<&[f32]>,
    logit_scale: Option<&[f32]>,
) -> Result<usize> {
    let w = positive_dims("window", window)?;
    let c3 = product("qkv_bias", &[3, channels])?;
    expect_len(
        "qkv_weight",
        qkv_weight.len(),
        product("qkv_weight", &[c3, channels])?,
        "3*channels*channels",
    )?;
    if let Some(b) = qkv_bias {
        expect_len("qkv_bias", b.len(), c3, "3*channels")?;
    }
    expect_len(
        "proj_weight",
        proj_weight.len(),
        product("proj_weight", &[channels, channels])?,
        "channels*channels",
    )?;
    if let Some(b) = proj_bias {
        expect_len("proj_bias", b.len(), channels, "channels")?;
    }
    if let Some(s) = logit_scale {
        expect_len("logit_scale", s.len(), num_heads, "num_heads")?;
    }
    product("window", &w)
}

/// Length of a `[batch][depth][height][width][channels]` tensor.
fn feature_len(batch: usize, grid: &[i64; 3], channels: usize) -> Result<usize> {
    let g = positive_dims("grid", grid)?;
    product("input", &[batch, g[0], g[1], g[2], channels])
}

/// Runs a shifted-window attention layer without prepacking: input and the returned output are
/// `[batch][depth][height][width][channels]`.
pub fn shifted_window_attention(args: &WindowAttentionArgs<'_>, input: &[f32]) -> Result<Vec<f32>> {
    let len = feature_len(args.batch, &args.grid, args.channels)?;
    expect_len(
        "input",
        input.len(),
        len,
        "batch*depth*height*width*channels",
    )?;
    let mut output = zeroed_vec::<f32>("output", len)?;
    shifted_window_attention_into(args, input, &mut output)?;
    Ok(output)
}

/// [`shifted_window_attention`] writing into `output` (same shape as `input`).
pub fn shifted_window_attention_into(
    args: &WindowAttentionArgs<'_>,
    input: &[f32],
    output: &mut [f32],
) -> Result<()> {
    let n = check_weights(
        args.channels,
        args.num_heads,
        &args.window,
        args.qkv_weight,
        args.qkv_bias,
        args.proj_weight,
        args.proj_bias,
        args.logit_scale,
    )?;
    if let Some(b) = args.relative_position_bias {
        expect_len(
            "relative_position_bias",
            b.len(),
            product("relative_position_bias", &[args.num_heads, n, n])?,
            "num_heads*N*N",
        )?;
    }
    let len = feature_len(args.batch, &args.grid, args.channels)?;
    let shape = "batch*depth*height*width*channels";
    expect_len("input", input.len(), len, shape)?;
    expect_len("output", output.len(), len, shape)?;
    let raw = sys::winattn_window_attention_args {
        batch: to_i64("batch", args.batch)?,
        grid: args.grid,
        channels: to_i64("channels", args.channels)?,
        num_heads: to_i64("num_heads", args.num_heads)?,
        window: args.window,
        shift: args.shift,
        qkv_weight: args.qkv_weight.as_ptr(),
        qkv_bias: opt_ptr(args.qkv_bias),
        proj_weight: args.proj_weight.as_ptr(),
        proj_bias: opt_ptr(args.proj_bias),
        relative_position_bias: opt_ptr(args.relative_position_bias),
        logit_scale: opt_ptr(args.logit_scale),
        flags: 0,
    };
    // SAFETY: every array was length-checked; raw lives across the call.
    check(unsafe {
        sys::winattn_shifted_window_attention(&raw, input.as_ptr(), output.as_mut_ptr())
    })
}

/// Compute precision of a prepacked [`Layer`] or a [`Model`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// float32.
    #[default]
    F32,
    /// bfloat16 (the library answers [`Status::Unsupported`] in version 0.1).
    Bf16,
}

/// Description of a prepacked [`Layer`] (see `winattn_layer_desc`). Build it as a struct literal with
/// `..Default::default()` for the fields you do not use. `N = prod(window)`, `C = channels`.
///
/// SwinV1: set `relative_position_bias_table` (or leave it `None` for no bias). SwinV2: set
/// `logit_scale`, and `cpb_weight1`/`cpb_bias1`/`cpb_weight2`/`cpb_hidden` for the continuous position
/// bias (2D windows only).
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerDesc<'a> {
    /// Channels C.
    pub channels: usize,
    /// Heads (divides C).
    pub num_heads: usize,
    /// Window (depth, height, width).
    pub window: [i64; 3],
    /// Cyclic shift per axis.
    pub shift: [i64; 3],
    /// `[3C][C]`.
    pub qkv_weight: &'a [f32],
    /// `[3C]`.
    pub qkv_bias: Option<&'a [f32]>,
    /// `[C][C]`.
    pub proj_weight: &'a [f32],
    /// `[C]`.
    pub proj_bias: Option<&'a [f32]>,
    /// SwinV1: `[prod(2*window[d]-1)][num_heads]`.
    pub relative_position_bias_table: Option<&'a [f32]>,
    /// SwinV2: `[num_heads]`.
    pub logit_scale: Option<&'a [f32]>,
    /// SwinV2 CPB MLP first weight, `[cpb_hidden][2]`.
    pub cpb_weight1: Option<&'a [f32]>,
    /// `[cpb_hidden]`.
    pub cpb_bias1: Option<&'a [f32]>,
    /// `[num_heads][cpb_hidden]`.
    pub cpb_weight2: Option<&'a [f32]>,
    /// Hidden width of the CPB MLP (512 in torchvision; 0 = no CPB).
    pub cpb_hidden: usize,
    /// Compute precision.
    pub compute_dtype: Dtype,
}

/// A prepacked shifted-window attention layer. The library copies everything it needs at creation.
/// `forward`, `set_num_threads`, `trim` and `memory_bytes` may run concurrently from many threads on one
/// layer (`&Layer`); the layer is destroyed on drop, which the borrow checker keeps from racing with them.
#[derive(Debug)]
pub struct Layer {
    raw: *mut sys::winattn_layer,
    channels: usize,
}

// SAFETY: the C contract allows winattn_layer_forward on one layer from any number of threads at once; the
// handle owns no thread-affine state, and destroy happens only in Drop (exclusive access).
unsafe impl Send for Layer {}
// SAFETY: see above; &Layer only permits calls the C contract allows concurrently on one layer (forward,
// the thread budget, trim, the memory report).
unsafe impl Sync for Layer {}

impl Layer {
    /// Creates (and prepacks) a layer from `desc`, checking every array's length first.
    pub fn new(desc: &LayerDesc<'_>) -> Result<Layer> {
        check_weights(
            desc.channels,
            desc.num_heads,
            &desc.window,
            desc.qkv_weight,
            desc.qkv_bias,
            desc.proj_weight,
            desc.proj_bias,
            desc.logit_scale,
        )?;
        if let Some(t) = desc.relative_position_bias_table {
            let rows = relative_position_table_rows(&desc.window)?;
            expect_len(
                "relative_position_bias_table",
                t.len(),
                product("relative_position_bias_table", &[rows, desc.num_heads])?,
                "prod(2*window[d]-1)*num_heads",
            )?;
        }
        if let Some(w) = desc.cpb_weight1 {
            expect_len(
                "cpb_weight1",
                w.len(),
                product("cpb_weight1", &[desc.cpb_hidden, 2])?,
                "cpb_hidden*2",
            )?;
        }
        if let Some(b) = desc.cpb_bias1 {
            expect_len("cpb_bias1", b.len(), desc.cpb_hidden, "cpb_hidden")?;
        }
        if let Some(w) = desc.cpb_weight2 {
            expect_len(
                "cpb_weight2",
                w.len(),
                product("cpb_weight2", &[desc.num_heads, desc.cpb_hidden])?,
                "num_heads*cpb_hidden",
            )?;
        }
        let raw_desc = sys::winattn_layer_desc {
            channels: to_i64("channels", desc.channels)?,
            num_heads: to_i64("num_heads", desc.num_heads)?,
            window: desc.window,
            shift: desc.shift,
            qkv_weight: desc.qkv_weight.as_ptr(),
            qkv_bias: opt_ptr(desc.qkv_bias),
            proj_weight: desc.proj_weight.as_ptr(),
            proj_bias: opt_ptr(desc.proj_bias),
            relative_position_bias_table: opt_ptr(desc.relative_position_bias_table),
            logit_scale: opt_ptr(desc.logit_scale),
            cpb_weight1: opt_ptr(desc.cpb_weight1),
            cpb_bias1: opt_ptr(desc.cpb_bias1),
            cpb_weight2: opt_ptr(desc.cpb_weight2),
            cpb_hidden: to_i64("cpb_hidden", desc.cpb_hidden)?,
            compute_dtype: match desc.compute_dtype {
                Dtype::F32 => sys::WINATTN_DTYPE_F32,
                Dtype::Bf16 => sys::WINATTN_DTYPE_BF16,
            },
            flags: 0,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: arrays length-checked; the library copies them and writes the handle only on success.
        check(unsafe { sys::winattn_layer_create(&raw_desc, &mut raw) })?;
        Ok(Layer {
            raw,
            channels: desc.channels,
        })
    }

    /// Channels of the layer's input and output.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Runs the layer on `input` `[batch][grid[0]][grid[1]][grid[2]][channels]`, returning the output of
    /// the same shape.
    pub fn forward(&self, input: &[f32], batch: usize, grid: [i64; 3]) -> Result<Vec<f32>> {
        let len = feature_len(batch, &grid, self.channels)?;
        expect_len(
            "input",
            input.len(),
            len,
            "batch*grid[0]*grid[1]*grid[2]*channels",
        )?;
        let mut output = zeroed_vec::<f32>("output", len)?;
        self.forward_into(input, batch, grid, &mut output)?;
        Ok(output)
    }

    /// Sets this layer's thread budget: the most threads one forward on it uses, whatever
    /// [`set_num_threads`] says; 0 (the value at creation) follows the process setting. A server running
    /// many requests at once gives the concurrent layers budgets that add up to its cores; with 1, a forward
    /// runs on the calling thread alone. May be called while forwards run; forwards that start afterwards
    /// use the new budget. Results are bit-identical for every budget. Above [`MAX_THREADS`]:
    /// [`Status::InvalidArgument`], budget unchanged.
    pub fn set_num_threads(&self, num_threads: usize) -> Result<()> {
        let n = thread_count("num_threads", num_threads)?;
        // SAFETY: the handle is live; the C contract allows this concurrently with forwards.
        check(unsafe { sys::winattn_layer_set_num_threads(self.raw, n) })
    }

    /// This layer's thread budget (0 = the process setting).
    pub fn num_threads(&self) -> Result<usize> {
        let mut n: c_int = -1;
        // SAFETY: the handle is live; n is a valid out pointer.
        check(unsafe { sys::winattn_layer_get_num_threads(self.raw, &mut n) })?;
        usize::try_from(n).map_err(|_| Error {
            status: Status::InternalError,
            message: format!("the library reported a negative thread budget ({n})"),
        })
    }

    /// Frees what the layer keeps to speed up later forwards (shifted-window masks, projection plans for
    /// unusual batch sizes); the next forward that needs them builds them again, with the same results.
    /// Safe while forwards run on other threads.
    pub fn trim(&self) -> Result<()> {
        // SAFETY: the handle is live; the C contract allows this concurrently with forwards.
        check(unsafe { sys::winattn_layer_trim(self.raw) })
    }

    /// The heap memory the layer holds now, in bytes: weights, packed weights, bias, masks and plans.
    pub fn memory_bytes(&self) -> Result<usize> {
        let mut bytes: i64 = -1;
        // SAFETY: the handle is live; bytes is a valid out pointer.
        check(unsafe { sys::winattn_layer_memory_bytes(self.raw, &mut bytes) })?;
        usize::try_from(bytes).map_err(|_| Error {
            status: Status::InternalError,
            message: format!("the library reported a negative memory size ({bytes})"),
        })
    }

    /// [`Layer::forward`] writing into `output` (same shape as `input`).
    pub fn forward_into(
        &self,
        input: &[f32],
        batch: usize,
        grid: [i64; 3],
        output: &mut [f32],
    ) -> Result<()> {
        let len = feature_len(batch, &grid, self.channels)?;
        let shape = "batch*grid[0]*grid[1]*grid[2]*channels";
        expect_len("input", input.len(), len, shape)?;
        expect_len("output", output.len(), len, shape)?;
        // SAFETY: the handle is live (destroyed only in Drop); lengths checked above.
        check(unsafe {
            sys::winattn_layer_forward(
                self.raw,
                input.as_ptr(),
                to_i64("batch", batch)?,
                grid.as_ptr(),
                output.as_mut_ptr(),
            )
        })
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        // SAFETY: created by winattn_layer_create, destroyed once; &mut self excludes concurrent forwards.
        unsafe { sys::winattn_layer_destroy(self.raw) }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Whole models: Swin, SwinV2, Video Swin
// ---------------------------------------------------------------------------------------------------------

/// The most dimensions a [`Tensor`] may have (`winattn_tensor.shape` holds 8).
pub const MAX_TENSOR_DIMS: usize = 8;

/// The elements of a [`Tensor`], by storage type. Half-precision tensors are passed as their raw bits
/// (`u16`, little-endian on the machine as everywhere in this crate); the library widens them to float32
/// exactly, as torch's `.float()` does.
#[derive(Debug, Clone, Copy)]
pub enum TensorData<'a> {
    /// float32.
    F32(&'a [f32]),
    /// IEEE half precision (torch.float16), as bits.
    F16(&'a [u16]),
    /// bfloat16 (torch.bfloat16), as bits.
    Bf16(&'a [u16]),
}

impl TensorData<'_> {
    /// Elements in the slice.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(s) => s.len(),
            TensorData::F16(s) | TensorData::Bf16(s) => s.len(),
        }
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn raw(&self) -> (sys::winattn_dtype, *const std::os::raw::c_void) {
        match self {
            TensorData::F32(s) => (sys::WINATTN_DTYPE_F32, s.as_ptr().cast()),
            TensorData::F16(s) => (sys::WINATTN_DTYPE_F16, s.as_ptr().cast()),
            TensorData::Bf16(s) => (sys::WINATTN_DTYPE_BF16, s.as_ptr().cast()),
        }
    }
}

/// One tensor of a state_dict held by the caller, for [`Model::from_tensors`]: a name as in a torchvision
/// or timm state_dict (`"features.0.0.weight"`), a shape of at most [`MAX_TENSOR_DIMS`] dimensions, and
/// `prod(shape)` elements, dense row-major.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    /// The state_dict key.
    pub name: &'a str,
    /// The shape (PyTorch's `tensor.shape`).
    pub shape: &'a [i64],
    /// The elements.
    pub data: TensorData<'a>,
}

impl<'a> Tensor<'a> {
    /// A float32 tensor.
    pub fn f32(name: &'a str, shape: &'a [i64], data: &'a [f32]) -> Tensor<'a> {
        Tensor {
            name,
            shape,
            data: TensorData::F32(data),
        }
    }

    /// A float16 tensor given as bits.
    pub fn f16(name: &'a str, shape: &'a [i64], bits: &'a [u16]) -> Tensor<'a> {
        Tensor {
            name,
            shape,
            data: TensorData::F16(bits),
        }
    }

    /// A bfloat16 tensor given as bits.
    pub fn bf16(name: &'a str, shape: &'a [i64], bits: &'a [u16]) -> Tensor<'a> {
        Tensor {
            name,
            shape,
            data: TensorData::Bf16(bits),
        }
    }
}

/// What [`Model::load`] and [`Model::from_tensors`] take besides the weights. `Default` is float32
/// compute with the process's thread setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelOptions {
    /// Compute precision (the library answers [`Status::Unsupported`] for BF16 in version 0.1).
    pub compute_dtype: Dtype,
    /// The model's thread budget (see [`Model::set_num_threads`]); 0 = the process setting.
    pub num_threads: usize,
}

impl ModelOptions {
    fn raw(&self) -> Result<sys::winattn_model_options> {
        Ok(sys::winattn_model_options {
            compute_dtype: match self.compute_dtype {
                Dtype::F32 => sys::WINATTN_DTYPE_F32,
                Dtype::Bf16 => sys::WINATTN_DTYPE_BF16,
            },
            num_threads: thread_count("num_threads", self.num_threads)?,
            flags: 0,
        })
    }
}

/// The architecture a model's weights were recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFamily {
    /// Swin v1 (torchvision `swin_t/s/b`, timm `swin_*`).
    Swin,
    /// SwinV2 (torchvision `swin_v2_t/s/b`, timm `swinv2_*`).
    SwinV2,
    /// Video Swin 3D (torchvision `swin3d_t/s/b`, the original Video Swin).
    Swin3d,
    /// A family value this crate does not know (from a newer library).
    Unknown(i32),
}

impl ModelFamily {
    fn from_raw(raw: sys::winattn_model_family) -> ModelFamily {
        match raw {
            sys::WINATTN_MODEL_SWIN => ModelFamily::Swin,
            sys::WINATTN_MODEL_SWIN_V2 => ModelFamily::SwinV2,
            sys::WINATTN_MODEL_SWIN_3D => ModelFamily::Swin3d,
            other => ModelFamily::Unknown(other),
        }
    }
}

/// A model's architecture (`winattn_model_info`); the per-stage vectors hold one entry per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Which network.
    pub family: ModelFamily,
    /// Channels of the input (3 for RGB).
    pub in_channels: usize,
    /// Classes of the head; 0 for a backbone without one (then only [`Model::features`] runs).
    pub num_classes: usize,
    /// Channels after the patch embedding.
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Channels per stage: `embed_dim * 2^stage` (patch merging doubles them).
    pub dims: Vec<usize>,
    /// Patch (depth, height, width); 2D models: depth 1.
    pub patch: [i64; 3],
    /// Window (depth, height, width); 2D models: depth 1.
    pub window: [i64; 3],
}

impl ModelInfo {
    /// Stages of the network.
    pub fn num_stages(&self) -> usize {
        self.depths.len()
    }
}

fn internal(message: String) -> Error {
    Error {
        status: Status::InternalError,
        message,
    }
}

/// A count the library reported, as usize (negative: the library broke its contract).
fn reported(what: &str, v: i64) -> Result<usize> {
    usize::try_from(v).map_err(|_| internal(format!("the library reported {what} = {v}")))
}

impl ModelInfo {
    fn from_raw(raw: &sys::winattn_model_info) -> Result<ModelInfo> {
        let stages = reported("num_stages", raw.num_stages)?;
        if stages > raw.depths.len() {
            return Err(internal(format!(
                "the library reported num_stages = {stages}, more than the {} winattn_model_info holds",
                raw.depths.len()
            )));
        }
        let embed_dim = reported("embed_dim", raw.embed_dim)?;
        let mut depths = Vec::with_capacity(stages);
        let mut num_heads = Vec::with_capacity(stages);
        let mut dims = Vec::with_capacity(stages);
        for s in 0..stages {
            depths.push(reported("a stage depth", raw.depths[s])?);
            num_heads.push(reported("a stage's heads", raw.num_heads[s])?);
            dims.push(
                embed_dim
                    .checked_mul(1usize << s)
                    .ok_or_else(|| internal(format!("stage {s}'s channels overflow")))?,
            );
        }
        Ok(ModelInfo {
            family: ModelFamily::from_raw(raw.family),
            in_channels: reported("in_channels", raw.in_channels)?,
            num_classes: reported("num_classes", raw.num_classes)?,
            embed_dim,
            depths,
            num_heads,
            dims,
            patch: raw.patch,
            window: raw.window,
        })
    }
}

/// A whole Swin network in eval mode (Swin v1, SwinV2 or Video Swin 3D, torchvision's or timm's weights),
/// built by the library from a `.safetensors` file ([`Model::load`]) or from tensors the caller holds
/// ([`Model::from_tensors`]); the library copies the weights. Input sizes are `(frames, height, width)`
/// triples; 2D models take frames 1, i.e. `[batch][in_channels][1][H][W]` = `[batch][3][H][W]`.
///
/// Every method takes `&self` and may run concurrently from many threads on one model (the C contract:
/// a model is immutable once created, and its thread budget may change while calls run); the model is
/// destroyed on drop, which the borrow checker keeps from racing with them.
#[derive(Debug)]
pub struct Model {
    raw: *mut sys::winattn_model,
    info: ModelInfo,
}

// SAFETY: every winattn_model_* entry point except destroy may be called from any number of threads at once
// on one model; the handle has no thread-affine state, and destroy happens only in Drop (exclusive access).
unsafe impl Send for Model {}
// SAFETY: see above; &Model only permits calls the C contract allows concurrently (classify, features,
// feature shapes, the thread budget).
unsafe impl Sync for Model {}

#[cfg(unix)]
fn path_to_cstring(path: &std::path::Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("path {path:?} contains a NUL byte")))
}

#[cfg(not(unix))]
fn path_to_cstring(path: &std::path::Path) -> Result<CString> {
    let s = path
        .to_str()
        .ok_or_else(|| invalid(format!("path {path:?} is not valid Unicode")))?;
    CString::new(s).map_err(|_| invalid(format!("path {path:?} contains a NUL byte")))
}

impl Model {
    /// Loads a model from a `.safetensors` file (memory-mapped and checked in full by the library; F32,
    /// F16, BF16 and F64 tensors). The error names the file and the first tensor that does not fit.
    pub fn load<P: AsRef<std::path::Path>>(path: P, options: &ModelOptions) -> Result<Model> {
        let c_path = path_to_cstring(path.as_ref())?;
        let raw_options = options.raw()?;
        let mut raw = ptr::null_mut();
        // SAFETY: c_path and raw_options live across the call; the handle is written only on success.
        check(unsafe { sys::winattn_model_load(c_path.as_ptr(), &raw_options, &mut raw) })?;
        Model::wrap(raw)
    }

    /// Builds a model from tensors the caller holds (names unique, as in a torchvision or timm
    /// state_dict). Each tensor's element count is checked against its shape first; the library copies
    /// everything, so the tensors may be dropped when this returns.
    pub fn from_tensors(tensors: &[Tensor<'_>], options: &ModelOptions) -> Result<Model> {
        let raw_options = options.raw()?;
        let mut names = Vec::new();
        names
            .try_reserve_exact(tensors.len())
            .map_err(|_| invalid(format!("{} tensors are too many", tensors.len())))?;
        for t in tensors {
            names.push(
                CString::new(t.name).map_err(|_| {
                    invalid(format!("tensor name {:?} contains a NUL byte", t.name))
                })?,
            );
        }
        let mut raw_tensors = Vec::new();
        raw_tensors
            .try_reserve_exact(tensors.len())
            .map_err(|_| invalid(format!("{} tensors are too many", tensors.len())))?;
        for (t, name) in tensors.iter().zip(&names) {
            if t.shape.len() > MAX_TENSOR_DIMS {
                return Err(invalid(format!(
                    "tensor {:?} has {} dimensions, at most {MAX_TENSOR_DIMS} are supported",
                    t.name,
                    t.shape.len()
                )));
            }
            let mut shape = [0i64; MAX_TENSOR_DIMS];
            let mut dims = [0usize; MAX_TENSOR_DIMS];
            for (d, &v) in t.shape.iter().enumerate() {
                dims[d] = usize::try_from(v).map_err(|_| {
                    invalid(format!(
                        "tensor {:?} has shape {:?}: dimension {d} is negative",
                        t.name, t.shape
                    ))
                })?;
                shape[d] = v;
            }
            let what = format!("tensor {:?}", t.name);
            let expected = product(&what, &dims[..t.shape.len()])?;
            if t.data.len() != expected {
                return Err(invalid(format!(
                    "tensor {:?} has {} elements, expected {expected} (shape {:?})",
                    t.name,
                    t.data.len(),
                    t.shape
                )));
            }
            let (dtype, data) = t.data.raw();
            raw_tensors.push(sys::winattn_tensor {
                name: name.as_ptr(),
                dtype,
                ndim: t.shape.len() as i32, // <= 8
                shape,
                data,
            });
        }
        let mut raw = ptr::null_mut();
        // SAFETY: raw_tensors has tensors.len() entries, each naming a live CString and a slice of the
        // checked length; the library copies them and writes the handle only on success.
        check(unsafe {
            sys::winattn_model_create(
                raw_tensors.as_ptr(),
                to_i64("count", raw_tensors.len())?,
                &raw_options,
                &mut raw,
            )
        })?;
        Model::wrap(raw)
    }

    /// Takes ownership of a live handle and reads its architecture.
    fn wrap(raw: *mut sys::winattn_model) -> Result<Model> {
        let mut model = Model {
            raw,
            info: ModelInfo {
                family: ModelFamily::Unknown(0),
                in_channels: 0,
                num_classes: 0,
                embed_dim: 0,
                depths: Vec::new(),
                num_heads: Vec::new(),
                dims: Vec::new(),
                patch: [0; 3],
                window: [0; 3],
            },
        };
        let mut raw_info = sys::winattn_model_info::default();
        // SAFETY: the handle is live (dropped with `model` on error); raw_info is a valid out pointer.
        check(unsafe { sys::winattn_model_get_info(model.raw, &mut raw_info) })?;
        model.info = ModelInfo::from_raw(&raw_info)?;
        Ok(model)
    }

    /// The model's architecture (read once, at creation: a model is immutable).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Length of an input `[batch][in_channels][size[0]][size[1]][size[2]]`.
    fn input_len(&self, batch: usize, size: &[i64; 3]) -> Result<usize> {
        let s = positive_dims("size", size)?;
        product("input", &[batch, self.info.in_channels, s[0], s[1], s[2]])
    }

    fn check_input(&self, input: &[f32], batch: usize, size: &[i64; 3]) -> Result<()> {
        let len = self.input_len(batch, size)?;
        expect_len(
            "input",
            input.len(),
            len,
            "batch*in_channels*size[0]*size[1]*size[2]",
        )
    }

    fn logits_len(&self, batch: usize) -> Result<usize> {
        if self.info.num_classes == 0 {
            return Err(invalid(
                "the model is a backbone without a classifier head (num_classes 0): use features"
                    .into(),
            ));
        }
        product("logits", &[batch, self.info.num_classes])
    }

    /// Classifies `input` `[batch][in_channels][size[0]][size[1]][size[2]]` (size = (frames, height,
    /// width); 2D models: frames 1), normalised as torchvision's transforms leave it; returns the logits
    /// `[batch][num_classes]`.
    pub fn classify(&self, input: &[f32], batch: usize, size: [i64; 3]) -> Result<Vec<f32>> {
        self.check_input(input, batch, &size)?;
        let mut logits = zeroed_vec::<f32>("logits", self.logits_len(batch)?)?;
        self.classify_into(input, batch, size, &mut logits)?;
        Ok(logits)
    }

    /// [`Model::classify`] writing into `logits` (`[batch][num_classes]`).
    pub fn classify_into(
        &self,
        input: &[f32],
        batch: usize,
        size: [i64; 3],
        logits: &mut [f32],
    ) -> Result<()> {
        self.check_input(input, batch, &size)?;
        expect_len(
            "logits",
            logits.len(),
            self.logits_len(batch)?,
            "batch*num_classes",
        )?;
        // SAFETY: the handle is live (destroyed only in Drop); lengths checked above.
        check(unsafe {
            sys::winattn_model_classify(
                self.raw,
                input.as_ptr(),
                to_i64("batch", batch)?,
                size.as_ptr(),
                logits.as_mut_ptr(),
            )
        })
    }

    /// The shape of each stage's output for an input of `size` (frames, height, width): one
    /// `[frames, height, width, channels]` per stage. Stage `s`'s features are then
    /// `[batch][frames][height][width][channels]`, channels last.
    pub fn feature_shapes(&self, size: [i64; 3]) -> Result<Vec<[i64; 4]>> {
        positive_dims("size", &size)?;
        let stages = self.info.num_stages();
        let mut flat = [0i64; 4 * 8];
        // SAFETY: the handle is live; flat holds [num_stages <= 8][4] entries.
        check(unsafe {
            sys::winattn_model_feature_shapes(self.raw, size.as_ptr(), flat.as_mut_ptr())
        })?;
        Ok(flat[..4 * stages]
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    }

    /// Lengths of the stages' outputs for `batch` inputs of `size`.
    fn feature_lens(&self, batch: usize, size: [i64; 3]) -> Result<Vec<usize>> {
        let shapes = self.feature_shapes(size)?;
        let mut lens = Vec::with_capacity(shapes.len());
        for (s, shape) in shapes.iter().enumerate() {
            let mut dims = [batch, 0, 0, 0, 0];
            for (d, &v) in shape.iter().enumerate() {
                dims[d + 1] = reported(&format!("stage {s}'s feature shape"), v)?;
            }
            lens.push(product(&format!("stage {s}'s features"), &dims)?);
        }
        Ok(lens)
    }

    /// Runs the backbone on `input` (as [`Model::classify`]) and returns every stage's output, each
    /// `[batch][frames][height][width][channels]` as [`Model::feature_shapes`] gives it (after the stage's
    /// blocks, before the next patch merging; the last stage's before the final norm), the layout of
    /// torchvision's `model.features` outputs.
    pub fn features(&self, input: &[f32], batch: usize, size: [i64; 3]) -> Result<Vec<Vec<f32>>> {
        self.check_input(input, batch, &size)?;
        let lens = self.feature_lens(batch, size)?;
        let mut features = Vec::with_capacity(lens.len());
        for (s, &len) in lens.iter().enumerate() {
            features.push(zeroed_vec::<f32>(&format!("stage {s}'s features"), len)?);
        }
        let mut outputs: Vec<Option<&mut [f32]>> = features
            .iter_mut()
            .map(|f| Some(f.as_mut_slice()))
            .collect();
        self.features_into(input, batch, size, &mut outputs)?;
        Ok(features)
    }

    /// [`Model::features`] writing into caller buffers: `features` has one entry per stage, `Some(out)`
    /// with `out` of that stage's length, or `None` to skip the stage's copy (the stages still run up to
    /// the last one requested).
    pub fn features_into(
        &self,
        input: &[f32],
        batch: usize,
        size: [i64; 3],
        features: &mut [Option<&mut [f32]>],
    ) -> Result<()> {
        self.check_input(input, batch, &size)?;
        let stages = self.info.num_stages();
        if features.len() != stages {
            return Err(invalid(format!(
                "features has {} entries, expected one per stage ({stages})",
                features.len()
            )));
        }
        let lens = self.feature_lens(batch, size)?;
        let mut pointers = [ptr::null_mut::<f32>(); 8];
        for (s, (out, &len)) in features.iter_mut().zip(&lens).enumerate() {
            if let Some(out) = out {
                expect_len(
                    &format!("features[{s}]"),
                    out.len(),
                    len,
                    "batch*frames*height*width*channels of the stage",
                )?;
                pointers[s] = out.as_mut_ptr();
            }
        }
        // SAFETY: the handle is live; input and every non-NULL output length-checked; the outputs are
        // distinct &mut slices, so they overlap neither each other nor input.
        check(unsafe {
            sys::winattn_model_features(
                self.raw,
                input.as_ptr(),
                to_i64("batch", batch)?,
                size.as_ptr(),
                pointers.as_ptr(),
            )
        })
    }

    /// Sets the model's thread budget, as [`Layer::set_num_threads`]: the most threads one call on the
    /// model uses; 0 follows the process setting. May be called while other calls run on the model. Above
    /// [`MAX_THREADS`]: [`Status::InvalidArgument`], budget unchanged.
    pub fn set_num_threads(&self, num_threads: usize) -> Result<()> {
        let n = thread_count("num_threads", num_threads)?;
        // SAFETY: the handle is live; the C contract allows this concurrently with other calls.
        check(unsafe { sys::winattn_model_set_num_threads(self.raw, n) })
    }

    /// The model's thread budget (0 = the process setting).
    pub fn num_threads(&self) -> Result<usize> {
        let mut n: c_int = -1;
        // SAFETY: the handle is live; n is a valid out pointer.
        check(unsafe { sys::winattn_model_get_num_threads(self.raw, &mut n) })?;
        usize::try_from(n).map_err(|_| {
            internal(format!(
                "the library reported a negative thread budget ({n})"
            ))
        })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: created by winattn_model_load/create, destroyed once; &mut self excludes other calls.
        unsafe { sys::winattn_model_destroy(self.raw) }
    }
}
