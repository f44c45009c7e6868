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
//! uses.
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

/// Compute precision of a prepacked [`Layer`].
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
