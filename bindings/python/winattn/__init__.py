"""Python (ctypes + numpy) binding of winattn, Swin-style windowed multi-head attention on the CPU.

Every function takes numpy arrays (anything ``np.asarray`` accepts) and returns freshly allocated
``np.float32`` arrays (``np.int64`` for :func:`relative_position_index`). Array arguments are converted as
follows before the C library sees them:

- float32 arguments accept real floating-point and integer dtypes (float16/32/64, int*, uint*); values are
  rounded to float32 as ``x.astype(np.float32)`` does. Complex, boolean and non-numeric arrays raise
  :class:`ArgumentTypeError` naming the argument (nothing is dropped or reinterpreted silently).
- index arguments (int64) accept integer dtypes only (int*, uint*; uint64 entries above 2**63-1 raise
  ``ValueError``); float index arrays are refused with :class:`ArgumentTypeError` rather than truncated.
- an array that is not C-contiguous, not aligned to its element size (e.g. a float32 view at an odd byte
  offset of a uint8 buffer), not in native byte order or not of the exact dtype is copied into a fresh
  aligned, contiguous array; an array that already is one is passed without a copy.
- scalar sizes (channels, window entries, ...) accept ints and whole-valued floats (7.0); fractions, NaN,
  infinities, bools and complex numbers raise ``ValueError`` naming the argument.

Shapes are checked in Python before the C library is called (``ValueError`` naming the argument); anything
the C library rejects raises :class:`WinattnError` carrying the C status and the library's message.

The shared library is looked up, in order:

1. at the path in the environment variable ``WINATTN_LIBRARY`` (when set, only there: a wrong path is an
   error, not a silent fallback);
2. when this package is imported from the source tree (``bindings/python/winattn``), at the tree's
   ``build/libwinattn.so``;
3. where ``cmake --install`` puts it: ``<prefix>/lib/libwinattn.so`` and ``<prefix>/lib/<multiarch>/``
   for ``sys.prefix`` (a virtual environment's prefix) and ``sys.base_prefix``, then ``/usr/local/lib``
   (CMake's default prefix) and ``/usr/lib/<multiarch>`` (``-DCMAKE_INSTALL_PREFIX=/usr`` on Debian);
4. ``ctypes.util.find_library("winattn")`` (the ldconfig cache, LD_LIBRARY_PATH).

It is loaded on first use; OSError lists the paths tried. :func:`library_path` says which one was loaded.

Example::

    import numpy as np
    import winattn

    x = np.random.rand(1, 56, 56, 96).astype(np.float32)          # [B][H][W][C]
    qkv_w = np.random.rand(288, 96).astype(np.float32) * 0.1       # nn.Linear layout
    proj_w = np.random.rand(96, 96).astype(np.float32) * 0.1
    table = np.random.rand(13 * 13, 3).astype(np.float32) * 0.02   # [(2Wh-1)(2Ww-1)][heads]
    with winattn.Layer(96, 3, (7, 7), (3, 3), qkv_w, proj_w,
                       relative_position_bias_table=table) as layer:
        y = layer.forward(x)                                       # [1][56][56][96]

Whole models (:class:`Model`): a Swin, SwinV2 or Video Swin network built from a torchvision or timm
state_dict, in eval mode, for inference only (no autograd). Inputs are numpy arrays or torch CPU tensors
([B][C][H][W] for 2D models, [B][C][T][H][W] for Video Swin, or one unbatched sample) and results come
back as the same kind (float32)::

    import torch, torchvision
    import winattn

    tv = torchvision.models.swin_t().eval()
    model = winattn.Model.from_torchvision(tv)        # or winattn.Model.load("swin_t.safetensors")
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 224, 224))   # torch.Tensor [2][1000]
    feats = model.features(torch.rand(1, 3, 224, 224))  # [1][56][56][96], ..., [1][7][7][768]
    model.close()                                    # or use ``with``; waits for running calls

``python3 -m winattn.export`` writes a state_dict as the .safetensors file :meth:`Model.load` reads.
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import numbers
import os
import sys
import sysconfig
import threading

import numpy as np

__all__ = [
    "WinattnError",
    "ArgumentTypeError",
    "Layer",
    "Block",
    "Model",
    "ModelInfo",
    "MAX_THREADS",
    "release_thread_memory",
    "version",
    "active_isa",
    "set_max_isa",
    "set_num_threads",
    "get_num_threads",
    "library_path",
    "relative_position_index",
    "relative_position_bias",
    "relative_position_bias_backward",
    "continuous_position_bias_table",
    "shifted_window_mask",
    "window_attention",
    "shifted_window_attention",
]

# Status values of the C enum winattn_status (numbered explicitly in the header).
STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_UNSUPPORTED = 2
STATUS_OUT_OF_MEMORY = 3
STATUS_INTERNAL_ERROR = 4

# Values of the C enum winattn_dtype.
DTYPE_F32 = 0
DTYPE_BF16 = 1
DTYPE_F16 = 2

# WINATTN_MAX_THREADS of the header: the most threads any call uses; thread counts above it are refused.
MAX_THREADS = 256

_INT64_MAX = (1 << 63) - 1

_c_float_p = ctypes.POINTER(ctypes.c_float)
_c_int64_p = ctypes.POINTER(ctypes.c_int64)


class WinattnError(RuntimeError):
    """A call into the C library returned a status other than WINATTN_STATUS_OK.

    Attributes:
        status: the winattn_status value (int), e.g. 1 for invalid argument.
        status_name: the library's English name of the status (winattn_status_string).
        message: the library's message for the failed call (winattn_last_error_message), naming the
            offending argument.
    """

    def __init__(self, status, message, status_name=None):
        """Builds the exception from a status value, its message and (optionally) the status name."""
        self.status = int(status)
        self.message = str(message)
        if status_name is None:
            status_name = _status_name(self.status)
        self.status_name = status_name
        super().__init__("winattn: %s (status %d): %s" % (self.status_name, self.status, self.message))


class ArgumentTypeError(TypeError, ValueError):
    """An argument has a type or dtype this binding refuses to convert: a complex, boolean or non-numeric
    array, a float array where an index (int64) is expected, or a complex scalar. The message starts with the
    argument's name.

    It is a TypeError, and also a ValueError, so code that caught the ValueError earlier versions raised for
    unconvertible arrays keeps working.
    """


class _WindowAttentionArgs(ctypes.Structure):
    """Mirror of the C struct winattn_window_attention_args (same field order and types)."""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("grid", ctypes.c_int64 * 3),
        ("channels", ctypes.c_int64),
        ("num_heads", ctypes.c_int64),
        ("window", ctypes.c_int64 * 3),
        ("shift", ctypes.c_int64 * 3),
        ("qkv_weight", _c_float_p),
        ("qkv_bias", _c_float_p),
        ("proj_weight", _c_float_p),
        ("proj_bias", _c_float_p),
        ("relative_position_bias", _c_float_p),
        ("logit_scale", _c_float_p),
        ("flags", ctypes.c_uint32),
    ]


class _LayerDesc(ctypes.Structure):
    """Mirror of the C struct winattn_layer_desc (same field order and types; the enum is a C int)."""

    _fields_ = [
        ("channels", ctypes.c_int64),
        ("num_heads", ctypes.c_int64),
        ("window", ctypes.c_int64 * 3),
        ("shift", ctypes.c_int64 * 3),
        ("qkv_weight", _c_float_p),
        ("qkv_bias", _c_float_p),
        ("proj_weight", _c_float_p),
        ("proj_bias", _c_float_p),
        ("relative_position_bias_table", _c_float_p),
        ("logit_scale", _c_float_p),
        ("cpb_weight1", _c_float_p),
        ("cpb_bias1", _c_float_p),
        ("cpb_weight2", _c_float_p),
        ("cpb_hidden", ctypes.c_int64),
        ("compute_dtype", ctypes.c_int),
        ("flags", ctypes.c_uint32),
    ]


class _BlockDesc(ctypes.Structure):
    """Mirror of the C struct winattn_block_desc (same field order and types)."""

    _fields_ = [
        ("attention", _LayerDesc),
        ("norm1_weight", _c_float_p),
        ("norm1_bias", _c_float_p),
        ("norm2_weight", _c_float_p),
        ("norm2_bias", _c_float_p),
        ("norm_eps", ctypes.c_float),
        ("post_norm", ctypes.c_int32),
        ("mlp_hidden", ctypes.c_int64),
        ("fc1_weight", _c_float_p),
        ("fc1_bias", _c_float_p),
        ("fc2_weight", _c_float_p),
        ("fc2_bias", _c_float_p),
        ("num_threads", ctypes.c_int),
        ("flags", ctypes.c_uint32),
    ]


class _ModelOptions(ctypes.Structure):
    """Mirror of the C struct winattn_model_options."""

    _fields_ = [
        ("compute_dtype", ctypes.c_int),
        ("num_threads", ctypes.c_int),
        ("flags", ctypes.c_uint32),
    ]


class _ModelInfo(ctypes.Structure):
    """Mirror of the C struct winattn_model_info (the enum family is a C int)."""

    _fields_ = [
        ("family", ctypes.c_int),
        ("in_channels", ctypes.c_int64),
        ("num_classes", ctypes.c_int64),
        ("embed_dim", ctypes.c_int64),
        ("num_stages", ctypes.c_int64),
        ("depths", ctypes.c_int64 * 8),
        ("num_heads", ctypes.c_int64 * 8),
        ("patch", ctypes.c_int64 * 3),
        ("window", ctypes.c_int64 * 3),
    ]


class _Tensor(ctypes.Structure):
    """Mirror of the C struct winattn_tensor."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.c_int64 * 8),
        ("data", ctypes.c_void_p),
    ]


# ---------------------------------------------------------------------------------------------------------
# Library loading
# ---------------------------------------------------------------------------------------------------------

_lib_lock = threading.Lock()
_lib_handle = None
_lib_path = None


_LIBRARY_NAME = "libwinattn.so"


def _source_tree_library():
    """<repo>/build/libwinattn.so when this package is imported from the source tree (bindings/python/winattn
    next to include/winattn/winattn.h), else None (an installed copy has no build/ of its own)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if not os.path.isfile(os.path.join(root, "include", "winattn", "winattn.h")):
        return None
    return os.path.join(root, "build", _LIBRARY_NAME)


def _installed_library_dirs():
    """The directories `cmake --install` puts the library in, for the prefixes that matter to this Python, in
    the order they are searched: <prefix>/lib and <prefix>/lib/<multiarch> of sys.prefix (a virtual
    environment's) and sys.base_prefix, then /usr/local (CMake's default prefix), then /usr (Debian's
    GNUInstallDirs put the library in /usr/lib/<multiarch>); duplicates removed."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    prefixes = [p for p in (sys.prefix, getattr(sys, "base_prefix", sys.prefix)) if os.path.normpath(p) != "/usr"]
    prefixes += ["/usr/local", "/usr"]
    seen, dirs = set(), []
    for prefix in prefixes:
        for d in (os.path.join(prefix, "lib"), os.path.join(prefix, "lib", multiarch)):
            d = os.path.normpath(d)
            if d not in seen:
                seen.add(d)
                dirs.append(d)
    return dirs


