#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_capi into fuzz/corpus/ (run from anywhere; deterministic).

An input's first byte picks the target (byte % 10, see targets.h). Target 0 ("api") is a program of ops
(op = byte % 11, see target_api.cpp): its seeds are an op selector byte followed by bytes below 192, which
decode as small valid shapes, few NULLs and plain data; the chain seeds run several ops. The other targets
get seeds of plain bytes below 192 of a few lengths. Target 9 ("model") also gets seeds whose leading bytes
pick each naming scheme (torchvision, timm, torchvision Video Swin, Video Swin), SwinV2, the create and the
file path, with and without mutations (see target_model.cpp: path, scheme, flags, dims, ..., mutation count).
The fuzzer mutates towards edge cases from there.
The other files in corpus/ (named by their SHA-1) are inputs a long run kept (libFuzzer -merge=1), so that the
short CI run starts from wider coverage; this script leaves them alone."""
import os
import random

OPS = ["misc", "isa", "threads", "rel_index", "rel_bias", "rel_bias_bwd", "cpb_table", "mask",
       "window_attention", "stateless_layer", "layer"]
TARGETS = ["api", "threads", "alias", "lifecycle", "cache", "layer", "shapes", "concurrency", "faults",
           "model"]


def body(rng, length):
    return bytes(rng.randrange(0, 192) for _ in range(length))


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    rng = random.Random(20240611)
    for op, name in enumerate(OPS):
        for k in range(2):
            write(f"0_api_{op:02d}_{name}_{k}", bytes([0, op]) + body(rng, 48 + 32 * k))
    for k in range(3):
        write(f"0_api_chain_{k}", bytes([0]) + b"".join(bytes([rng.randrange(0, 11)]) + body(rng, 40)
                                                        for _ in range(4)))
    rng = random.Random(20261130)
    for target, name in enumerate(TARGETS):
        if target == 0:
            continue
        for k, length in enumerate((24, 64, 160)):
            write(f"{target}_{name}_{k}", bytes([target]) + body(rng, length))
    # target_model: path (3 mod 4: a safetensors file), scheme (< 144 torchvision, < 200 timm, < 228
    # torchvision Video Swin, else Video Swin), flags (% 3 == 0: SwinV2 for 2D schemes), cin/patch, depths/
    # heads, hidden/classes, buffers, two windows, cpb/dtype, scale, data seed (2 bytes), mutations (% 8 >= 4:
    # that many minus 3).
    rng = random.Random(20261201)
    model = TARGETS.index("model")
    for scheme, tag in ((10, "tv"), (150, "timm"), (210, "tv3d"), (240, "videoswin")):
        for v2 in ((False, True) if scheme < 200 else (False,)):
            for path in (0, 3):
                flags = rng.randrange(0, 64) * 3 + (0 if v2 else 1)
                head = [path, scheme, flags] + [rng.randrange(0, 192) for _ in range(8)] + [1, 2]
                for mutations in (0, 5):
                    data = bytes([model] + head + [mutations]) + body(rng, 40)
                    write(f"{model}_model_{tag}{'_v2' if v2 else ''}_{'file' if path == 3 else 'create'}"
                          f"{'_mut' if mutations else ''}", data)


if __name__ == "__main__":
    main()
