"""winattn.export: PyTorch weights to safetensors files.

Every file written here is read back by this test's own minimal reader (numpy, written from the published
format) and compared bit for bit with the tensors it came from: torchvision's swin_t (through the command line)
and swin_v2_t (random init, fixed seed), a synthetic state_dict of every dtype, and .pth checkpoints. The layout
of the built-in writer is checked too (header padded with spaces to 8 bytes, names sorted, data aligned).
"""

import json
import os
import subprocess
import sys
import tempfile
import types
import unittest
from unittest import mock

import numpy as np
import torch

from winattn_testutil import REPO

from winattn import export  # noqa: E402  (winattn_testutil puts bindings/python on sys.path)

# numpy dtypes of the format's dtypes (BF16 as its raw 16 bits), little-endian.
NUMPY_OF = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}
TORCH_DTYPE_NAME = {
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


class SafetensorsRead:
    """A safetensors file as this test reads it: header length, the header's keys in order, metadata, the
    parsed entries and the data section."""

    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        self.size = len(raw)
        self.header_length = int.from_bytes(raw[:8], "little")
        self.header_text = raw[8 : 8 + self.header_length]
        self.data = raw[8 + self.header_length :]
        pairs = json.loads(self.header_text.decode("utf-8"), object_pairs_hook=lambda p: p)
        self.keys = [k for k, _ in pairs]
        self.metadata = {}
        self.entries = {}
        for key, value in pairs:
            if key == "__metadata__":
                self.metadata = dict(value)
            else:
                self.entries[key] = dict(value)

    def array(self, name):
        """The tensor's data as a numpy array of the file's dtype (BF16 as uint16), checked against its size."""
        info = self.entries[name]
        begin, end = info["data_offsets"]
        dtype = np.dtype(NUMPY_OF[info["dtype"]])
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert 0 <= begin <= end <= len(self.data), (name, begin, end, len(self.data))
        assert end - begin == count * dtype.itemsize, (name, begin, end, count)
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=begin).reshape(info["shape"])


def raw_bytes(t):
    """The bytes of a torch tensor or numpy array in C order, little-endian (the host is)."""
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t).tobytes()
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