def _candidate_paths():
    """The library paths to try, in lookup order: WINATTN_LIBRARY alone when set; else the source tree's
    build/libwinattn.so (only when imported from the source tree), then the installed locations
    (_installed_library_dirs), then ctypes.util.find_library("winattn")."""
    env = os.environ.get("WINATTN_LIBRARY")
    if env:
        # An explicit path is authoritative: never fall back silently to another copy of the library.
        return [env]
    paths = []
    tree = _source_tree_library()
    if tree is not None:
        paths.append(tree)
    for d in _installed_library_dirs():
        paths.append(os.path.join(d, _LIBRARY_NAME))
    found = ctypes.util.find_library("winattn")
    if found:
        paths.append(found)
    return paths


def _declare(lib):
    """Declares argtypes and restype of every C function of the header on the loaded library."""
    i64, i64p, fp, cfp = ctypes.c_int64, _c_int64_p, _c_float_p, _c_float_p
    status = ctypes.c_int
    sigs = {
        "winattn_status_string": (ctypes.c_char_p, [ctypes.c_int]),
        "winattn_last_error_message": (ctypes.c_char_p, []),
        "winattn_version": (ctypes.c_char_p, []),
        "winattn_active_isa": (ctypes.c_char_p, []),
        "winattn_set_max_isa": (status, [ctypes.c_char_p]),
        "winattn_set_num_threads": (status, [ctypes.c_int]),
        "winattn_get_num_threads": (ctypes.c_int, []),
        "winattn_relative_position_index": (status, [ctypes.c_int, i64p, i64p]),
        "winattn_relative_position_bias": (status, [cfp, i64, i64, i64p, i64, fp]),
        "winattn_relative_position_bias_backward": (status, [cfp, i64, i64, i64p, i64, fp]),
        "winattn_continuous_position_bias_table": (status, [i64, i64, cfp, cfp, cfp, i64, i64, fp]),
        "winattn_shifted_window_mask": (status, [i64p, i64p, i64p, fp]),
        "winattn_window_attention": (status, [i64, i64, i64, i64, cfp, cfp, cfp, ctypes.c_float, cfp, cfp, i64, fp]),
        "winattn_shifted_window_attention": (status, [ctypes.POINTER(_WindowAttentionArgs), cfp, fp]),
        "winattn_layer_create": (status, [ctypes.POINTER(_LayerDesc), ctypes.POINTER(ctypes.c_void_p)]),
        "winattn_layer_forward": (status, [ctypes.c_void_p, cfp, i64, i64p, fp]),
        "winattn_layer_destroy": (None, [ctypes.c_void_p]),
        "winattn_release_thread_memory": (None, []),
        "winattn_layer_set_num_threads": (status, [ctypes.c_void_p, ctypes.c_int]),
        "winattn_layer_get_num_threads": (status, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]),
        "winattn_layer_trim": (status, [ctypes.c_void_p]),
        "winattn_layer_memory_bytes": (status, [ctypes.c_void_p, i64p]),
        "winattn_block_create": (status, [ctypes.POINTER(_BlockDesc), ctypes.POINTER(ctypes.c_void_p)]),
        "winattn_block_forward": (status, [ctypes.c_void_p, cfp, i64, i64p, fp]),
        "winattn_block_set_num_threads": (status, [ctypes.c_void_p, ctypes.c_int]),
        "winattn_block_destroy": (None, [ctypes.c_void_p]),
        "winattn_model_load": (
            status, [ctypes.c_char_p, ctypes.POINTER(_ModelOptions), ctypes.POINTER(ctypes.c_void_p)]
        ),
        "winattn_model_create": (
            status, [ctypes.POINTER(_Tensor), i64, ctypes.POINTER(_ModelOptions), ctypes.POINTER(ctypes.c_void_p)]
        ),
        "winattn_model_get_info": (status, [ctypes.c_void_p, ctypes.POINTER(_ModelInfo)]),
        "winattn_model_classify": (status, [ctypes.c_void_p, cfp, i64, i64p, fp]),
        "winattn_model_feature_shapes": (status, [ctypes.c_void_p, i64p, i64p]),
        "winattn_model_features": (status, [ctypes.c_void_p, cfp, i64, i64p, ctypes.POINTER(fp)]),
        "winattn_model_set_num_threads": (status, [ctypes.c_void_p, ctypes.c_int]),
        "winattn_model_get_num_threads": (status, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]),
        "winattn_model_destroy": (None, [ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in _OPTIONAL_FUNCTIONS:
                continue  # an older library: _optional_fn reports it when the function is used
            raise
        fn.restype = restype
        fn.argtypes = argtypes


# Functions added in later versions of the header: a library without them still loads, and using one raises
# WinattnError (unsupported) naming the function.
_OPTIONAL_FUNCTIONS = frozenset(
    [
        "winattn_release_thread_memory",
        "winattn_layer_set_num_threads",
        "winattn_layer_get_num_threads",
        "winattn_layer_trim",
        "winattn_layer_memory_bytes",
        "winattn_block_create",
        "winattn_block_forward",
        "winattn_block_set_num_threads",
        "winattn_block_destroy",
        "winattn_model_load",
        "winattn_model_create",
        "winattn_model_get_info",
        "winattn_model_classify",
        "winattn_model_feature_shapes",
        "winattn_model_features",
        "winattn_model_set_num_threads",
        "winattn_model_get_num_threads",
        "winattn_model_destroy",
    ]
)


def _optional_fn(lib, name):
    """lib's function name, or WinattnError (unsupported) when the loaded library does not export it."""
    try:
        return getattr(lib, name)
    except AttributeError:
        raise WinattnError(
            STATUS_UNSUPPORTED, "%s: not exported by %s (a library older than this binding)" % (name, _lib_path)
        ) from None


def _lib():
    """Returns the loaded C library, loading it (and declaring its signatures) on first use.

    Raises OSError listing every path tried when none loads.
    """
    global _lib_handle, _lib_path
    if _lib_handle is not None:
        return _lib_handle
    with _lib_lock:
        if _lib_handle is not None:
            return _lib_handle
        errors = []
        for path in _candidate_paths():
            if os.path.sep in path and not os.path.exists(path):
                errors.append("%s: no such file" % path)
                continue
            try:
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as exc:
                errors.append("%s: %s" % (path, exc))
                continue
            _lib_path = path
            _lib_handle = lib
            return lib
        raise OSError(
            "winattn: cannot load libwinattn.so (set WINATTN_LIBRARY to its path, or install it with "
            "`cmake --install <build dir>`); tried: " + "; ".join(errors)
        )


def library_path():
    """The path (or name) of the loaded libwinattn shared library, loading it if needed."""
    _lib()
    return _lib_path


def _status_name(status):
    """The library's name for a status value, or "unknown status" when the library cannot say."""
    try:
        return _lib().winattn_status_string(int(status)).decode("utf-8", "replace")
    except Exception:  # pragma: no cover - only when the library itself cannot be loaded
        return "unknown status"


def _check(status):
    """Raises WinattnError for a non-OK status, with this thread's last error message of the library."""
    if status != STATUS_OK:
        lib = _lib()
        raw = lib.winattn_last_error_message()
        message = raw.decode("utf-8", "replace") if raw else ""
        raise WinattnError(status, message)


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def _array(x, name):
    """x as a plain numpy array (ndarray subclasses become views of their data), without dtype conversion
    (ValueError naming the argument when numpy cannot make one)."""
    if type(x) is np.ndarray:
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError("%s: cannot convert to an array (%s)" % (name, exc)) from None


def _c_array(a, dtype):
    """a itself when it already is a C-contiguous, aligned array of exactly dtype (native byte order), else
    a fresh copy that is (numpy allocates new arrays aligned)."""
    if a.dtype == dtype and a.flags.c_contiguous and a.flags.aligned:
        return a
    return np.array(a, dtype=dtype, order="C")


def _f32(x, name):
    """x as a C-contiguous, aligned float32 array.

    Accepts real floating-point and integer dtypes; complex, boolean and non-numeric dtypes raise
    ArgumentTypeError naming the argument.
    """
    a = _array(x, name)
    kind = a.dtype.kind
    if kind == "c":
        raise ArgumentTypeError(
            "%s: complex arrays are not accepted (dtype %s): the imaginary part would be dropped; pass x.real "
            "if that is what you mean" % (name, a.dtype)
        )
    if kind == "b":
        raise ArgumentTypeError("%s: boolean arrays are not accepted; convert to float32 explicitly" % name)
    if kind not in "fiu":
        raise ArgumentTypeError(
            "%s: expected a real numeric array (float or integer dtype), got dtype %s" % (name, a.dtype)
        )
    return _c_array(a, np.float32)


def _i64(x, name):
    """x as a C-contiguous, aligned int64 array.

    Accepts integer dtypes only: float arrays raise ArgumentTypeError (they are not truncated), uint64
    entries above 2**63 - 1 raise ValueError. An empty Python sequence (which numpy makes float64) is taken
    as an empty int64 array.
    """
    a = _array(x, name)
    kind = a.dtype.kind
    if kind == "f" and a.size == 0 and not isinstance(x, np.ndarray):
        a = a.astype(np.int64)
        kind = "i"
    if kind not in "iu":
        raise ArgumentTypeError(
            "%s: expected an integer array (an index), got dtype %s; float arrays are not truncated, "
            "convert them with .astype(np.int64) after checking the values" % (name, a.dtype)
        )
    if kind == "u" and a.dtype.itemsize >= 8 and a.size and int(a.max()) > _INT64_MAX:
        raise ValueError("%s: entry %d does not fit in int64" % (name, int(a.max())))
    return _c_array(a, np.int64)


def _opt_f32(x, name):
    """None stays None; anything else goes through _f32."""
    return None if x is None else _f32(x, name)


def _fp(a):
    """A float* to the data of a float32 array, or NULL for None."""
    return None if a is None else a.ctypes.data_as(_c_float_p)


def _ip(a):
    """An int64_t* to the data of an int64 array, or NULL for None."""
    return None if a is None else a.ctypes.data_as(_c_int64_p)


def _is_complex(x):
    """Whether x is a complex scalar or a complex numpy value."""
    if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        return True
    dtype = getattr(x, "dtype", None)
    return isinstance(dtype, np.dtype) and dtype.kind == "c"


def _int(x, name):
    """x as a Python int in int64 range.

    Ints and whole-valued floats (7.0) are accepted; bools, fractions, NaN, infinities and non-numbers raise
    ValueError naming the argument, complex numbers ArgumentTypeError.
    """
    if isinstance(x, (bool, np.bool_)):
        raise ValueError("%s: expected an integer, got %r" % (name, x))
    if _is_complex(x):
        raise ArgumentTypeError("%s: expected an integer, got the complex number %r" % (name, x))
    try:
        value = int(x)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("%s: expected an integer, got %r" % (name, x)) from None
    if value != x:
        raise ValueError("%s: expected an integer, got %r" % (name, x))
    if not -(1 << 63) <= value <= _INT64_MAX:
        raise ValueError("%s: %d does not fit in int64" % (name, value))
    return value


def _ints(seq, name, lengths):
    """seq as a tuple of ints whose length is one of lengths (ValueError naming the argument otherwise)."""
    if np.isscalar(seq):
        seq = (seq,)
    try:
        items = list(seq)
    except TypeError:
        raise ValueError("%s: expected a sequence of integers, got %r" % (name, seq)) from None
    values = tuple(_int(v, name) for v in items)
    if len(values) not in lengths:
        raise ValueError(
            "%s: expected %s integers, got %d (%r)" % (name, " or ".join(str(n) for n in lengths), len(values), seq)
        )
    return values


def _prod(values):
    """The product of a sequence of Python ints (exact, no overflow)."""
    p = 1
    for v in values:
        p *= v
    return p


def _output(shape):
    """A fresh float32 output array of shape, or a 1-element scratch array when the shape is not valid.

    When some dimension is negative or the element count does not fit in int64 the C library is
    documented to reject the call before writing anything, so a scratch buffer is enough to let it report
    the error; the second return value says whether the returned array has the requested shape.
    """
    if any(d < 0 for d in shape) or _prod(shape) > _INT64_MAX:
        return np.zeros(1, dtype=np.float32), False
    return np.empty(shape, dtype=np.float32), True


def _require_shape(a, shape, name):
    """Raises ValueError naming the argument when array a does not have exactly the given shape."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError("%s: expected shape %s, got %s" % (name, tuple(shape), tuple(a.shape)))


def _shape_only_on_success(ok, name):
    """Raises WinattnError when the C library accepted a call whose sizes Python considered invalid."""
    if not ok:
        raise WinattnError(STATUS_INTERNAL_ERROR, "%s: the library accepted invalid sizes" % name)


# ---------------------------------------------------------------------------------------------------------
# Version, dispatch, threading
# ---------------------------------------------------------------------------------------------------------


def version():
    """The library's version string, "MAJOR.MINOR.PATCH"."""
    return _lib().winattn_version().decode("ascii")


def active_isa():
    """The kernels in use: "amx_bf16", "avx512_bf16", "avx512", "avx2" or "scalar" (after any set_max_isa cap
    and the WINATTN_MAX_ISA environment cap)."""
    return _lib().winattn_active_isa().decode("ascii")


def set_max_isa(name):
    """Caps the kernel dispatch at name ("amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar", or "native" for no cap).

    Raises WinattnError (invalid argument) for an unknown name.
    """
    if not isinstance(name, str):
        raise ValueError("name: expected a string, got %r" % (name,))
    _check(_lib().winattn_set_max_isa(name.encode("utf-8")))


def _thread_count(n, name):
    """n as an int in 0..MAX_THREADS: ValueError for a non-integer, WinattnError (invalid argument, as the C
    library answers) for an integer outside the range, including one that does not fit in a C int."""
    n = _int(n, name)
    if not 0 <= n <= MAX_THREADS:
        raise WinattnError(
            STATUS_INVALID_ARGUMENT,
            "%s must be in 0..%d (0 = the default, %d = WINATTN_MAX_THREADS), got %d"
            % (name, MAX_THREADS, MAX_THREADS, n),
        )
    return n


def set_num_threads(n):
    """Sets the number of OpenMP threads the library uses, process-wide (0 = OpenMP's default).

    n must be an integer in 0..MAX_THREADS; anything outside raises WinattnError (invalid argument) and leaves
    the setting unchanged. A layer's own budget (Layer.num_threads) overrides this setting.
    """
    n = _thread_count(n, "num_threads")
    _check(_lib().winattn_set_num_threads(n))


def get_num_threads():
    """The value last given to set_num_threads (0 = OpenMP default)."""
    return int(_lib().winattn_get_num_threads())


def release_thread_memory():
    """Frees the scratch memory the library keeps for the calling thread between calls (it is allocated again
    by the next call that needs it). Useful in a long-running server after a burst of large requests on a
    thread that will now idle. Never fails; WinattnError (unsupported) only with a library older than this
    binding."""
    _optional_fn(_lib(), "winattn_release_thread_memory")()


# ---------------------------------------------------------------------------------------------------------
# Relative position bias and masks
# ---------------------------------------------------------------------------------------------------------


def relative_position_index(window):
    """The relative position index of a window of 1 to 3 dimensions.

    Args:
        window: a tuple of 1 (T), 2 (Wh, Ww) or 3 (Wd, Wh, Ww) ints (a plain int means 1D).
    Returns:
        int64 array [N][N], N = prod(window); entry [i][j] is the row of the bias table, with the layout of
        torchvision's / Video Swin's relative_position_index.
    """
    win = _ints(window, "window", (1, 2, 3))
    n = _prod(win)
    ok = all(w >= 1 for w in win) and n * n <= _INT64_MAX
    out = np.empty((n, n), dtype=np.int64) if ok else np.zeros(1, dtype=np.int64)
    w_arr = np.array(win, dtype=np.int64)
    _check(_lib().winattn_relative_position_index(len(win), _ip(w_arr), _ip(out)))
    _shape_only_on_success(ok, "window")
    return out


def _square_index(index, name="index"):
    """index as an int64 [n][n] array; a flat [n*n] array (torchvision's buffer) is reshaped."""
    idx = _i64(index, name)
    if idx.ndim == 1:
        n = int(round(idx.size ** 0.5))
        if n * n != idx.size:
            raise ValueError("%s: a flat index needs a square number of entries, got %d" % (name, idx.size))
        idx = idx.reshape(n, n)
    if idx.ndim != 2 or idx.shape[0] != idx.shape[1]:
        raise ValueError("%s: expected shape [n][n] (or [n*n]), got %s" % (name, tuple(idx.shape)))
    return idx


def relative_position_bias(table, index):
    """The bias-table lookup: bias[h][i][j] = table[index[i][j]][h].

    Args:
        table: [table_rows][num_heads] float32 (PyTorch's relative_position_bias_table layout).
        index: [n][n] int64 (or a flat [n*n]), every entry in [0, table_rows) (checked by the library).
    Returns:
        float32 array [num_heads][n][n].
    """
    tab = _f32(table, "table")
    if tab.ndim != 2:
        raise ValueError("table: expected shape [table_rows][num_heads], got %s" % (tuple(tab.shape),))
    idx = _square_index(index)
    rows, heads = tab.shape
    n = idx.shape[0]
    out, ok = _output((heads, n, n))
    _check(_lib().winattn_relative_position_bias(_fp(tab), rows, heads, _ip(idx), n, _fp(out)))
    _shape_only_on_success(ok and out.size == heads * n * n, "table")
    return out


def relative_position_bias_backward(grad_bias, index, table_rows):
    """The gradient of relative_position_bias with respect to the table.

    Args:
        grad_bias: [num_heads][n][n] float32.
        index: [n][n] int64 (or a flat [n*n]), entries in [0, table_rows).
        table_rows: number of rows of the table.
    Returns:
        float32 array [table_rows][num_heads]: grad[index[i][j]][h] = sum of grad_bias[h][i][j].
    """
    g = _f32(grad_bias, "grad_bias")
    idx = _square_index(index)
    rows = _int(table_rows, "table_rows")
    n = idx.shape[0]
    if g.ndim != 3 or g.shape[1] != n or g.shape[2] != n:
        raise ValueError("grad_bias: expected shape [num_heads][%d][%d], got %s" % (n, n, tuple(g.shape)))
    heads = g.shape[0]
    if rows < 0 or rows * max(heads, 1) > _INT64_MAX:
        out, ok = np.zeros(1, dtype=np.float32), False
    else:
        out, ok = np.zeros((rows, heads), dtype=np.float32), True
    _check(_lib().winattn_relative_position_bias_backward(_fp(g), rows, heads, _ip(idx), n, _fp(out)))
    _shape_only_on_success(ok, "table_rows")
    return out


def continuous_position_bias_table(window_h, window_w, w1, b1, w2):
    """The SwinV2 continuous position bias table, 16 * sigmoid(MLP(coords)), as torchvision builds it.

    Args:
        window_h, window_w: the window.
        w1: [hidden][2] (first nn.Linear weight), b1: [hidden] or None, w2: [num_heads][hidden]
            (second nn.Linear weight, no bias).
    Returns:
        float32 array [(2*window_h-1)*(2*window_w-1)][num_heads], rows ordered like
        relative_position_index((window_h, window_w)) expects.
    """
    wh = _int(window_h, "window_h")
    ww = _int(window_w, "window_w")
    a1 = _f32(w1, "w1")
    if a1.ndim != 2 or a1.shape[1] != 2:
        raise ValueError("w1: expected shape [hidden][2], got %s" % (tuple(a1.shape),))
    hidden = a1.shape[0]
    a_b1 = _opt_f32(b1, "b1")
    if a_b1 is not None:
        _require_shape(a_b1, (hidden,), "b1")
    a2 = _f32(w2, "w2")
    if a2.ndim != 2 or a2.shape[1] != hidden:
        raise ValueError("w2: expected shape [num_heads][%d], got %s" % (hidden, tuple(a2.shape)))
    heads = a2.shape[0]
    out, ok = _output(((2 * wh - 1) * (2 * ww - 1), heads))
    ok = ok and wh >= 1 and ww >= 1
    _check(
        _lib().winattn_continuous_position_bias_table(wh, ww, _fp(a1), _fp(a_b1), _fp(a2), hidden, heads, _fp(out))
    )
    _shape_only_on_success(ok, "window_h/window_w")
    return out


def shifted_window_mask(grid, window, shift):
    """The shifted-window attention mask (0 within a region, -100 across regions).

    Args:
        grid, window, shift: 3-tuples (depth, height, width); 2D callers pass depth 1, window 1, shift 0.
            Each grid entry must be a multiple of its window entry, 0 <= shift < window.
    Returns:
        float32 array [num_windows][N][N], N = prod(window), num_windows = prod(grid / window), windows
        numbered row-major.
    """
    g = _ints(grid, "grid", (3,))
    w = _ints(window, "window", (3,))
    s = _ints(shift, "shift", (3,))
    ok = all(x >= 1 for x in g + w)
    if ok:
        nw = _prod(gi // wi for gi, wi in zip(g, w))
        n = _prod(w)
        out, ok = _output((nw, n, n))
    else:
        out = np.zeros(1, dtype=np.float32)
    ga, wa, sa = (np.array(v, dtype=np.int64) for v in (g, w, s))
    _check(_lib().winattn_shifted_window_mask(_ip(ga), _ip(wa), _ip(sa), _fp(out)))
    _shape_only_on_success(ok, "grid")
    return out


# ---------------------------------------------------------------------------------------------------------
# Fused window attention
# ---------------------------------------------------------------------------------------------------------


def window_attention(q, k, v, scale, bias=None, mask=None):
    """Fused windowed softmax attention.

    out[w][h] = softmax(scale * q[w][h] @ k[w][h]^T + bias[h] + mask[w % nW]) @ v[w][h]

    Args:
        q, k, v: [num_windows][num_heads][n][head_dim] float32, all the same shape.
        scale: the logit scale (a float, e.g. head_dim ** -0.5).
        bias: [num_heads][n][n] (or [1][num_heads][n][n]) or None.
        mask: [nW][n][n] or None; window w uses mask w % nW (Swin numbers the windows image-major).
    Returns:
        float32 array [num_windows][num_heads][n][head_dim].
    """
    aq = _f32(q, "q")
    if aq.ndim != 4:
        raise ValueError("q: expected shape [num_windows][num_heads][n][head_dim], got %s" % (tuple(aq.shape),))
    ak = _f32(k, "k")
    _require_shape(ak, aq.shape, "k")
    av = _f32(v, "v")
    _require_shape(av, aq.shape, "v")
    nwin, heads, n, d = aq.shape
    ab = _opt_f32(bias, "bias")
    if ab is not None:
        if ab.ndim == 4 and ab.shape[0] == 1:
            ab = ab.reshape(ab.shape[1:])
        _require_shape(ab, (heads, n, n), "bias")
    am = _opt_f32(mask, "mask")
    mask_windows = 0
    if am is not None:
        if am.ndim != 3 or am.shape[1:] != (n, n):
            raise ValueError("mask: expected shape [nW][%d][%d], got %s" % (n, n, tuple(am.shape)))
        mask_windows = am.shape[0]
    if _is_complex(scale):
        raise ArgumentTypeError("scale: expected a real number, got the complex number %r" % (scale,))
    try:
        scale = float(scale)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("scale: expected a float, got %r" % (scale,)) from None
    out = np.empty(aq.shape, dtype=np.float32)
    _check(
        _lib().winattn_window_attention(
            nwin, heads, n, d, _fp(aq), _fp(ak), _fp(av), scale, _fp(ab), _fp(am), mask_windows, _fp(out)
        )
    )
    return out


# ---------------------------------------------------------------------------------------------------------
# The shifted-window attention layer
# ---------------------------------------------------------------------------------------------------------


def _window_shift(window, shift):
    """window and shift as 3-tuples (a 2D window (Wh, Ww) becomes (1, Wh, Ww), its shift (0, sh, sw))."""
    win = _ints(window, "window", (2, 3))
    sh = _ints(shift, "shift", (len(win),))
    if len(win) == 2:
        win = (1,) + win
        sh = (0,) + sh
    return win, sh


def _check_weights(channels, num_heads, qkv_weight, proj_weight, qkv_bias, proj_bias, logit_scale):
    """Converts and shape-checks the projection weights; returns them as float32 arrays (or None)."""
    c = channels
    qw = _f32(qkv_weight, "qkv_weight")
    _require_shape(qw, (3 * c, c), "qkv_weight")
    pw = _f32(proj_weight, "proj_weight")
    _require_shape(pw, (c, c), "proj_weight")
    qb = _opt_f32(qkv_bias, "qkv_bias")
    if qb is not None:
        _require_shape(qb, (3 * c,), "qkv_bias")
    pb = _opt_f32(proj_bias, "proj_bias")
    if pb is not None:
        _require_shape(pb, (c,), "proj_bias")
    ls = _opt_f32(logit_scale, "logit_scale")
    if ls is not None:
        # torchvision keeps logit_scale as [num_heads][1][1]; any shape with num_heads entries is taken.
        if ls.size != num_heads:
            raise ValueError("logit_scale: expected %d entries (one per head), got shape %s" % (num_heads, ls.shape))
        ls = ls.reshape(num_heads)
    return qw, pw, qb, pb, ls


def _split_input(x, name="input"):
    """(batch, (depth, height, width), channels) of a [B][H][W][C] or [B][D][H][W][C] array."""
    if x.ndim == 4:
        b, h, w, c = x.shape
        return b, (1, h, w), c
    if x.ndim == 5:
        b, d, h, w, c = x.shape
        return b, (d, h, w), c
    raise ValueError("%s: expected shape [B][H][W][C] or [B][D][H][W][C], got %s" % (name, tuple(x.shape)))


def shifted_window_attention(
    input,
    qkv_weight,
    proj_weight,
    num_heads,
    window,
    shift,
    qkv_bias=None,
    proj_bias=None,
    relative_position_bias=None,
    logit_scale=None,
):
    """Stateless shifted-window attention, torchvision.models.swin_transformer.shifted_window_attention in eval
    mode (and its 3D Video Swin generalisation).

    Args:
        input: [B][H][W][C] with 2-tuple window/shift, or [B][D][H][W][C] with 3-tuple window/shift.
        qkv_weight: [3C][C] (nn.Linear layout), proj_weight: [C][C].
        num_heads: number of heads (C % num_heads == 0).
        window, shift: 2- or 3-tuples, 0 <= shift < window.
        qkv_bias: [3C] or None; proj_bias: [C] or None.
        relative_position_bias: the looked-up bias [num_heads][N][N] (or torchvision's [1][num_heads][N][N]),
            N = prod(window), or None.
        logit_scale: None for v1 (q scaled by head_dim^-0.5); for SwinV2 cosine attention the per-head
            logit scale (num_heads entries, e.g. torchvision's [num_heads][1][1]), clamped at ln(100).
    Returns:
        float32 array with the shape of input.
    """
    x = _f32(input, "input")
    batch, grid, channels = _split_input(x)
    win = _ints(window, "window", (2, 3))
    if len(win) + 2 != x.ndim:
        raise ValueError(
            "window: a %dD input ([B]%s[C]) needs %d window entries, got %r"
            % (x.ndim - 2, "[D][H][W]" if x.ndim == 5 else "[H][W]", x.ndim - 2, window)
        )
    win, sh = _window_shift(win, shift)
    heads = _int(num_heads, "num_heads")
    qw, pw, qb, pb, ls = _check_weights(channels, heads, qkv_weight, proj_weight, qkv_bias, proj_bias, logit_scale)
    rpb = _opt_f32(relative_position_bias, "relative_position_bias")
    if rpb is not None:
        n = _prod(win)
        if rpb.ndim == 4 and rpb.shape[0] == 1:
            rpb = rpb.reshape(rpb.shape[1:])
        if heads >= 1 and n >= 1:
            _require_shape(rpb, (heads, n, n), "relative_position_bias")
    args = _WindowAttentionArgs()
    args.batch = batch
    args.grid[:] = grid
    args.channels = channels
    args.num_heads = heads
    args.window[:] = win
    args.shift[:] = sh
    args.qkv_weight = _fp(qw)
    args.qkv_bias = _fp(qb)
    args.proj_weight = _fp(pw)
    args.proj_bias = _fp(pb)
    args.relative_position_bias = _fp(rpb)
    args.logit_scale = _fp(ls)
    args.flags = 0
    out = np.empty(x.shape, dtype=np.float32)
    _check(_lib().winattn_shifted_window_attention(ctypes.byref(args), _fp(x), _fp(out)))
    return out


_DTYPES = {"float32": DTYPE_F32, "f32": DTYPE_F32, "bfloat16": DTYPE_BF16, "bf16": DTYPE_BF16}


class Layer:
    """A prepacked shifted-window attention layer (winattn_layer), for repeated forwards.

    The C library copies every array during construction, so the numpy arrays given here may be changed or
    freed afterwards. forward may be called from several threads at once (the C call runs without the GIL).
    close() (or leaving a ``with`` block, or garbage collection) frees the C layer exactly once: it first
    waits for the forwards (and other calls) running on the layer in other threads to finish, and every call
    that starts after close() raises ``ValueError("layer: the layer is closed")``. Closing from one thread
    while others run forwards is therefore safe.

    For a long-running server: ``num_threads`` caps the threads one forward uses (give concurrent layers
    budgets that add up to the cores), ``trim()`` frees the masks and projection plans the layer keeps for
    later forwards, and ``memory_bytes`` reports what the layer holds.

    Args:
        channels: C. num_heads: heads (C % num_heads == 0).
        window, shift: 2-tuples (Swin, a 2D layer) or 3-tuples (Video Swin), 0 <= shift < window.
        qkv_weight: [3C][C]; proj_weight: [C][C]; qkv_bias: [3C] or None; proj_bias: [C] or None.
        relative_position_bias_table: v1 bias table [prod(2*window-1)][num_heads] (torchvision's
            relative_position_bias_table), or None.
        logit_scale: v2 (SwinV2 cosine attention): num_heads entries (torchvision's [num_heads][1][1] works).
        cpb_weight1, cpb_bias1, cpb_weight2: v2 continuous position bias MLP, torchvision's cpb_mlp[0].weight
            [hidden][2], cpb_mlp[0].bias [hidden], cpb_mlp[2].weight [num_heads][hidden]; all None for none.
        compute_dtype: "float32" (default) or "bfloat16" (the library may answer UNSUPPORTED).
        num_threads: the layer's thread budget (see the num_threads property); None (default) leaves it at 0,
            which follows set_num_threads.
    """

    def __init__(
        self,
        channels,
        num_heads,
        window,
        shift,
        qkv_weight,
        proj_weight,
        qkv_bias=None,
        proj_bias=None,
        relative_position_bias_table=None,
        logit_scale=None,
        cpb_weight1=None,
        cpb_bias1=None,
        cpb_weight2=None,
        *,
        compute_dtype="float32",
        num_threads=None,
    ):
        """Validates the shapes and creates the C layer (see the class docstring for the arguments)."""
        self._handle = None
        # Guards _handle and _users: calls on the layer are readers (many at once), close() the writer.
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        threads = None if num_threads is None else _thread_count(num_threads, "num_threads")
        c = _int(channels, "channels")
        heads = _int(num_heads, "num_heads")
        win, sh = _window_shift(window, shift)
        qw, pw, qb, pb, ls = _check_weights(c, heads, qkv_weight, proj_weight, qkv_bias, proj_bias, logit_scale)
        table = _opt_f32(relative_position_bias_table, "relative_position_bias_table")
        if table is not None:
            rows = _prod(2 * w - 1 for w in win)
            if heads >= 1 and all(w >= 1 for w in win):
                _require_shape(table, (rows, heads), "relative_position_bias_table")
        cw1 = _opt_f32(cpb_weight1, "cpb_weight1")
        cb1 = _opt_f32(cpb_bias1, "cpb_bias1")
        cw2 = _opt_f32(cpb_weight2, "cpb_weight2")
        hidden = 0
        if cw1 is not None:
            if cw1.ndim != 2 or cw1.shape[1] != 2:
                raise ValueError("cpb_weight1: expected shape [hidden][2], got %s" % (tuple(cw1.shape),))
            hidden = cw1.shape[0]
            if cb1 is not None:
                _require_shape(cb1, (hidden,), "cpb_bias1")
            if cw2 is not None:
                _require_shape(cw2, (heads, hidden), "cpb_weight2")
        if compute_dtype not in _DTYPES:
            raise ValueError("compute_dtype: expected one of %s, got %r" % (sorted(_DTYPES), compute_dtype))

        desc = _LayerDesc()
        desc.channels = c
        desc.num_heads = heads
        desc.window[:] = win
        desc.shift[:] = sh
        desc.qkv_weight = _fp(qw)
        desc.qkv_bias = _fp(qb)
        desc.proj_weight = _fp(pw)
        desc.proj_bias = _fp(pb)
        desc.relative_position_bias_table = _fp(table)
        desc.logit_scale = _fp(ls)
        desc.cpb_weight1 = _fp(cw1)
        desc.cpb_bias1 = _fp(cb1)
        desc.cpb_weight2 = _fp(cw2)
        desc.cpb_hidden = hidden
        desc.compute_dtype = _DTYPES[compute_dtype]
        desc.flags = 0
        handle = ctypes.c_void_p()
        lib = _lib()
        # The converted arrays above stay referenced (locals) until create returns; the library copies them.
        _check(lib.winattn_layer_create(ctypes.byref(desc), ctypes.byref(handle)))
        self._lib = lib
        self._handle = handle.value
        self.channels = c
        self.num_heads = heads
        self.window = win
        self.shift = sh
        self.is_v2 = ls is not None
        if threads is not None:
            try:
                self.num_threads = threads
            except BaseException:
                self.close()
                raise

    @contextlib.contextmanager
    def _borrow(self):
        """Yields the live C handle, keeping close() from destroying it until the block ends (the reader side
        of a readers-writer lock). ValueError when the layer is closed."""
        with self._cond:
            handle = self._handle
            if handle is None:
                raise ValueError("layer: the layer is closed")
            self._users += 1
        try:
            yield handle
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    self._cond.notify_all()

    def forward(self, input):
        """Runs the layer on input ([B][H][W][C], depth 1, or [B][D][H][W][C]); returns a new float32 array
        of the same shape. input is converted like every float32 argument (see the module docstring).
        ValueError when the layer is closed."""
        if self._handle is None:
            raise ValueError("layer: the layer is closed")
        x = _f32(input, "input")
        batch, grid, channels = _split_input(x)
        if channels != self.channels:
            raise ValueError("input: expected %d channels (last axis), got %d" % (self.channels, channels))
        g = np.array(grid, dtype=np.int64)
        out = np.empty(x.shape, dtype=np.float32)
        with self._borrow() as handle:
            _check(self._lib.winattn_layer_forward(handle, _fp(x), batch, _ip(g), _fp(out)))
        return out

    __call__ = forward

    @property
    def num_threads(self):
        """The layer's thread budget: the most threads one forward on it uses, whatever set_num_threads says;
        0 (the default) follows set_num_threads. Settable to an int in 0..MAX_THREADS (WinattnError, invalid
        argument, otherwise), also while forwards run; forwards that start afterwards use the new budget.
        Results are bit-identical for every budget."""
        n = ctypes.c_int(-1)
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_layer_get_num_threads")(handle, ctypes.byref(n)))
        return int(n.value)

    @num_threads.setter
    def num_threads(self, n):
        n = _thread_count(n, "num_threads")
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_layer_set_num_threads")(handle, n))

    def trim(self):
        """Frees what the layer keeps to speed up later forwards (shifted-window masks, projection plans for
        unusual batch sizes); the next forward that needs them builds them again, with the same results. Safe
        while forwards run in other threads."""
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_layer_trim")(handle))

    @property
    def memory_bytes(self):
        """The heap memory (bytes) the layer holds now: weights, packed weights, bias, masks and plans."""
        n = ctypes.c_int64(-1)
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_layer_memory_bytes")(handle, ctypes.byref(n)))
        return int(n.value)

    def close(self):
        """Frees the C layer (winattn_layer_destroy), once. Waits for the calls running on the layer in other
        threads to finish; calls that start afterwards raise ValueError. Later close() calls do nothing."""
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            self._cond.wait_for(lambda: self._users == 0)
            self._lib.winattn_layer_destroy(handle)

    @property
    def closed(self):
        """Whether close() has run."""
        return self._handle is None

    def __enter__(self):
        """Context manager entry: returns the layer itself."""
        return self

    def __exit__(self, exc_type, exc, tb):
        """Context manager exit: closes the layer."""
        self.close()
        return False

    def __del__(self):
        """Closes the layer when it is garbage-collected."""
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        """A short description: channels, heads, window, shift, v1/v2, closed."""
        return "winattn.Layer(channels=%d, num_heads=%d, window=%s, shift=%s, %s%s)" % (
            self.channels if hasattr(self, "channels") else -1,
            self.num_heads if hasattr(self, "num_heads") else -1,
            getattr(self, "window", None),
            getattr(self, "shift", None),
            "v2" if getattr(self, "is_v2", False) else "v1",
            ", closed" if self.closed else "",
        )


# ---------------------------------------------------------------------------------------------------------
# The Swin transformer block
# ---------------------------------------------------------------------------------------------------------


def _attention_desc(
    channels, num_heads, window, shift, qkv_weight, proj_weight, qkv_bias, proj_bias,
    relative_position_bias_table, logit_scale, cpb_weight1, cpb_bias1, cpb_weight2, compute_dtype,
):
    """A filled _LayerDesc for a block's attention, checked as Layer checks its arguments.

    Returns (desc, arrays, (channels, num_heads, window, shift, is_v2)); arrays holds the converted numpy
    arrays desc points into, which must stay referenced until the C call that reads desc returns.
    """
    c = _int(channels, "channels")
    heads = _int(num_heads, "num_heads")
    win, sh = _window_shift(window, shift)
    qw, pw, qb, pb, ls = _check_weights(c, heads, qkv_weight, proj_weight, qkv_bias, proj_bias, logit_scale)
    table = _opt_f32(relative_position_bias_table, "relative_position_bias_table")
    if table is not None and heads >= 1 and all(w >= 1 for w in win):
        _require_shape(table, (_prod(2 * w - 1 for w in win), heads), "relative_position_bias_table")
    cpb = [_opt_f32(a, name) for a, name in ((cpb_weight1, "cpb_weight1"), (cpb_bias1, "cpb_bias1"),
                                             (cpb_weight2, "cpb_weight2"))]
    hidden = 0
    if cpb[0] is not None:
        if cpb[0].ndim != 2 or cpb[0].shape[1] != 2:
            raise ValueError("cpb_weight1: expected shape [hidden][2], got %s" % (tuple(cpb[0].shape),))
        hidden = cpb[0].shape[0]
        for a, shape, name in ((cpb[1], (hidden,), "cpb_bias1"), (cpb[2], (heads, hidden), "cpb_weight2")):
            if a is not None:
                _require_shape(a, shape, name)
    if compute_dtype not in _DTYPES:
        raise ValueError("compute_dtype: expected one of %s, got %r" % (sorted(_DTYPES), compute_dtype))
    desc = _LayerDesc()
    desc.channels, desc.num_heads = c, heads
    desc.window[:], desc.shift[:] = win, sh
    for field, a in (("qkv_weight", qw), ("qkv_bias", qb), ("proj_weight", pw), ("proj_bias", pb),
                     ("relative_position_bias_table", table), ("logit_scale", ls), ("cpb_weight1", cpb[0]),
                     ("cpb_bias1", cpb[1]), ("cpb_weight2", cpb[2])):
        setattr(desc, field, _fp(a))
    desc.cpb_hidden = hidden
    desc.compute_dtype = _DTYPES[compute_dtype]
    desc.flags = 0
    return desc, (qw, pw, qb, pb, table, ls, cpb), (c, heads, win, sh, ls is not None)


class _SharedHandle:
    """A C handle shared by concurrent calls and freed once: calls borrow it as readers, close() is the
    writer that waits for them (the discipline of Layer). Subclasses set _noun ("block") and _destroy (the
    name of the C destroy function), and store the handle in _handle after __init__ ran."""

    _noun = "object"
    _destroy = None

    def __init__(self):
        self._handle = None
        self._cond = threading.Condition(threading.Lock())
        self._users = 0

    @contextlib.contextmanager
    def _borrow(self):
        """Yields the live C handle, keeping close() from destroying it until the block ends. ValueError when
        closed."""
        with self._cond:
            handle = self._handle
            if handle is None:
                raise ValueError("%s: the %s is closed" % (self._noun, self._noun))
            self._users += 1
        try:
            yield handle
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    self._cond.notify_all()

    def close(self):
        """Frees the C object, once. Waits for the calls running on it in other threads to finish; calls that
        start afterwards raise ValueError. Later close() calls do nothing."""
        cond = getattr(self, "_cond", None)
        if cond is None:  # __init__ failed before the lock existed
            return
        with cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            cond.wait_for(lambda: self._users == 0)
            getattr(self._lib, self._destroy)(handle)

    @property
    def closed(self):
        """Whether close() has run."""
        return getattr(self, "_handle", None) is None

    def __enter__(self):
        """Context manager entry: returns the object itself."""
        return self

    def __exit__(self, exc_type, exc, tb):
        """Context manager exit: closes the object."""
        self.close()
        return False

    def __del__(self):
        """Closes the object when it is garbage-collected."""
        try:
            self.close()
        except Exception:
            pass


class Block(_SharedHandle):
    """A prepacked Swin transformer block in eval mode (winattn_block): torchvision's SwinTransformerBlock
    (``post_norm=False``, Swin v1: ``y = x + attn(norm1(x)); out = y + mlp(norm2(y))``) and
    SwinTransformerBlockV2 (``post_norm=True``: ``y = x + norm1(attn(x)); out = y + norm2(mlp(y))``), with
    2D or 3D (Video Swin) windows; mlp is fc2(GELU(fc1(z))) with the exact erf GELU.

    The attention arguments are Layer's (same names, order and meaning); the norms and the MLP are keyword
    arguments. The C library copies every array during construction. forward may be called from several
    threads at once; close() (or leaving a ``with`` block, or garbage collection) waits for running calls
    and frees the C block once, and calls that start afterwards raise ``ValueError("block: the block is
    closed")``. :meth:`from_torchvision` builds a block from a torchvision module in memory.

    Args (beyond Layer's):
        norm1_weight, norm1_bias, norm2_weight, norm2_bias: [C] each (nn.LayerNorm's weight and bias).
        fc1_weight: [hidden][C]; fc2_weight: [C][hidden]; fc1_bias: [hidden] or None; fc2_bias: [C] or None.
        post_norm: False (v1 pre-norm) or True (SwinV2 res-post-norm).
        norm_eps: the LayerNorm epsilon (torchvision: 1e-5).
        num_threads: the block's thread budget (see the num_threads property); None leaves it at 0.
    """

    _noun = "block"
    _destroy = "winattn_block_destroy"

    def __init__(
        self,
        channels,
        num_heads,
        window,
        shift,
        qkv_weight,
        proj_weight,
        qkv_bias=None,
        proj_bias=None,
        relative_position_bias_table=None,
        logit_scale=None,
        cpb_weight1=None,
        cpb_bias1=None,
        cpb_weight2=None,
        *,
        norm1_weight,
        norm1_bias,
        norm2_weight,
        norm2_bias,
        fc1_weight,
        fc2_weight,
        fc1_bias=None,
        fc2_bias=None,
        post_norm=False,
        norm_eps=1e-5,
        compute_dtype="float32",
        num_threads=None,
    ):
        """Validates the shapes and creates the C block (see the class docstring for the arguments)."""
        super().__init__()
        threads = 0 if num_threads is None else _thread_count(num_threads, "num_threads")
        attention, keep, meta = _attention_desc(
            channels, num_heads, window, shift, qkv_weight, proj_weight, qkv_bias, proj_bias,
            relative_position_bias_table, logit_scale, cpb_weight1, cpb_bias1, cpb_weight2, compute_dtype,
        )
        c = meta[0]
        norms = []
        for a, name in ((norm1_weight, "norm1_weight"), (norm1_bias, "norm1_bias"), (norm2_weight, "norm2_weight"),
                        (norm2_bias, "norm2_bias")):
            a = None if a is None else _f32(a, name)
            if a is None or a.shape != (c,):
                raise ValueError("%s: expected shape (%d,), got %s" % (name, c, None if a is None else a.shape))
            norms.append(a)
        w1 = _f32(fc1_weight, "fc1_weight")
        if w1.ndim != 2 or w1.shape[1] != c:
            raise ValueError("fc1_weight: expected shape [hidden][%d], got %s" % (c, tuple(w1.shape)))
        hidden = w1.shape[0]
        w2 = _f32(fc2_weight, "fc2_weight")
        _require_shape(w2, (c, hidden), "fc2_weight")
        b1 = _opt_f32(fc1_bias, "fc1_bias")
        if b1 is not None:
            _require_shape(b1, (hidden,), "fc1_bias")
        b2 = _opt_f32(fc2_bias, "fc2_bias")
        if b2 is not None:
            _require_shape(b2, (c,), "fc2_bias")
        if not isinstance(post_norm, (bool, np.bool_)) and post_norm not in (0, 1):
            raise ValueError("post_norm: expected True or False, got %r" % (post_norm,))
        try:
            eps = float(norm_eps)
        except (TypeError, ValueError):
            raise ValueError("norm_eps: expected a float, got %r" % (norm_eps,)) from None

        desc = _BlockDesc()
        desc.attention = attention
        desc.norm1_weight, desc.norm1_bias, desc.norm2_weight, desc.norm2_bias = (_fp(a) for a in norms)
        desc.norm_eps = eps
        desc.post_norm = 1 if post_norm else 0
        desc.mlp_hidden = hidden
        desc.fc1_weight, desc.fc1_bias, desc.fc2_weight, desc.fc2_bias = _fp(w1), _fp(b1), _fp(w2), _fp(b2)
        desc.num_threads = threads
        desc.flags = 0
        handle = ctypes.c_void_p()
        lib = _lib()
        _check(_optional_fn(lib, "winattn_block_create")(ctypes.byref(desc), ctypes.byref(handle)))
        del keep  # the library copied everything
        self._lib = lib
        self._handle = handle.value
        self._num_threads = threads
        self.channels, self.num_heads, self.window, self.shift, self.is_v2 = meta[0], meta[1], meta[2], meta[3], meta[4]
        self.post_norm = bool(post_norm)
        self.mlp_hidden = hidden

    @classmethod
    def from_torchvision(cls, module, *, num_threads=None):
        """A Block computing what a torchvision SwinTransformerBlock or SwinTransformerBlockV2 (in memory,
        any dtype and device) computes in eval mode: the module's current parameters are copied (as float32).
        The block's MLP must be torchvision's Linear -> GELU (exact, approximate="none") -> Dropout -> Linear
        -> Dropout; anything else raises ValueError."""
        def arr(t):
            return None if t is None else t.detach().cpu().float().numpy()

        post_norm = any(k.__name__ == "SwinTransformerBlockV2" for k in type(module).__mro__)
        attn = module.attn
        linears = [m for m in module.mlp if hasattr(m, "in_features") and hasattr(m, "weight")]
        gelus = [m for m in module.mlp if type(m).__name__ == "GELU"]
        if len(linears) != 2 or len(gelus) != 1 or getattr(gelus[0], "approximate", "none") != "none":
            raise ValueError("module.mlp: expected Linear, GELU (exact), Dropout, Linear, Dropout; got %r" % (module.mlp,))
        if module.norm1.eps != module.norm2.eps:
            raise ValueError("norm1.eps (%g) and norm2.eps (%g) differ" % (module.norm1.eps, module.norm2.eps))
        v2 = hasattr(attn, "logit_scale")
        attention = dict(
            qkv_bias=arr(attn.qkv.bias),
            proj_bias=arr(attn.proj.bias),
        )
        if v2:
            attention.update(
                logit_scale=arr(attn.logit_scale),
                cpb_weight1=arr(attn.cpb_mlp[0].weight),
                cpb_bias1=arr(attn.cpb_mlp[0].bias),
                cpb_weight2=arr(attn.cpb_mlp[2].weight),
            )
        else:
            attention.update(relative_position_bias_table=arr(attn.relative_position_bias_table))
        return cls(
            module.norm1.weight.shape[0],
            attn.num_heads,
            tuple(attn.window_size),
            tuple(attn.shift_size),
            arr(attn.qkv.weight),
            arr(attn.proj.weight),
            norm1_weight=arr(module.norm1.weight),
            norm1_bias=arr(module.norm1.bias),
            norm2_weight=arr(module.norm2.weight),
            norm2_bias=arr(module.norm2.bias),
            fc1_weight=arr(linears[0].weight),
            fc1_bias=arr(linears[0].bias),
            fc2_weight=arr(linears[1].weight),
            fc2_bias=arr(linears[1].bias),
            post_norm=post_norm,
            norm_eps=module.norm1.eps,
            num_threads=num_threads,
            **attention,
        )

    def forward(self, input):
        """Runs the block on input ([B][H][W][C], depth 1, or [B][D][H][W][C]); returns a new float32 array
        of the same shape. ValueError when the block is closed."""
        if self._handle is None:
            raise ValueError("block: the block is closed")
        x = _f32(input, "input")
        batch, grid, channels = _split_input(x)
        if channels != self.channels:
            raise ValueError("input: expected %d channels (last axis), got %d" % (self.channels, channels))
        g = np.array(grid, dtype=np.int64)
        out = np.empty(x.shape, dtype=np.float32)
        with self._borrow() as handle:
            _check(self._lib.winattn_block_forward(handle, _fp(x), batch, _ip(g), _fp(out)))
        return out

    __call__ = forward

    @property
    def num_threads(self):
        """The block's thread budget, as Layer.num_threads: the value last set through this object (0, the
        default, follows set_num_threads). Settable to an int in 0..MAX_THREADS, also while forwards run."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, n):
        n = _thread_count(n, "num_threads")
        with self._borrow() as handle:
            _check(self._lib.winattn_block_set_num_threads(handle, n))
        self._num_threads = n

    def __repr__(self):
        """A short description: channels, heads, window, shift, v1/v2 attention, norm order, closed."""
        return "winattn.Block(channels=%d, num_heads=%d, window=%s, shift=%s, mlp_hidden=%d, %s, %s%s)" % (
            getattr(self, "channels", -1),
            getattr(self, "num_heads", -1),
            getattr(self, "window", None),
            getattr(self, "shift", None),
            getattr(self, "mlp_hidden", -1),
            "v2" if getattr(self, "is_v2", False) else "v1",
            "post-norm" if getattr(self, "post_norm", False) else "pre-norm",
            ", closed" if self.closed else "",
        )


# ---------------------------------------------------------------------------------------------------------
# Whole models: Swin, SwinV2, Video Swin
# ---------------------------------------------------------------------------------------------------------

# Values of the C enum winattn_model_family, by the names ModelInfo.family uses.
_FAMILIES = {1: "swin", 2: "swin_v2", 3: "swin_3d"}

# Largest ndim of a winattn_tensor (its shape has 8 entries).
_MAX_TENSOR_NDIM = 8


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The architecture of a :class:`Model` (winattn_model_get_info), as the library inferred it from the
    state_dict's names and shapes.

    Attributes:
        family: "swin" (Swin v1), "swin_v2" (SwinV2) or "swin_3d" (Video Swin).
        in_channels: the input's channels (3 for RGB).
        num_classes: the classifier's outputs; 0 for a backbone without a head (use :meth:`Model.features`).
        embed_dim: the patch embedding's width (stage 0's channels).
        depths: blocks per stage, one entry per stage.
        num_heads: attention heads per stage, one entry per stage.
        patch: the patch size (depth, height, width); 2D models have depth 1.
        window: the attention window (depth, height, width); 2D models have depth 1.
    """

    family: str
    in_channels: int
    num_classes: int
    embed_dim: int
    depths: tuple
    num_heads: tuple
    patch: tuple
    window: tuple

    @property
    def num_stages(self):
        """The number of stages (len(depths))."""
        return len(self.depths)

    @property
    def is_3d(self):
        """Whether the model takes videos ([B][C][T][H][W]): Video Swin."""
        return self.family == "swin_3d"

    @property
    def stage_channels(self):
        """The channels of each stage's output: embed_dim doubled at every patch merging."""
        return tuple(self.embed_dim << s for s in range(self.num_stages))


def _torch_module():
    """The torch module when the process has imported it, else None (never imports torch: an object can only
    be a torch.Tensor once torch is imported)."""
    return sys.modules.get("torch")


def _is_torch_tensor(x):
    """Whether x is a torch.Tensor (without importing torch)."""
    torch = _torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def _fptr(address):
    """A float* to a raw address (an int), or NULL for None."""
    return None if address is None else ctypes.cast(ctypes.c_void_p(address), _c_float_p)


def _state_dict_entry(name, value):
    """One state_dict entry as (winattn dtype, shape, address, keep-alive object), or None for an integer or
    boolean buffer (skipped: winattn_tensor has no integer dtype). Float tensors keep their dtype when the C
    enum has it (float32, float16, bfloat16); float64 (and numpy's longer floats) are converted to float32.
    Raises ArgumentTypeError for complex, quantized and non-numeric values."""
    torch = _torch_module()
    if torch is not None and isinstance(value, torch.Tensor):
        if getattr(value, "is_quantized", False):
            raise ArgumentTypeError("state_dict[%r]: quantized tensors are not accepted (dtype %s); dequantize "
                                    "them first" % (name, value.dtype))
        if value.is_complex():
            raise ArgumentTypeError("state_dict[%r]: complex tensors are not accepted (dtype %s)" % (name, value.dtype))
        if value.dtype == torch.bool or not value.is_floating_point():
            return None
        if value.is_sparse or getattr(value, "is_meta", False) or value.layout != torch.strided:
            raise ValueError("state_dict[%r]: a %s tensor has no data to read (layout %s%s)"
                             % (name, value.dtype, value.layout, ", meta" if getattr(value, "is_meta", False) else ""))
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # weights are copied by the library anyway
        if t.dtype == torch.float64:
            t = t.to(torch.float32)
        dtypes = {torch.float32: DTYPE_F32, torch.float16: DTYPE_F16, torch.bfloat16: DTYPE_BF16}
        if t.dtype not in dtypes:
            raise ArgumentTypeError("state_dict[%r]: dtype %s is not accepted (float32, float16, bfloat16, float64)"
                                    % (name, t.dtype))
        if hasattr(t, "resolve_neg"):
            t = t.resolve_neg()
        t = t.contiguous()
        return dtypes[t.dtype], tuple(t.shape), (t.data_ptr() if t.numel() else None), t
    a = _array(value, "state_dict[%r]" % (name,))
    kind = a.dtype.kind
    if kind in "iub":
        return None
    if kind == "f":
        if a.dtype.itemsize == 2:
            a = _c_array(a, np.float16)
            code = DTYPE_F16
        else:
            a = _c_array(a, np.float32)
            code = DTYPE_F32
    elif a.dtype.name == "bfloat16" and a.dtype.itemsize == 2:  # ml_dtypes.bfloat16 (and its relatives)
        a = a if a.flags.c_contiguous and a.flags.aligned else np.ascontiguousarray(a)
        code = DTYPE_BF16
    elif kind == "c":
        raise ArgumentTypeError("state_dict[%r]: complex arrays are not accepted (dtype %s)" % (name, a.dtype))
    else:
        raise ArgumentTypeError("state_dict[%r]: expected a real numeric array, got dtype %s" % (name, a.dtype))
    return code, tuple(a.shape), (a.ctypes.data if a.size else None), a


def _module_tensors(module):
    """module.state_dict() plus the module's non-persistent buffers (named_buffers() entries the state_dict
    leaves out), by state_dict name."""
    tensors = dict(module.state_dict().items())
    named_buffers = getattr(module, "named_buffers", None)
    if callable(named_buffers):
        for name, buf in named_buffers():
            if buf is not None and name not in tensors:
                tensors[name] = buf
    return tensors


def _model_options(num_threads, compute_dtype):
    """A filled _ModelOptions (ValueError/WinattnError for bad values, as Layer checks them)."""
    threads = 0 if num_threads is None else _thread_count(num_threads, "num_threads")
    if compute_dtype not in _DTYPES:
        raise ValueError("compute_dtype: expected one of %s, got %r" % (sorted(_DTYPES), compute_dtype))
    options = _ModelOptions()
    options.compute_dtype = _DTYPES[compute_dtype]
    options.num_threads = threads
    options.flags = 0
    return options


class Model(_SharedHandle):
    """A whole Swin network in eval mode (winattn_model): Swin v1, SwinV2 and Video Swin (3D), as torchvision
    and timm define them, built from a state_dict. Inference only: there is no autograd.

    Make one with :meth:`load` (a .safetensors file, e.g. written by ``python3 -m winattn.export``),
    :meth:`from_state_dict` (a mapping of names to torch tensors or numpy arrays) or :meth:`from_torchvision`
    / :meth:`from_module` (a torchvision or timm module in memory); ``Model(source)`` dispatches on the
    source's type. The architecture (``info``, a :class:`ModelInfo`) is inferred by the library from the
    names and shapes; the library copies (or, for a file, maps and copies) everything it needs.

    Inputs: [B][C][H][W] for 2D models and [B][C][T][H][W] for Video Swin (``info.is_3d``), normalised as
    torchvision's transforms leave them, or one unbatched sample ([C][H][W] / [C][T][H][W]), which gives
    unbatched results. numpy arrays (any real dtype, converted to float32 as ``astype`` does) and torch CPU
    tensors are accepted, and the results are of the kind given: a torch tensor in gives float32 torch
    tensors out (fresh tensors allocated by torch, sharing no memory with the library or the input), a numpy
    array gives float32 numpy arrays. A tensor that requires grad is refused (ValueError: run under
    ``torch.no_grad()`` or pass ``x.detach()``), as are tensors on other devices.

    Every call may run concurrently from several threads (the C call runs without the GIL). close() (or
    leaving a ``with`` block, or garbage collection) waits for running calls and frees the C model once;
    later calls raise ``ValueError("model: the model is closed")``.

    Args (of every constructor):
        num_threads: the model's thread budget (see the num_threads property); 0 follows set_num_threads.
        compute_dtype: "float32" (default); "bfloat16" is answered UNSUPPORTED by this library version.
    """

    _noun = "model"
    _destroy = "winattn_model_destroy"

    def __init__(self, source, num_threads=0, *, compute_dtype="float32"):
        """Builds the model from source: a path (str, bytes or os.PathLike) to a .safetensors file, a module
        with a state_dict() method (torchvision or timm), or a mapping of names to tensors."""
        super().__init__()
        if isinstance(source, (str, bytes, os.PathLike)):
            self._create_from_file(source, num_threads, compute_dtype)
        elif callable(getattr(source, "state_dict", None)):
            self._create_from_tensors(_module_tensors(source), num_threads, compute_dtype)
        elif hasattr(source, "items"):
            self._create_from_tensors(source, num_threads, compute_dtype)
        else:
            raise TypeError(
                "source: expected a path to a .safetensors file, a state_dict (a mapping of names to tensors) or "
                "a torch module, got %s" % type(source).__name__
            )

    @classmethod
    def _blank(cls):
        """An instance without a C model yet (the classmethods fill it)."""
        self = cls.__new__(cls)
        _SharedHandle.__init__(self)
        return self

    # ---- construction --------------------------------------------------------------------------------

    @classmethod
    def load(cls, path, num_threads=0, *, compute_dtype="float32"):
        """The model stored in a .safetensors file (winattn_model_load: memory-mapped, every tensor's dtype,
        shape and byte range checked; F32, F16, BF16 or F64 tensors; relative_position_index buffers checked
        against the window). WinattnError with the library's message naming the file and the first tensor
        that does not fit."""
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError("path: expected a str, bytes or os.PathLike, got %s" % type(path).__name__)
        self = cls._blank()
        self._create_from_file(path, num_threads, compute_dtype)
        return self

    @classmethod
    def from_state_dict(cls, state_dict, num_threads=0, *, compute_dtype="float32"):
        """The model a state_dict describes (winattn_model_create; the tensors are copied, the caller may
        change or free them afterwards).

        state_dict maps names (as torchvision or timm write them) to torch tensors (any device) or numpy
        arrays. float32, float16 and bfloat16 tensors are passed with their dtype; float64 ones are converted
        to float32 here (as torch's ``.float()``). Integer and boolean buffers (``relative_position_index``,
        ``num_batches_tracked``, ...) are skipped, because winattn_tensor has no integer dtype: the library
        derives the index from the window. A ``relative_position_index`` buffer of the model's window
        (``info.window``) is still compared here with the index that window implies (ValueError when its
        entries differ, as :meth:`load` refuses such a file); buffers of other sizes (a stage whose window
        timm shrinks) are not checked. Complex and quantized tensors raise ArgumentTypeError.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError("state_dict: expected a mapping of names to tensors, got %s" % type(state_dict).__name__)
        self = cls._blank()
        self._create_from_tensors(state_dict, num_threads, compute_dtype)
        return self

    @classmethod
    def from_torchvision(cls, module, num_threads=0, *, compute_dtype="float32"):
        """The model of a torchvision (swin_t/s/b, swin_v2_*, swin3d_*) or timm (swin_*, swinv2_*) module in
        memory: from_state_dict of module.state_dict() plus the buffers the module registered as
        non-persistent (module.named_buffers() entries missing from the state_dict: timm >= 0.9 leaves out
        relative_coords_table, relative_position_index and attn_mask, and a SwinV2 stage's window is only
        known from its relative_coords_table). The module's current parameters are copied; the library
        computes eval mode whatever module.training says."""
        if not callable(getattr(module, "state_dict", None)):
            raise TypeError("module: expected a torch.nn.Module (with state_dict()), got %s" % type(module).__name__)
        return cls.from_state_dict(_module_tensors(module), num_threads, compute_dtype=compute_dtype)

    from_module = from_torchvision

    def _create_from_file(self, path, num_threads, compute_dtype):
        options = _model_options(num_threads, compute_dtype)
        lib = _lib()
        fn = _optional_fn(lib, "winattn_model_load")
        handle = ctypes.c_void_p()
        _check(fn(os.fsencode(path), ctypes.byref(options), ctypes.byref(handle)))
        self._adopt(lib, handle.value)

    def _create_from_tensors(self, state_dict, num_threads, compute_dtype):
        options = _model_options(num_threads, compute_dtype)
        entries, keep, skipped = [], [], {}
        for name, value in state_dict.items():
            if not isinstance(name, str):
                raise TypeError("state_dict keys must be str, got %r" % (name,))
            encoded = name.encode("utf-8")
            if b"\0" in encoded:
                raise ValueError("state_dict: the name %r holds a NUL character" % (name,))
            entry = _state_dict_entry(name, value)
            if entry is None:
                skipped[name] = value
                continue
            code, shape, address, holder = entry
            if len(shape) > _MAX_TENSOR_NDIM:
                raise ValueError("state_dict[%r]: %d dimensions, at most %d are accepted"
                                 % (name, len(shape), _MAX_TENSOR_NDIM))
            t = _Tensor()
            t.name = encoded
            t.dtype = code
            t.ndim = len(shape)
            t.shape[: len(shape)] = shape
            t.data = address
            entries.append(t)
            keep.append((encoded, holder))
        tensors = (_Tensor * max(len(entries), 1))(*entries)
        lib = _lib()
        fn = _optional_fn(lib, "winattn_model_create")
        handle = ctypes.c_void_p()
        _check(fn(tensors, len(entries), ctypes.byref(options), ctypes.byref(handle)))
        del keep  # the library copied everything
        self._adopt(lib, handle.value)
        try:
            self._check_index_buffers(skipped)
        except BaseException:
            self.close()
            raise

    def _adopt(self, lib, handle):
        """Takes ownership of a new C model and reads its architecture."""
        self._lib = lib
        self._handle = handle
        try:
            raw = _ModelInfo()
            _check(_optional_fn(lib, "winattn_model_get_info")(handle, ctypes.byref(raw)))
            stages = int(raw.num_stages)
            self._info = ModelInfo(
                family=_FAMILIES.get(int(raw.family), "unknown(%d)" % int(raw.family)),
                in_channels=int(raw.in_channels),
                num_classes=int(raw.num_classes),
                embed_dim=int(raw.embed_dim),
                depths=tuple(int(v) for v in raw.depths[:stages]),
                num_heads=tuple(int(v) for v in raw.num_heads[:stages]),
                patch=tuple(int(v) for v in raw.patch),
                window=tuple(int(v) for v in raw.window),
            )
        except BaseException:
            self.close()
            raise

    def _check_index_buffers(self, skipped):
        """Checks the relative_position_index buffers that have the N*N entries of the model's window (info.window,
        stage 0's) against the index that window implies, as winattn_model_load does for a file (the C tensor has
        no integer dtype, so create never sees them): ValueError naming the first whose entries differ. A stage
        whose window is shrunk to its feature size (timm) has a smaller index, which is not checked here; windows
        only shrink, so an index of the full size belongs to the full window."""
        window = self._info.window if self._info.is_3d else self._info.window[1:]
        if any(w < 1 for w in window):
            return
        expected = None
        for name, value in skipped.items():
            if not name.endswith("relative_position_index"):
                continue
            if _is_torch_tensor(value):
                value = value.detach().cpu().numpy()
            a = np.asarray(value)
            if expected is None:
                expected = relative_position_index(window).reshape(-1)
            if a.size != expected.size or a.dtype.kind not in "iu":
                continue
            flat = a.reshape(-1).astype(np.int64)
            if not np.array_equal(flat, expected):
                i = int(np.flatnonzero(flat != expected)[0])
                raise ValueError(
                    "state_dict[%r]: differs from the relative position index of the model's window %s at entry %d "
                    "(%d, expected %d)" % (name, tuple(window), i, int(flat[i]), int(expected[i]))
                )

    # ---- properties ----------------------------------------------------------------------------------

    @property
    def info(self):
        """The architecture (a frozen :class:`ModelInfo`)."""
        return self._info

    @property
    def num_threads(self):
        """The model's thread budget: the most threads one call on it uses, whatever set_num_threads says; 0
        follows set_num_threads. Settable to an int in 0..MAX_THREADS (WinattnError, invalid argument,
        otherwise), also while calls run; calls that start afterwards use the new budget. Results are
        bit-identical for every budget."""
        n = ctypes.c_int(-1)
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_model_get_num_threads")(handle, ctypes.byref(n)))
        return int(n.value)

    @num_threads.setter
    def num_threads(self, n):
        n = _thread_count(n, "num_threads")
        with self._borrow() as handle:
            _check(_optional_fn(self._lib, "winattn_model_set_num_threads")(handle, n))

    # ---- inputs and outputs --------------------------------------------------------------------------

    def _require_open(self):
        if getattr(self, "_handle", None) is None:
            raise ValueError("model: the model is closed")

    def _input(self, x, name="input"):
        """x as (float32 C-contiguous numpy array of [B][C][T][H][W] or [B][C][H][W] (a view when x already is
        one, torch included), is_torch, unbatched, batch, size (frames, height, width))."""
        info = self._info
        is_torch = _is_torch_tensor(x)
        if is_torch:
            torch = _torch_module()
            if x.requires_grad:
                raise ValueError(
                    "%s: the tensor requires grad, but winattn is inference-only (no autograd): call the model "
                    "under torch.no_grad() (or torch.inference_mode()), or pass x.detach()" % name
                )
            if x.device.type != "cpu":
                raise ValueError(
                    "%s: a tensor on device %r; winattn runs on the CPU: pass x.cpu() (results come back on "
                    "the CPU)" % (name, str(x.device))
                )
            if x.is_sparse or getattr(x, "is_quantized", False) or x.layout != torch.strided:
                raise ValueError(
                    "%s: expected a dense float tensor, got layout %s, dtype %s" % (name, x.layout, x.dtype)
                )
            if x.is_complex() or x.dtype == torch.bool:
                raise ArgumentTypeError(
                    "%s: expected a real numeric tensor (float or integer dtype), got dtype %s" % (name, x.dtype)
                )
            t = x if x.dtype == torch.float32 else x.to(torch.float32)
            if hasattr(t, "resolve_neg"):
                t = t.resolve_conj().resolve_neg()
            a = t.contiguous().numpy()
        else:
            a = _f32(x, name)
        rank = 5 if info.is_3d else 4
        layout = "[B][C][T][H][W]" if info.is_3d else "[B][C][H][W]"
        if a.ndim == rank - 1:
            a = a.reshape((1,) + a.shape)
            unbatched = True
        elif a.ndim == rank:
            unbatched = False
        else:
            raise ValueError(
                "%s: expected %s (or one sample, %s) for this %s model, got shape %s"
                % (name, layout, layout.replace("[B]", ""), "3D" if info.is_3d else "2D", tuple(a.shape))
            )
        if a.shape[1] != info.in_channels:
            raise ValueError(
                "%s: expected %d channels (axis %d), got %d (shape %s)"
                % (name, info.in_channels, 0 if unbatched else 1, a.shape[1], tuple(a.shape))
            )
        size = tuple(a.shape[2:]) if info.is_3d else (1,) + tuple(a.shape[2:])
        return a, is_torch, unbatched, a.shape[0], size

    @staticmethod
    def _new_output(shape, is_torch):
        """A fresh float32 output of shape (a torch tensor when is_torch) and its data address."""
        if is_torch:
            torch = _torch_module()
            t = torch.empty(shape, dtype=torch.float32)
            return t, (t.data_ptr() if t.numel() else None)
        a = np.empty(shape, dtype=np.float32)
        return a, a.ctypes.data

    @staticmethod
    def _given_output(out, shape, is_torch, x, name="out"):
        """Checks a caller's output (same kind as the input, float32, C-contiguous, writable, exact shape, not
        overlapping the input) and returns its data address."""
        shape = tuple(shape)
        if is_torch:
            torch = _torch_module()
            if not isinstance(out, torch.Tensor):
                raise TypeError("%s: the input is a torch tensor, so out must be one too, got %s"
                                % (name, type(out).__name__))
            if out.device.type != "cpu" or out.layout != torch.strided:
                raise ValueError("%s: expected a dense CPU tensor, got device %r, layout %s"
                                 % (name, str(out.device), out.layout))
            if out.requires_grad:
                raise ValueError("%s: the tensor requires grad; winattn is inference-only (no autograd): pass a "
                                 "tensor made under torch.no_grad() or out.detach()" % name)
            if out.dtype != torch.float32:
                raise ArgumentTypeError("%s: expected dtype torch.float32, got %s" % (name, out.dtype))
            if tuple(out.shape) != shape:
                raise ValueError("%s: expected shape %s, got %s" % (name, shape, tuple(out.shape)))
            if not out.is_contiguous():
                raise ValueError("%s: expected a contiguous tensor" % name)
            if out.is_neg() if hasattr(out, "is_neg") else False:
                raise ValueError("%s: a negative-bit view cannot be written in place" % name)
            view = out.numpy()
        else:
            if not isinstance(out, np.ndarray):
                raise TypeError("%s: the input is a numpy array, so out must be one too, got %s"
                                % (name, type(out).__name__))
            if out.dtype != np.dtype(np.float32):
                raise ArgumentTypeError("%s: expected dtype float32 (native byte order), got %s" % (name, out.dtype))
            if tuple(out.shape) != shape:
                raise ValueError("%s: expected shape %s, got %s" % (name, shape, tuple(out.shape)))
            if not (out.flags.c_contiguous and out.flags.aligned):
                raise ValueError("%s: expected a C-contiguous, aligned array" % name)
            if not out.flags.writeable:
                raise ValueError("%s: the array is read-only" % name)
            view = out
        if view.size and np.may_share_memory(view, x):
            raise ValueError("%s: overlaps the input" % name)
        return view.ctypes.data if view.size else None

    def _size_array(self, size):
        return np.array(size, dtype=np.int64)

    def _shapes(self, handle, size):
        """The C feature shapes for size (frames, height, width): a list of (frames, height, width, channels)."""
        n = self._info.num_stages
        shapes = np.zeros((max(n, 1), 4), dtype=np.int64)
        s = self._size_array(size)
        _check(_optional_fn(self._lib, "winattn_model_feature_shapes")(handle, _ip(s), _ip(shapes)))
        return [tuple(int(v) for v in row) for row in shapes[:n]]

    # ---- calls ---------------------------------------------------------------------------------------

    def classify(self, x, out=None):
        """The logits of x: [B][num_classes] float32 for [B][C][H][W] (2D) or [B][C][T][H][W] (3D) inputs,
        [num_classes] for one unbatched sample; a torch tensor for a torch input, a numpy array otherwise.

        out: optional preallocated result of the same kind as x (float32, C-contiguous, exactly that shape,
        not overlapping x); written in place and returned. A backbone (num_classes 0) raises ValueError: use
        features(). WinattnError for what the library refuses (e.g. an image smaller than the patch)."""
        self._require_open()
        info = self._info
        if info.num_classes == 0:
            raise ValueError("model: a backbone without a classifier head (num_classes 0): use features()")
        a, is_torch, unbatched, batch, size = self._input(x)
        shape = (info.num_classes,) if unbatched else (batch, info.num_classes)
        if out is None:
            result, address = self._new_output(shape, is_torch)
        else:
            result, address = out, self._given_output(out, shape, is_torch, a)
        s = self._size_array(size)
        with self._borrow() as handle:
            if batch == 0:
                self._shapes(handle, size)  # the size is still checked
            else:
                _check(_optional_fn(self._lib, "winattn_model_classify")(handle, _fp(a), batch, _ip(s), _fptr(address)))
        return result

    __call__ = classify

    def feature_shapes(self, size):
        """The shape of each stage's output for one sample of spatial size `size`, as features() returns them
        (without the batch axis): (H, W, C) for 2D models, given size (H, W); (T, H, W, C) for 3D models,
        given size (T, H, W). 2D models also take (1, H, W). WinattnError for a size the model does not
        accept."""
        self._require_open()
        info = self._info
        if info.is_3d:
            size = _ints(size, "size", (3,))
        else:
            size = _ints(size, "size", (2, 3))
            if len(size) == 3:
                if size[0] != 1:
                    raise ValueError("size: a 2D model takes (H, W) or (1, H, W), got %r" % (size,))
            else:
                size = (1,) + size
        with self._borrow() as handle:
            shapes = self._shapes(handle, size)
        return [sh if info.is_3d else sh[1:] for sh in shapes]

    def features(self, x, stages=None):
        """Each stage's output for x (after its blocks, before the next patch merging; the last stage's before
        the final norm), channels last: a list of [B][H][W][C] arrays for 2D models (the layout of
        torchvision's model.features outputs, features[2*s + 1] for stage s), [B][T][H][W][C] for 3D models;
        without the batch axis for an unbatched input. Torch tensors for a torch input, numpy arrays
        otherwise.

        stages: None for every stage, or an iterable of stage indices; the other entries of the list are
        None (and the model stops after the last stage requested)."""
        self._require_open()
        info = self._info
        n = info.num_stages
        if stages is None:
            wanted = set(range(n))
        else:
            wanted = set()
            for st in (stages if not np.isscalar(stages) else (stages,)):
                st = _int(st, "stages")
                if not 0 <= st < n:
                    raise ValueError("stages: %d is not a stage of this model (0..%d)" % (st, n - 1))
                wanted.add(st)
        a, is_torch, unbatched, batch, size = self._input(x)
        s = self._size_array(size)
        with self._borrow() as handle:
            shapes = self._shapes(handle, size)
            results = []
            pointers = (_c_float_p * max(n, 1))()
            for stage, sh in enumerate(shapes):
                if stage not in wanted:
                    results.append(None)
                    continue
                sample = sh if info.is_3d else sh[1:]
                shape = sample if unbatched else (batch,) + sample
                result, address = self._new_output(shape, is_torch)
                results.append(result)
                pointers[stage] = _fptr(address)
            if batch > 0 and wanted:
                _check(_optional_fn(self._lib, "winattn_model_features")(handle, _fp(a), batch, _ip(s), pointers))
        return results

    def __repr__(self):
        """A short description: family, channels, classes, width, depths, heads, patch, window, closed."""
        info = getattr(self, "_info", None)
        if info is None:
            return "winattn.Model(%s)" % ("closed" if self.closed else "?")
        patch, window = (info.patch, info.window) if info.is_3d else (info.patch[1:], info.window[1:])
        return "winattn.Model(family=%r, in_channels=%d, num_classes=%d, embed_dim=%d, depths=%s, num_heads=%s, " \
               "patch=%s, window=%s%s)" % (
                   info.family, info.in_channels, info.num_classes, info.embed_dim, info.depths, info.num_heads,
                   patch, window, ", closed" if self.closed else "")
