"""Exports PyTorch weights to a safetensors file, the weights format winattn reads.

Command line (with ``bindings/python`` on ``sys.path``, e.g. ``PYTHONPATH=bindings/python``)::

    python3 -m winattn.export --torchvision swin_t OUT.safetensors --random-init --seed 0
    python3 -m winattn.export CHECKPOINT.pth OUT.safetensors [--key ema] [--strip-prefix module.]

The first form builds a torchvision model (``swin_t``, ``swin_s``, ``swin_b``, ``swin_v2_t``, ... : any model
builder torchvision has) and writes its ``state_dict()``: with ``--random-init``, the weights are
torchvision's own initialisation after ``torch.manual_seed(seed)`` (deterministic for a given torch version);
without it, torchvision's default pretrained weights, which must already be in the torch hub cache when the
machine is offline. The second form reads a checkpoint saved with ``torch.save``: a state_dict, a dict that
holds one under ``"state_dict"``, ``"model"`` or ``"model_state_dict"`` (or under ``--key``), or a pickled
``nn.Module``. Checkpoints are loaded with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only; ``--unsafe-pickle`` allows arbitrary objects (and code execution: only for files you trust).

Everything the state_dict holds is written, buffers included (``relative_position_index`` as I64,
``relative_coords_table``, ...), with the tensor's own dtype: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL.

The ``safetensors`` package writes the file when it is importable; otherwise :mod:`winattn._safetensors` does
(header sorted by name and padded with spaces to 8 bytes, data little-endian). Both write the published format.

From Python::

    from winattn.export import export_state_dict
    export_state_dict(model.state_dict(), "model.safetensors", metadata={"source": "my run 42"})
"""

import argparse
import sys

import numpy as np

from winattn import _safetensors

__all__ = [
    "export_state_dict",
    "torchvision_state_dict",
    "load_checkpoint_state_dict",
    "main",
]

# Keys under which training scripts commonly store the model's state_dict in a checkpoint dict.
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")

_NUMPY_DTYPES = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint64): "U64",
    np.dtype(np.uint32): "U32",
    np.dtype(np.uint16): "U16",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}


def _torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_dtypes(torch):
    """torch dtype -> safetensors dtype name, for the dtypes torch and the format share."""
    return {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }


def _plain_tensor(torch, name, value):
    """value (a torch tensor) detached, on the CPU and contiguous; ValueError for layouts without plain data."""
    if value.is_sparse or getattr(value, "is_quantized", False) or getattr(value, "is_meta", False):
        raise ValueError("tensor %r: %s tensors cannot be written (layout %s)" % (name, value.dtype, value.layout))
    return value.detach().cpu().contiguous()


def _entries(state_dict):
    """state_dict as {name: (dtype name, shape, numpy array of the bytes)} for the built-in writer."""
    torch = _torch()
    entries = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError("state_dict keys must be str, got %r" % (name,))
        if torch is not None and isinstance(value, torch.Tensor):
            dtypes = _torch_dtypes(torch)
            if value.dtype not in dtypes:
                raise ValueError(
                    "tensor %r: dtype %s has no safetensors equivalent here (supported: %s)"
                    % (name, value.dtype, ", ".join(str(d) for d in dtypes))
                )
            t = _plain_tensor(torch, name, value)
            shape = list(t.shape)
            array = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
            entries[name] = (dtypes[t.dtype], shape, array)
        elif isinstance(value, np.ndarray):
            if value.dtype.newbyteorder("=") not in _NUMPY_DTYPES:
                raise ValueError("tensor %r: numpy dtype %s has no safetensors equivalent" % (name, value.dtype))
            entries[name] = (_NUMPY_DTYPES[value.dtype.newbyteorder("=")], list(value.shape), value)
        else:
            raise TypeError(
                "state_dict[%r]: expected a torch.Tensor or numpy.ndarray, got %s" % (name, type(value).__name__)
            )
    return entries


def _safetensors_torch():
    """safetensors.torch when the safetensors package is importable, else None."""
    try:
        import safetensors.torch as st_torch
    except ImportError:
        return None
    return st_torch


def _save_with_package(st_torch, torch, state_dict, path, metadata):
    """Writes state_dict with safetensors.torch.save_file. Tensors are made contiguous CPU tensors; the package
    refuses tensors that share memory, so those (tied weights, views of one buffer) are copied first."""
    tensors = {}
    for name, value in state_dict.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        tensors[name] = _plain_tensor(torch, name, value)
    by_storage = {}
    for name, t in tensors.items():
        if t.numel() > 0:
            storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
            by_storage.setdefault(storage.data_ptr(), []).append(name)
    for names in by_storage.values():
        for name in names[1:]:
            tensors[name] = tensors[name].clone()
    st_torch.save_file(tensors, path, metadata=metadata)


