"""A small writer of the safetensors format, used by :mod:`winattn.export` when the ``safetensors`` package is
not importable.

The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header length N, N
bytes of UTF-8 JSON, then the data. The JSON object maps each tensor name to
``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets relative to the first byte after
the header) and may hold a ``"__metadata__"`` object of string values. Data is little-endian, row-major.

What this writer produces:

- the header lists ``__metadata__`` first (when there is metadata), then the tensors sorted by name, as
  compact JSON (no spaces; names in UTF-8, not escaped);
- the header is padded with spaces to a multiple of 8 bytes, as the reference implementation does, so the
  data section starts 8-byte aligned;
- the data section holds the tensors back to back, ordered by element size (largest first) and then by name,
  so that every tensor is aligned to its element size within the file;
- the file is written to a temporary name in the same directory and renamed into place: a failed export
  leaves no partial file behind.

This module needs numpy only; :mod:`winattn.export` turns torch tensors into numpy arrays first.
"""

import json
import os
import secrets
import sys

import numpy as np

__all__ = ["DTYPE_SIZES", "write_file"]

# Element size of every dtype this writer accepts, by the name the format uses.
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}

_ALIGN = 8


def _check_metadata(metadata):
    """metadata as a dict of str to str (TypeError naming the offending entry otherwise)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError("metadata: expected a dict of str to str, got %s" % type(metadata).__name__)
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                "metadata: keys and values must be str, got %r: %r (%s)" % (key, value, type(value).__name__)
            )
    return dict(metadata)


def _little_endian_bytes(name, dtype, shape, array):
    """The array's data as a flat, C-ordered, little-endian uint8 array, checked against dtype and shape."""
    a = np.asarray(array)
    # The element size must match the dtype the file will say; the shape is the caller's (bf16 comes as int16).
    if a.dtype.itemsize != DTYPE_SIZES[dtype]:
        raise ValueError(
            "tensor %r: %s has %d-byte elements, numpy array has %d-byte %s"
            % (name, dtype, DTYPE_SIZES[dtype], a.dtype.itemsize, a.dtype)
        )
    count = 1
    for d in shape:
        count *= d
    if a.size != count:
        raise ValueError("tensor %r: shape %s holds %d elements, the array %d" % (name, list(shape), count, a.size))
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a).reshape(-1)
    return a.view(np.uint8)


def write_file(path, tensors, metadata=None):
    """Writes a safetensors file.

    Args:
        path: the file to write (replaced atomically when it exists).
        tensors: a dict mapping each name (str, not "__metadata__") to a tuple ``(dtype, shape, array)``:
            dtype one of :data:`DTYPE_SIZES`' keys, shape a sequence of non-negative ints, array a numpy array
            whose elements, in C order, are the tensor's (for BF16: an int16 or uint16 array of the bits).
        metadata: None or a dict of str to str, stored as "__metadata__".

    Returns:
        The number of bytes written.

    Raises:
        TypeError: a name or metadata entry that is not a str.
        ValueError: an unknown dtype, a bad shape, an array that does not match its dtype and shape.
    """
    metadata = _check_metadata(metadata)
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError("tensor names must be str, got %r" % (name,))
        if name == "__metadata__":
            raise ValueError('tensor name "__metadata__" is reserved for the metadata')
        dtype, shape, array = value
        if dtype not in DTYPE_SIZES:
            raise ValueError("tensor %r: dtype %r is not one of %s" % (name, dtype, ", ".join(DTYPE_SIZES)))
        shape = [int(d) for d in shape]
        if any(d < 0 for d in shape):
            raise ValueError("tensor %r: negative dimension in shape %s" % (name, shape))
        entries.append((name, dtype, shape, _little_endian_bytes(name, dtype, shape, array)))

    # Data: largest elements first, then by name; every offset stays a multiple of its element size.
    layout = sorted(entries, key=lambda e: (-DTYPE_SIZES[e[1]], e[0]))
    offsets = {}
    at = 0
    for name, _, _, data in layout:
        offsets[name] = (at, at + data.size)
        at += data.size

    header = {}
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, _ in sorted(entries, key=lambda e: e[0]):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": list(offsets[name])}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((_ALIGN - len(text) % _ALIGN) % _ALIGN)

    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for _, _, _, data in layout:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return 8 + len(text) + at


def _create_beside(path):
    """Creates a new, empty temporary file in path's directory (mode 0666 less the umask, like open(path, "wb")
    would) and returns (fd, its path)."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(directory, ".%s.%d.%s.tmp" % (base, os.getpid(), secrets.token_hex(4)))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError("cannot create a temporary file next to %s" % path)
