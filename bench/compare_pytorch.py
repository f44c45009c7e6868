#!/usr/bin/python3
"""winattn next to PyTorch, in one process and one run: same shapes, same weights, same thread count.

(a) The attention core: PyTorch eager, exactly as torchvision's shifted_window_attention computes it
    (q * scale @ k^T + bias + mask, softmax, @ v), vs winattn.window_attention.
(b) The layer: torchvision's ShiftedWindowAttention module (eval, float32, no_grad) vs winattn.Layer.forward
    built from the module's state_dict; one SwinV2 (ShiftedWindowAttentionV2) shape too.
(c) AIM's temporal attention (video adapter on ViT-B/16, 196 patches, C 768, 12 heads): PyTorch eager as AIM's
    code computes it on the activation rearranged to [T][B*L][C] (qkv Linear, reshape, q k^T * scale + the
    temporal bias table looked up at t_i - t_j + T - 1, softmax over the frames, @ v, proj) vs winattn.Layer
    with window (T, 1, 1), no shift, fed the same [T][B*L][C] array viewed (no copy) as [1][T][B*L][1][C].
(d) The Swin block: torchvision's SwinTransformerBlock (eval, float32, no_grad) vs winattn.Block built from the
    module in memory (Block.from_torchvision); FLOPs: the layer's plus 2*T*C*4C*2 for the MLP.

Every pair is first checked to agree (max |winattn - torch| / max |torch|), then timed: warm-up, then
interleaved samples (torch, winattn, torch, ...) so that drift on a shared machine hits both alike; the
median per call is reported with GFLOP/s (FLOPs counted as in shared/PERFORMANCE.md) and the speedup
torch time / winattn time.

Run with the system interpreter, which has torch 1.13 and torchvision 0.14 on Debian 12:
    /usr/bin/python3 bench/compare_pytorch.py --threads 1,2
    WINATTN_LIBRARY=build/libwinattn.so /usr/bin/python3 bench/compare_pytorch.py --peak 210
--peak is the 1-thread FMA peak in GFLOP/s (the C++ benchmarks print it); shares are against peak x threads.
"""

import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = 1e-3  # max |diff| / max |reference|; fp32 with different summation orders stays ~1e-6


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--optional", action="store_true",
                   help="exit 0 (after saying so) when torch/torchvision are missing")
    p.add_argument("--peak", type=float, default=0.0,
                   help="1-thread fp32 FMA peak in GFLOP/s, to print shares of peak x threads")
    p.add_argument("--samples", type=int, default=11, help="timed samples per implementation (default 11)")
    p.add_argument("--sample-time", type=float, default=0.02,
                   help="seconds per sample at least; short calls are looped (default 0.02)")
    p.add_argument("--quick", action="store_true", help="5 samples of >= 10 ms: a fast sanity run")
    p.add_argument("--library", default=None, help="path to libwinattn.so (else env WINATTN_LIBRARY, "
                   "else the binding's default)")
    p.add_argument("--only", default="", help="run only cases whose name contains this text")
    args = p.parse_args()
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t]
        if not args.threads or min(args.threads) < 1:
            raise ValueError
    except ValueError:
        p.error("--threads wants a list like 1,2")
    if args.quick:
        args.samples, args.sample_time = 5, 0.01
    return args


def import_torch(optional):
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        from torchvision.models import swin_transformer  # noqa: F401
    except ImportError as e:
        print(f"PyTorch comparison skipped: torch/torchvision not importable by {sys.executable} ({e}).")
        print("Install them (Debian 12): apt-get install python3-torch python3-torchvision python3-numpy")
        print("and run this script with /usr/bin/python3.")
        sys.exit(0 if optional else 1)


def import_winattn(library):
    if library:
        os.environ["WINATTN_LIBRARY"] = os.path.abspath(library)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    try:
        import winattn
    except Exception as e:  # ImportError, or OSError when the library cannot be loaded
        print(f"error: cannot import winattn from {os.path.join(ROOT, 'bindings', 'python')}: {e}")
        print("Build the library first and/or set WINATTN_LIBRARY=/path/to/libwinattn.so")
        sys.exit(1)
    return winattn


# ---- timing -------------------------------------------------------------------------------------------------

def _calls_per_sample(fn, sample_time):
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(math.ceil(sample_time / max(one, 1e-7))))