class ExportCase(unittest.TestCase):
    """Shared checks."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="winattn-export-")
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_same_tensors(self, read, state_dict):
        """Every tensor of state_dict is in the file with its dtype, shape and exact bytes, and nothing else."""
        self.assertEqual(sorted(read.entries), sorted(state_dict))
        for name, t in state_dict.items():
            info = read.entries[name]
            if isinstance(t, np.ndarray):
                self.assertEqual(np.dtype(NUMPY_OF[info["dtype"]]).newbyteorder("="), t.dtype, name)
            else:
                self.assertEqual(info["dtype"], TORCH_DTYPE_NAME[t.dtype], name)
            self.assertEqual(info["shape"], list(t.shape), name)
            self.assertEqual(read.array(name).tobytes(), raw_bytes(t), name)

    def assert_layout(self, read):
        """The built-in writer's layout: header padded with spaces to 8 bytes, __metadata__ first, names sorted,
        data back to back, each tensor aligned to its element size, nothing shared."""
        self.assertEqual(read.header_length % 8, 0)
        text = read.header_text.decode("utf-8")
        json_text = text.rstrip(" ")
        self.assertTrue(json_text.startswith("{") and json_text.endswith("}"))
        self.assertLess(len(text) - len(json_text), 8)  # padding: spaces only, fewer than 8
        names = [k for k in read.keys if k != "__metadata__"]
        self.assertEqual(names, sorted(names))
        if "__metadata__" in read.keys:
            self.assertEqual(read.keys[0], "__metadata__")
        ranges = sorted(tuple(e["data_offsets"]) for e in read.entries.values())
        at = 0
        for begin, end in ranges:
            self.assertEqual(begin, at)  # contiguous: no gap, no overlap
            at = end
        self.assertEqual(at, len(read.data))
        for name, info in read.entries.items():
            self.assertEqual(info["data_offsets"][0] % np.dtype(NUMPY_OF[info["dtype"]]).itemsize, 0, name)


def synthetic_state_dict():
    """A small state_dict of every dtype, with special values, a scalar, an empty tensor, a non-contiguous
    tensor and a parameter that requires grad."""
    g = torch.Generator().manual_seed(5)
    every16 = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    f32 = torch.tensor([0.0, -0.0, 1.5, float("inf"), -float("inf"), float("nan"), 1e-45, 3.4e38])
    f32_payload = torch.tensor([0x7FC01234, 0x7F800001, -0x00400001], dtype=torch.int32).view(torch.float32)
    return {
        "blocks.0.weight": torch.nn.Parameter(torch.randn(4, 6, generator=g)),
        "blocks.0.weight_t": torch.randn(6, 4, generator=g).t(),  # not contiguous
        "f32.special": torch.cat([f32, f32_payload]),
        "f16.every": every16.view(torch.float16).reshape(256, 256).clone(),
        "bf16.every": every16.view(torch.bfloat16).clone(),
        "f64": torch.tensor([0.1, -1e300, float("nan"), 5e-324], dtype=torch.float64),
        "i64.index": torch.tensor([[0, -1], [2**63 - 1, -(2**63)]], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 7], dtype=torch.int32),
        "i16": torch.tensor([-5, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "odd_f16": torch.ones(3, dtype=torch.float16),  # 6 bytes: the next tensor must still be aligned
        "numpy.f32": np.arange(5, dtype=np.float32),
        "numpy.u16": np.array([1, 65535], dtype=np.uint16),
        "numpy.big_endian": np.array([1.0, 2.0], dtype=">f4"),
        "caf\u00e9.unicode": torch.ones(1),
    }


class TestBuiltinWriter(ExportCase):
    """export_state_dict with the built-in writer (the safetensors package is not installed here)."""

    def test_every_dtype_round_trips_bit_exactly(self):
        sd = synthetic_state_dict()
        path = export.export_state_dict(sd, self.path("s.safetensors"), metadata={"run": "42"}, use_safetensors=False)
        read = SafetensorsRead(path)
        expected = dict(sd)
        expected["numpy.big_endian"] = sd["numpy.big_endian"].astype("<f4")  # written little-endian
        self.assert_same_tensors(read, expected)
        self.assertEqual(read.array("numpy.big_endian").tolist(), [1.0, 2.0])
        self.assert_layout(read)
        self.assertEqual(read.metadata, {"format": "pt", "run": "42"})
        self.assertEqual(read.entries["scalar"]["shape"], [])
        self.assertEqual(read.entries["empty"]["data_offsets"][0], read.entries["empty"]["data_offsets"][1])
        # NaN payloads survive (the bytes are compared above; say it explicitly for the f32 payloads).
        self.assertEqual(read.array("f32.special").view("<i4")[8:].tolist(), [0x7FC01234, 0x7F800001, -0x00400001])
        self.assertEqual(read.array("bf16.every").tolist(), list(range(32768, 65536)) + list(range(32768)))

    def test_default_writer_without_the_package(self):
        sd = {"a": torch.ones(2, 2), "b": torch.arange(3)}
        with mock.patch.dict(sys.modules, {"safetensors": None, "safetensors.torch": None}):
            export.export_state_dict(sd, self.path("auto.safetensors"))
            with self.assertRaises(ImportError):
                export.export_state_dict(sd, self.path("never.safetensors"), use_safetensors=True)
        export.export_state_dict(sd, self.path("builtin.safetensors"), use_safetensors=False)
        with open(self.path("auto.safetensors"), "rb") as a, open(self.path("builtin.safetensors"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertFalse(os.path.exists(self.path("never.safetensors")))

    def test_uses_the_safetensors_package_when_importable(self):
        calls = []

        def save_file(tensors, filename, metadata=None):
            calls.append((dict(tensors), filename, metadata))
            ptrs = [t.storage().data_ptr() for t in tensors.values() if t.numel()]
            if len(set(ptrs)) != len(ptrs):
                raise RuntimeError("Some tensors share memory")
            for t in tensors.values():
                self.assertTrue(t.is_contiguous())
            entries = {n: (TORCH_DTYPE_NAME[t.dtype], list(t.shape), t.numpy()) for n, t in tensors.items()}
            export._safetensors.write_file(filename, entries, metadata)

        fake = types.ModuleType("safetensors")
        fake.torch = types.ModuleType("safetensors.torch")
        fake.torch.save_file = save_file
        base = torch.arange(8, dtype=torch.float32)
        sd = {"whole": base, "half": base[:4], "t": torch.ones(2, 3).t(), "np": np.arange(3, dtype=np.int64)}
        with mock.patch.dict(sys.modules, {"safetensors": fake, "safetensors.torch": fake.torch}):
            export.export_state_dict(sd, self.path("pkg.safetensors"), metadata={"k": "v"})
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0][2], {"format": "pt", "k": "v"})
        self.assert_same_tensors(SafetensorsRead(self.path("pkg.safetensors")), sd)

    def test_refusals(self):
        out = self.path("bad.safetensors")
        cases = [
            ({"c": torch.ones(2, dtype=torch.complex64)}, None, ValueError, "'c'"),
            ({"s": torch.ones(2).to_sparse()}, None, ValueError, "'s'"),
            ({"__metadata__": torch.ones(1)}, None, ValueError, "reserved"),
            ({1: torch.ones(1)}, None, TypeError, "str"),
            ({"x": [1.0, 2.0]}, None, TypeError, "'x'"),
            ({"x": torch.ones(1)}, {"n": 1}, TypeError, "metadata"),
            ({"x": torch.ones(1)}, {2: "v"}, TypeError, "metadata"),
            ({"x": np.ones(2, dtype=np.complex64)}, None, ValueError, "'x'"),
        ]
        for sd, metadata, error, needle in cases:
            with self.subTest(needle=needle, error=error.__name__):
                with self.assertRaises(error) as ctx:
                    export.export_state_dict(sd, out, metadata=metadata, use_safetensors=False)
                self.assertIn(needle, str(ctx.exception))
        with self.assertRaises(TypeError):
            export.export_state_dict([torch.ones(1)], out)
        self.assertEqual(os.listdir(self.dir), [])  # nothing written, no temporary file left
        with self.assertRaises(OSError):
            export.export_state_dict({"x": torch.ones(1)}, self.path("missing/dir/x.safetensors"))

    def test_checkpoints(self):
        sd = {k: v for k, v in synthetic_state_dict().items() if not k.startswith("numpy")}
        plain = {k: v.detach() for k, v in sd.items()}
        layouts = {
            "plain.pth": (plain, []),
            "state_dict.pth": ({"state_dict": plain, "epoch": 3, "arch": "swin_t"}, []),
            "model.pth": ({"model": plain, "optimizer": {"step": 10}}, []),
            # torch 1.13's weights_only loader refuses Python floats: such files need --unsafe-pickle there.
            "floats.pth": ({"state_dict": plain, "best": 0.5}, ["--unsafe-pickle"]),
            "ema.pth": ({"model": {"x": torch.ones(1)}, "ema": plain}, ["--key", "ema"]),
            "ddp.pth": ({"state_dict": {"module." + k: v for k, v in plain.items()}}, ["--strip-prefix", "module."]),
        }
        for name, (obj, flags) in layouts.items():
            with self.subTest(checkpoint=name):
                torch.save(obj, self.path(name))
                out = self.path(name + ".safetensors")
                with mock.patch("sys.stdout"):
                    self.assertEqual(export.main([self.path(name), out] + flags), 0)
                read = SafetensorsRead(out)
                self.assert_same_tensors(read, plain)
                self.assertEqual(read.metadata["source"], self.path(name))

        # A pickled module needs --unsafe-pickle (weights_only=True refuses it).
        linear = torch.nn.Linear(3, 2)
        torch.save(linear, self.path("module.pth"))
        with mock.patch("sys.stderr") as err:
            self.assertEqual(export.main([self.path("module.pth"), self.path("m.safetensors")]), 1)
        self.assertIn("--unsafe-pickle", "".join(str(c) for c in err.mock_calls))
        with mock.patch("sys.stdout"):
            self.assertEqual(export.main([self.path("module.pth"), self.path("m.safetensors"), "--unsafe-pickle"]), 0)
        self.assert_same_tensors(SafetensorsRead(self.path("m.safetensors")), linear.state_dict())

        # Not a state_dict, and bad command lines.
        torch.save({"epoch": 3}, self.path("nothing.pth"))
        with mock.patch("sys.stderr") as err:
            self.assertEqual(export.main([self.path("nothing.pth"), self.path("n.safetensors")]), 1)
        self.assertIn("--key", "".join(str(c) for c in err.mock_calls))
        for argv in (
            [self.path("plain.pth")],
            ["--torchvision", "swin_t"],
            ["--torchvision", "swin_t", "a", "b"],
            ["--torchvision", "swin_t", "out", "--seed", "3"],
            [self.path("plain.pth"), "out", "--random-init"],
            [self.path("plain.pth"), "out", "--metadata", "novalue"],
        ):
            with self.subTest(argv=argv), mock.patch("sys.stderr"):
                with self.assertRaises(SystemExit) as ctx:
                    export.main(argv)
                self.assertEqual(ctx.exception.code, 2)
        with mock.patch("sys.stderr") as err:
            self.assertEqual(export.main(["--torchvision", "no_such_model", "out", "--random-init"]), 1)
        self.assertIn("swin_t", "".join(str(c) for c in err.mock_calls))


class TestTorchvisionSwin(ExportCase):
    """torchvision's Swin models, random init with a fixed seed (no pretrained weights offline)."""

    def check_swin(self, read, sd, name):
        self.assert_same_tensors(read, sd)
        self.assert_layout(read)
        self.assertEqual(read.metadata["source"], "torchvision.models." + name)
        self.assertEqual(read.metadata["format"], "pt")
        index_names = [k for k in sd if k.endswith("relative_position_index")]
        self.assertGreater(len(index_names), 0)
        for k in index_names:
            self.assertEqual(read.entries[k]["dtype"], "I64")

    def test_swin_t_from_the_command_line(self):
        out = self.path("swin_t.safetensors")
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"))
        proc = subprocess.run(
            [sys.executable, "-m", "winattn.export", "--torchvision", "swin_t", out, "--random-init", "--seed", "7",
             "--metadata", "note=test"],
            env=env, cwd=self.dir, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("wrote", proc.stdout)
        sd, _ = export.torchvision_state_dict("swin_t", random_init=True, seed=7)
        read = SafetensorsRead(out)
        self.check_swin(read, sd, "swin_t")
        self.assertEqual(read.metadata["note"], "test")
        self.assertIn("manual_seed(7)", read.metadata["weights"])
        self.assertEqual(read.entries["features.1.0.attn.relative_position_bias_table"]["shape"], [169, 3])
        self.assertEqual(read.entries["features.1.0.attn.relative_position_index"]["shape"], [49 * 49])
        self.assertGreater(read.size, 100 * 2**20)

    def test_swin_v2_t(self):
        sd, metadata = export.torchvision_state_dict("swin_v2_t", random_init=True, seed=3)
        out = export.export_state_dict(sd, self.path("swin_v2_t.safetensors"), metadata=metadata)
        read = SafetensorsRead(out)
        self.check_swin(read, sd, "swin_v2_t")
        self.assertEqual(read.entries["features.1.0.attn.relative_coords_table"]["dtype"], "F32")
        self.assertEqual(read.entries["features.1.0.attn.logit_scale"]["shape"], [3, 1, 1])


if __name__ == "__main__":
    unittest.main()