def export_state_dict(state_dict, path, metadata=None, use_safetensors=None):
    """Writes every tensor of state_dict to path in the safetensors format.

    Args:
        state_dict: a mapping of str to torch.Tensor (any device, any layout torch can make contiguous;
            dtypes float64/32/16, bfloat16, int64/32/16/8, uint8, bool) or to numpy arrays. Buffers such as
            ``relative_position_index`` are written like parameters.
        path: the output file, replaced if it exists.
        metadata: None or a dict of str to str, stored in the header's "__metadata__"; ``"format": "pt"`` is
            added unless given (the convention of files written from PyTorch).
        use_safetensors: None (default) writes with the ``safetensors`` package when it is importable and with
            the built-in writer otherwise; True requires the package (ImportError without it); False always
            uses the built-in writer.

    Returns:
        The path written.

    Raises:
        TypeError: a key that is not a str, a value that is not a tensor or array, metadata that is not str to
            str.
        ValueError: a dtype the format does not have (complex, quantized), a sparse tensor, the reserved name
            "__metadata__".
    """
    if not hasattr(state_dict, "items"):
        raise TypeError("state_dict: expected a mapping of names to tensors, got %s" % type(state_dict).__name__)
    meta = {"format": "pt"}
    meta.update(_safetensors._check_metadata(metadata))
    path = str(path)
    st_torch = None
    if use_safetensors is None or use_safetensors:
        st_torch = _safetensors_torch()
        if st_torch is None and use_safetensors:
            raise ImportError("use_safetensors=True: the safetensors package is not importable")
    torch = _torch()
    if st_torch is not None and torch is not None:
        for name in state_dict:
            if not isinstance(name, str):
                raise TypeError("state_dict keys must be str, got %r" % (name,))
            if name == "__metadata__":
                raise ValueError('tensor name "__metadata__" is reserved for the metadata')
        _entries(state_dict)  # the same dtype and type checks as the built-in writer
        _save_with_package(st_torch, torch, state_dict, path, meta)
    else:
        _safetensors.write_file(path, _entries(state_dict), meta)
    return path


def torchvision_state_dict(name, random_init=True, seed=0):
    """The state_dict of torchvision.models.<name> (e.g. "swin_t", "swin_v2_t").

    With random_init, the model is built without weights after ``torch.manual_seed(seed)``: the same seed
    gives the same tensors for a given torch and torchvision version. Otherwise torchvision's default
    pretrained weights are loaded (from the torch hub cache, or downloaded).

    Returns (state_dict, metadata) where metadata describes the source for the file's header.
    """
    import torch
    import torchvision

    builder, where = None, None
    for module in (torchvision.models, getattr(torchvision.models, "video", None)):
        candidate = getattr(module, name, None) if module is not None and not name.startswith("_") else None
        if callable(candidate) and not isinstance(candidate, type):
            builder, where = candidate, module.__name__
            break
    if builder is None:
        models = torchvision.models
        swins = sorted(n for n in dir(models) if n.startswith("swin") and callable(getattr(models, n)))
        raise ValueError(
            "torchvision %s has no model builder %r (Swin models it has: %s)"
            % (torchvision.__version__, name, ", ".join(swins) or "none")
        )
    metadata = {
        "source": "%s.%s" % (where, name),
        "torch_version": str(torch.__version__),
        "torchvision_version": str(torchvision.__version__),
    }
    if random_init:
        torch.manual_seed(int(seed))
        model = builder(weights=None)
        metadata["weights"] = "random init, torch.manual_seed(%d)" % int(seed)
    else:
        try:
            model = builder(weights="DEFAULT")
        except Exception as exc:  # offline, no cached file, no weights for this builder
            raise RuntimeError(
                "cannot load the pretrained weights of %s.%s (%s: %s); on a machine without them use "
                "--random-init" % (where, name, type(exc).__name__, exc)
            ) from exc
        metadata["weights"] = "torchvision DEFAULT"
    if not isinstance(model, torch.nn.Module):
        raise ValueError("%s.%s is not a model builder (it returned a %s)" % (where, name, type(model).__name__))
    model.eval()
    return model.state_dict(), metadata