def time_pair(fa, fb, samples, sample_time):
    """Median seconds per call of fa and fb, sampled alternately after a warm-up."""
    for _ in range(2):
        fa()
        fb()
    na = _calls_per_sample(fa, sample_time)
    nb = _calls_per_sample(fb, sample_time)
    ta, tb = [], []
    for _ in range(samples):
        for fn, n, out in ((fa, na, ta), (fb, nb, tb)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - t0) / n)
    return statistics.median(ta), statistics.median(tb)


def rel_err(got, ref):
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(got - ref))) / scale


# ---- (a) attention core ---------------------------------------------------------------------------------------

# name, images, grid (h, w), window, shift, heads, head_dim: the C++ benchmark's 2D shapes.
ATTN_CASES = [
    ("attn swin_t_s1 B1 n49", 1, (56, 56), 7, 3, 3, 32),
    ("attn swin_t_s1 B8 n49", 8, (56, 56), 7, 3, 3, 32),
    ("attn swinv2_t_s1 B1 n64", 1, (64, 64), 8, 4, 3, 32),
    ("attn swin_b384_s1 B1 n144", 1, (96, 96), 12, 6, 4, 32),
    ("attn swinv2_b_s1 B1 n256", 1, (64, 64), 16, 8, 4, 32),
]


