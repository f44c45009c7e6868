#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_capi into fuzz/corpus/ (run from anywhere; deterministic).

Each seed is an op selector byte (op = byte % 11, see LLVMFuzzerTestOneInput) followed by bytes below 192,
which the harness decodes as small valid shapes, few NULLs and plain data, so the fuzzer starts from calls
that succeed and mutates towards edge cases. The last seeds chain several ops."""
import os
import random

OPS = ["misc", "isa", "threads", "rel_index", "rel_bias", "rel_bias_bwd", "cpb_table", "mask",
       "window_attention", "stateless_layer", "layer"]


def body(rng, length):
    return bytes(rng.randrange(0, 192) for _ in range(length))


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240611)
    for op, name in enumerate(OPS):
        for k in range(2):
            data = bytes([op]) + body(rng, 48 + 32 * k)
            with open(os.path.join(out, f"{op:02d}_{name}_{k}"), "wb") as f:
                f.write(data)
    for k in range(3):
        data = b"".join(bytes([rng.randrange(0, 11)]) + body(rng, 40) for _ in range(4))
        with open(os.path.join(out, f"chain_{k}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