def load_checkpoint_state_dict(path, key=None, unsafe_pickle=False):
    """The state_dict saved in a torch.save file: the object itself when it is a dict of tensors, its
    ``state_dict()`` when it is an nn.Module, else what it holds under `key` or the first of
    CHECKPOINT_KEYS it has (followed the same way).

    ``unsafe_pickle=False`` loads with ``weights_only=True`` (tensors and plain containers only); True allows
    any pickled object (and so code execution from the file).
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except TypeError:  # a torch older than 1.13 has no weights_only
        if not unsafe_pickle:
            raise RuntimeError("this torch has no torch.load(weights_only=...): pass --unsafe-pickle to load %s" % path)
        obj = torch.load(path, map_location="cpu")
    except Exception as exc:
        if unsafe_pickle:
            raise
        raise RuntimeError(
            "cannot load %s with torch.load(weights_only=True) (%s: %s); if the file is trusted, pass "
            "--unsafe-pickle" % (path, type(exc).__name__, exc)
        ) from exc
    return _find_state_dict(torch, obj, key, path)


def _find_state_dict(torch, obj, key, where):
    """The state_dict inside a loaded checkpoint (see load_checkpoint_state_dict)."""
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError("%s: holds a %s, not a state_dict or checkpoint dict" % (where, type(obj).__name__))
    if key is not None:
        if key not in obj:
            raise ValueError("%s: no key %r (keys: %s)" % (where, key, ", ".join(map(repr, list(obj)[:20]))))
        return _find_state_dict(torch, obj[key], None, "%s[%r]" % (where, key))
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for k in CHECKPOINT_KEYS:
        if k in obj:
            return _find_state_dict(torch, obj[k], None, "%s[%r]" % (where, k))
    raise ValueError(
        "%s: not a state_dict (values that are not tensors) and none of the keys %s; name the entry with --key "
        "(keys: %s)" % (where, ", ".join(CHECKPOINT_KEYS), ", ".join(map(repr, list(obj)[:20])))
    )


def _strip_prefix(state_dict, prefix):
    """state_dict with `prefix` removed from the names that start with it (e.g. DataParallel's "module.")."""
    out = {}
    for name, value in state_dict.items():
        new = name[len(prefix):] if name.startswith(prefix) else name
        if new in out:
            raise ValueError("--strip-prefix %r: two tensors would be called %r" % (prefix, new))
        out[new] = value
    return out


def main(argv=None):
    """The command line; returns the exit status (0, or 1 with a message on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python3 -m winattn.export",
        description="Write PyTorch weights (a torchvision model or a torch.save checkpoint) as a safetensors file.",
        epilog="examples: python3 -m winattn.export --torchvision swin_t swin_t.safetensors --random-init --seed 0"
        " | python3 -m winattn.export checkpoint.pth model.safetensors",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="CHECKPOINT OUT, or OUT with --torchvision")
    parser.add_argument("--torchvision", metavar="NAME", help="a torchvision model builder, e.g. swin_t, swin_v2_t")
    parser.add_argument("--random-init", action="store_true", help="torchvision: random weights, not pretrained")
    parser.add_argument("--seed", type=int, default=None, help="torchvision --random-init: torch.manual_seed (0)")
    parser.add_argument(
        "--key", help="checkpoint: the entry holding the state_dict (default: %s)" % "/".join(CHECKPOINT_KEYS)
    )
    parser.add_argument("--strip-prefix", metavar="PREFIX", help='remove PREFIX from tensor names, e.g. "module."')
    parser.add_argument("--unsafe-pickle", action="store_true", help="checkpoint: allow arbitrary pickled objects")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="add a __metadata__ entry (repeatable)"
    )
    args = parser.parse_args(argv)

    if args.torchvision is not None:
        if len(args.paths) != 1:
            parser.error("with --torchvision, give only OUT (got %d paths)" % len(args.paths))
        if args.key or args.unsafe_pickle:
            parser.error("--key and --unsafe-pickle apply to checkpoints, not --torchvision")
        if args.seed is not None and not args.random_init:
            parser.error("--seed needs --random-init")
        out = args.paths[0]
    else:
        if len(args.paths) != 2:
            parser.error("give CHECKPOINT OUT, or --torchvision NAME OUT (got %d paths)" % len(args.paths))
        if args.random_init or args.seed is not None:
            parser.error("--random-init and --seed apply to --torchvision")
        out = args.paths[1]
    extra = {}
    for item in args.metadata:
        if "=" not in item:
            parser.error("--metadata %r: expected KEY=VALUE" % item)
        k, v = item.split("=", 1)
        extra[k] = v

    try:
        if args.torchvision is not None:
            state_dict, metadata = torchvision_state_dict(
                args.torchvision, random_init=args.random_init, seed=args.seed or 0
            )
        else:
            state_dict = load_checkpoint_state_dict(args.paths[0], key=args.key, unsafe_pickle=args.unsafe_pickle)
            metadata = {"source": args.paths[0]}
        if args.strip_prefix:
            state_dict = _strip_prefix(state_dict, args.strip_prefix)
        metadata.update(extra)
        export_state_dict(state_dict, out, metadata=metadata)
    except (OSError, ValueError, TypeError, RuntimeError, ImportError) as exc:
        print("winattn.export: error: %s" % exc, file=sys.stderr)
        return 1
    count = sum(int(np.prod(v.shape)) for v in state_dict.values())
    print("wrote %s: %d tensors, %d elements" % (out, len(state_dict), count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