def attention_case(torch, winattn, case, gen):
    name, images, grid, window, shift, heads, head_dim = case
    n = window * window
    nw = (grid[0] // window) * (grid[1] // window)
    windows = images * nw
    q = torch.rand(windows, heads, n, head_dim, generator=gen) * 2 - 1
    k = torch.rand(windows, heads, n, head_dim, generator=gen) * 2 - 1
    v = torch.rand(windows, heads, n, head_dim, generator=gen) * 2 - 1
    bias = (torch.rand(heads, n, n, generator=gen) - 0.5)
    mask = torch.from_numpy(winattn.shifted_window_mask((1, grid[0], grid[1]), (1, window, window),
                                                        (0, shift, shift)))
    scale = head_dim ** -0.5
    qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
    bn, mn = bias.numpy(), mask.numpy()

    def run_torch():
        # torchvision.models.swin_transformer.shifted_window_attention, attention part.
        attn = (q * scale).matmul(k.transpose(-2, -1))
        attn = attn + bias.unsqueeze(0)
        attn = attn.view(images, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = torch.softmax(attn.view(-1, heads, n, n), dim=-1)
        return attn.matmul(v)

    def run_winattn():
        return winattn.window_attention(qn, kn, vn, scale, bias=bn, mask=mn)

    flops = 4.0 * windows * heads * n * n * head_dim
    return name, run_torch, run_winattn, flops


# ---- (b) the layer --------------------------------------------------------------------------------------------

# name, batch, grid (h, w), channels, heads, window, shift, v2
LAYER_CASES = [
    ("layer swin_t_s1 B1", 1, (56, 56), 96, 3, 7, 3, False),
    ("layer swin_t_s1 B8", 8, (56, 56), 96, 3, 7, 3, False),
    ("layer swin_t_s3 B8", 8, (14, 14), 384, 12, 7, 3, False),
    ("layer swinv2_t_s1 B1 (v2)", 1, (64, 64), 96, 3, 8, 4, True),
]


def layer_flops(batch, grid, channels, heads, window):
    ph = -(-grid[0] // window) * window
    pw = -(-grid[1] // window) * window
    t = batch * ph * pw
    n = window * window
    return 2.0 * t * channels * 3 * channels + 2.0 * t * channels * channels + \
        4.0 * (t / n) * heads * n * n * (channels / heads)


def layer_case(torch, winattn, case, gen):
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2
    name, batch, grid, channels, heads, window, shift, v2 = case
    torch.manual_seed(1234)
    cls = ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention
    module = cls(channels, [window, window], [shift, shift], heads).eval()
    sd = {k: t.detach().numpy() for k, t in module.state_dict().items()}
    common = dict(qkv_bias=sd["qkv.bias"], proj_bias=sd["proj.bias"])
    if v2:
        layer = winattn.Layer(channels, heads, (window, window), (shift, shift), sd["qkv.weight"],
                              sd["proj.weight"], logit_scale=sd["logit_scale"].reshape(heads),
                              cpb_weight1=sd["cpb_mlp.0.weight"], cpb_bias1=sd["cpb_mlp.0.bias"],
                              cpb_weight2=sd["cpb_mlp.2.weight"], **common)
    else:
        layer = winattn.Layer(channels, heads, (window, window), (shift, shift), sd["qkv.weight"],
                              sd["proj.weight"], relative_position_bias_table=sd["relative_position_bias_table"],
                              **common)
    x = torch.rand(batch, grid[0], grid[1], channels, generator=gen) * 2 - 1
    xn = x.numpy()

    def run_torch():
        return module(x)

    def run_winattn():
        return layer.forward(xn)

    return name, run_torch, run_winattn, layer_flops(batch, grid, channels, heads, window), layer


# ---- (d) the Swin block ----------------------------------------------------------------------------------------

# name, batch, grid (h, w), channels, heads, window, shift
BLOCK_CASES = [
    ("block swin_t_s1 B1", 1, (56, 56), 96, 3, 7, 3),
    ("block swin_t_s1 B8", 8, (56, 56), 96, 3, 7, 3),
    ("block swin_t_s3 B8", 8, (14, 14), 384, 12, 7, 3),
]


def block_case(torch, winattn, case, gen):
    from torchvision.models.swin_transformer import SwinTransformerBlock
    name, batch, grid, channels, heads, window, shift = case
    torch.manual_seed(1234)
    module = SwinTransformerBlock(channels, heads, [window, window], [shift, shift]).eval()
    block = winattn.Block.from_torchvision(module)
    x = torch.rand(batch, grid[0], grid[1], channels, generator=gen) * 2 - 1
    xn = x.numpy()
    ph, pw = -(-grid[0] // window) * window, -(-grid[1] // window) * window
    flops = layer_flops(batch, grid, channels, heads, window) + 2.0 * batch * ph * pw * channels * 4 * channels * 2

    def run_torch():
        return module(x)

    def run_winattn():
        return block.forward(xn)

    return name, run_torch, run_winattn, flops, block


# ---- (c) AIM temporal attention -------------------------------------------------------------------------------

# name, frames T, clips B, spatial tokens L, channels, heads
TEMPORAL_CASES = [
    ("aim temporal T8 B4 L196 C768", 8, 4, 196, 768, 12),
    ("aim temporal T16 B2 L196 C768", 16, 2, 196, 768, 12),
]


def temporal_flops(frames, clips, tokens, channels, heads):
    t = frames * clips * tokens  # tokens of the activation
    windows = clips * tokens  # one window of T frames per spatial token
    return 2.0 * t * channels * 3 * channels + 2.0 * t * channels * channels + \
        4.0 * windows * heads * frames * frames * (channels / heads)


def temporal_case(torch, winattn, case, gen):
    import torch.nn.functional as F
    name, frames, clips, tokens, channels, heads = case
    hd = channels // heads
    scale = hd ** -0.5
    bound = channels ** -0.5
    qkv_w = (torch.rand(3 * channels, channels, generator=gen) * 2 - 1) * bound
    qkv_b = (torch.rand(3 * channels, generator=gen) * 2 - 1) * 0.1
    proj_w = (torch.rand(channels, channels, generator=gen) * 2 - 1) * bound
    proj_b = (torch.rand(channels, generator=gen) * 2 - 1) * 0.1
    table = (torch.rand(2 * frames - 1, heads, generator=gen) * 2 - 1) * 0.5  # temporal_position_bias_table
    pos = torch.arange(frames)
    t_relative_coords = (pos[:, None] - pos[None, :] + frames - 1).reshape(-1)
    n = clips * tokens
    x = torch.rand(frames, n, channels, generator=gen) * 2 - 1  # AIM's [T][B*L][C]

    def run_torch():
        qkv = F.linear(x, qkv_w, qkv_b).reshape(frames, n, 3, heads, hd).permute(2, 1, 3, 0, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B*L][heads][T][hd]
        bias = table[t_relative_coords].reshape(frames, frames, heads).permute(2, 0, 1)
        attn = (q * scale).matmul(k.transpose(-2, -1)) + bias.unsqueeze(0)
        attn = torch.softmax(attn, dim=-1)
        out = attn.matmul(v).permute(2, 0, 1, 3).reshape(frames, n, channels)
        return F.linear(out, proj_w, proj_b)

    layer = winattn.Layer(channels, heads, (frames, 1, 1), (0, 0, 0), qkv_w.numpy(), proj_w.numpy(),
                          qkv_bias=qkv_b.numpy(), proj_bias=proj_b.numpy(),
                          relative_position_bias_table=table.numpy())
    xv = x.numpy().reshape(1, frames, n, 1, channels)  # a view of the same memory

    def run_winattn():
        return layer.forward(xv).reshape(frames, n, channels)

    return name, run_torch, run_winattn, temporal_flops(frames, clips, tokens, channels, heads), layer


def loaded_blas():
    """The BLAS/LAPACK libraries mapped into this process (resolved), e.g. netlib vs OpenBLAS."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if ("blas" in path or "lapack" in path) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return [os.path.realpath(p) for p in found]


# ---- main -----------------------------------------------------------------------------------------------------

def main():
    args = parse_args()
    import_torch(args.optional)
    import torch
    import torchvision
    winattn = import_winattn(args.library)
    torch.set_grad_enabled(False)

    print(f"winattn {winattn.version()} ({winattn.active_isa()}), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, python {sys.executable}")
    print(f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '')!s} OMP_PLACES={os.environ.get('OMP_PLACES', '')!s}; "
          f"{args.samples} interleaved samples of >= {args.sample_time * 1e3:.0f} ms each, median per call")
    torch.ones(8, 8).matmul(torch.ones(8, 8))  # loads the BLAS torch uses
    blas = loaded_blas()
    print(f"torch BLAS: {', '.join(blas) or 'none loaded'}")
    if blas and not any("openblas" in b or "mkl" in b or "blis" in b for b in blas):
        print("warning: torch runs on the reference (netlib) BLAS here, whose GEMMs reach only a few GFLOP/s;\n"
              "         for a fair peer install an optimised one (Debian: apt-get install libopenblas0-openmp)\n"
              "         or point LD_LIBRARY_PATH at its directory (/usr/lib/x86_64-linux-gnu/openblas-openmp).")
    if args.peak > 0:
        print(f"FMA peak (from the C++ probe): {args.peak:.1f} GFLOP/s per thread; shares are of peak x threads")

    gen = torch.Generator().manual_seed(42)
    cases = []
    for c in ATTN_CASES:
        if args.only in c[0]:
            cases.append(attention_case(torch, winattn, c, gen))
    layers = []
    for c in LAYER_CASES:
        if args.only in c[0]:
            name, ft, fw, flops, layer = layer_case(torch, winattn, c, gen)
            layers.append(layer)
            cases.append((name, ft, fw, flops))
    for c in TEMPORAL_CASES:
        if args.only in c[0]:
            name, ft, fw, flops, layer = temporal_case(torch, winattn, c, gen)
            layers.append(layer)
            cases.append((name, ft, fw, flops))
    for c in BLOCK_CASES:
        if args.only in c[0]:
            name, ft, fw, flops, block = block_case(torch, winattn, c, gen)
            layers.append(block)
            cases.append((name, ft, fw, flops))

    # Agreement first (one thread each; results are thread-count independent).
    torch.set_num_threads(1)
    winattn.set_num_threads(1)
    bad = []
    errors = {}
    for name, ft, fw, _ in cases:
        err = rel_err(fw(), ft().numpy())
        errors[name] = err
        if not err <= TOLERANCE:
            bad.append(name)

    header = "| case | threads | torch ms | torch GFLOP/s | winattn ms | winattn GFLOP/s | speedup | max rel err |"
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- |"
    if args.peak > 0:
        header += " torch % peak | winattn % peak |"
        rule += " --- | --- |"
    print()
    print(header)
    print(rule)
    sys.stdout.flush()
    for threads in args.threads:
        torch.set_num_threads(threads)
        winattn.set_num_threads(threads)
        if torch.get_num_threads() != threads or winattn.get_num_threads() != threads:
            print(f"warning: asked for {threads} threads, torch uses {torch.get_num_threads()}, "
                  f"winattn {winattn.get_num_threads()}")
        for name, ft, fw, flops in cases:
            tt, tw = time_pair(ft, fw, args.samples, args.sample_time)
            gt, gw = flops / tt * 1e-9, flops / tw * 1e-9
            row = (f"| {name} | {threads} | {tt * 1e3:.3f} | {gt:.1f} | {tw * 1e3:.3f} | {gw:.1f} | "
                   f"{tt / tw:.2f}x | {errors[name]:.1e} |")
            if args.peak > 0:
                row += f" {100 * gt / (args.peak * threads):.1f} | {100 * gw / (args.peak * threads):.1f} |"
            print(row)
            sys.stdout.flush()
    for layer in layers:
        layer.close()
    if bad:
        print(f"\nMISMATCH (max rel err > {TOLERANCE:g}): {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
