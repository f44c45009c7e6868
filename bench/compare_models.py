#!/usr/bin/python3
"""Whole Swin models: winattn next to torchvision eager and ONNX Runtime, in one run with the same inputs, the
same weights and the same thread count.

Implementations (each case runs all three, interleaved: one sample of each in turn, so that drift on a shared
machine hits them alike; the median per call is reported):
  winattn       winattn.Model (the Python binding over winattn_model_*) built from the torch module's state_dict,
                in this process.
  torch         torchvision's model (swin_t, swin_v2_t) in eval mode under torch.no_grad(), in this process,
                torch.set_num_threads(threads). torchvision 0.14 has no swin3d_t: for it the peer is the PyTorch
                reference module VideoSwin3D of tests/python/reference_models.py (torchvision swin3d_t's
                semantics and names), labelled "PyTorch reference (eager)".
  ONNX Runtime  the same torch module exported with torch.onnx.export (opset 17, static shapes) to a temp file
                and run by onnxruntime-node (CPU provider; intraOpNumThreads = threads, interOpNumThreads 1,
                sequential execution, all graph optimisations) in a node child process that stays up for the
                case and times each call itself. torch 1.13 cannot export SwinV2 (aten::zero): that peer is
                then reported as skipped, as it is when node or onnxruntime-node is missing.
Besides the models, two layer cases (torchvision's ShiftedWindowAttention module vs winattn.Layer, as
compare_pytorch.py builds them) go through the same three implementations, for the chart's layer panel.

Weights: reference_models.init_random_ (deterministic, non-degenerate outputs) on the torch module; the same
state_dict goes to winattn and into the ONNX file. Inputs: uniform [-1, 1), one fixed array per case.
Agreement: max |x - torch| / max |torch| over the logits (winattn and ORT against torch), from the same input.

FLOPs: 2 x multiply-adds of every GEMM (patch embedding, qkv, proj, fc1, fc2, patch merging, head) plus the
attention core 4 * windows * heads * N^2 * head_dim; qkv, proj and the core on tokens padded to whole windows,
the MLP on the real tokens (as bench/bench_model.cpp counts; swin_t at 224 is 8.98 GFLOP per image).
Peak: the C++ benchmarks' FMA probe (fp32 FMAs on 12 independent chains, fastest of 9 runs; bench_common),
run as a child process of this script on the same CPUs (`bench_model --benchmark_filter=^$`) before and after
the measurements; shares are of the higher of the two readings (so they are not overstated by a slow probe).

    /usr/bin/python3 bench/compare_models.py                    # 1 thread, all cases, chart build/winattn_models.png
    /usr/bin/python3 bench/compare_models.py --threads 1,2
    taskset -c 1 /usr/bin/python3 bench/compare_models.py --pin 1 --docs   # also writes docs/winattn_models.png
onnxruntime-node is looked for in --ort-dir (default: build-peers/ of the repository, or WINATTN_ORT_NODE_DIR):
    mkdir -p build-peers && cd build-peers && npm init -y && npm install --ignore-scripts onnxruntime-node
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = 1e-3  # max |diff| / max |torch| on the logits; fp32 with other summation orders stays ~1e-5

MODEL_CASES = ["swin_t_B1", "swin_t_B8", "swin_v2_t_B1", "swin3d_t_B1"]
LAYER_CASES = ["layer_swin_t_s1_B1", "layer_swin_t_s3_B8"]
PEERS = ("torch", "ort")


def idlest_cpu():
    """The allowed CPU with the most idle time over half a second (/proc/stat; ties: the last one). On a shared
    machine whose users pin their 1-thread runs to the same CPU, this keeps off the busy one."""
    allowed = sorted(os.sched_getaffinity(0))

    def idle():
        out = {}
        try:
            with open("/proc/stat") as f:
                for line in f:
                    name = line.split()[0]
                    if name.startswith("cpu") and name[3:].isdigit():
                        out[int(name[3:])] = int(line.split()[4])
        except (OSError, ValueError, IndexError):
            pass
        return out

    a = idle()
    time.sleep(0.5)
    b = idle()
    return max(reversed(allowed), key=lambda c: b.get(c, 0) - a.get(c, 0))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--cases", default=",".join(LAYER_CASES + MODEL_CASES),
                   help="comma-separated cases (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, help="swin3d_t clip length (default 16: 16x224x224)")
    p.add_argument("--samples", type=int, default=7, help="timed samples per implementation at most (default 7)")
    p.add_argument("--min-samples", type=int, default=3, help="timed samples at least (default 3)")
    p.add_argument("--budget", type=float, default=25.0,
                   help="seconds of timed samples per case and thread count, all implementations together; "
                        "fewer samples (not fewer than --min-samples) when the calls are slow (default 25)")
    p.add_argument("--quick", action="store_true", help="3 samples, budget 8 s: a fast sanity run")
    p.add_argument("--pin", default=None, metavar="CPU",
                   help="pin this process (and its children: the probe, node) to this CPU, or 'auto' for the "
                        "allowed CPU that was idlest over the last half second; 1-thread runs only")
    p.add_argument("--peak", type=float, default=0.0,
                   help="1-thread fp32 FMA peak in GFLOP/s to use instead of running the probe")
    p.add_argument("--probe", default=None, help="the program that prints the FMA peak (default: "
                   "<build>/bench/bench_model)")
    p.add_argument("--library", default=None, help="libwinattn.so (else WINATTN_LIBRARY, else the binding's default)")
    p.add_argument("--ort-dir", default=os.environ.get("WINATTN_ORT_NODE_DIR", os.path.join(ROOT, "build-peers")),
                   help="directory whose node_modules holds onnxruntime-node (default: %(default)s)")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--chart", default=os.path.join(ROOT, "build", "winattn_models.png"),
                   help="chart PNG to write (default: %(default)s); empty: none")
    p.add_argument("--docs", action="store_true", help="also copy the chart to docs/winattn_models.png")
    p.add_argument("--json", default=os.path.join(ROOT, "build", "winattn_models.json"),
                   help="results as JSON (default: %(default)s); empty: none")
    p.add_argument("--optional", action="store_true",
                   help="exit 0 (after saying so) when torch/torchvision or the winattn binding are missing")
    args = p.parse_args()
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t]
        if not args.threads or min(args.threads) < 1:
            raise ValueError
    except ValueError:
        p.error("--threads wants a list like 1,2")
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in args.cases if c not in LAYER_CASES + MODEL_CASES]
    if unknown:
        p.error("unknown case(s) %s; known: %s" % (", ".join(unknown), ", ".join(LAYER_CASES + MODEL_CASES)))
    if args.quick:
        args.samples, args.min_samples, args.budget = 3, 3, 8.0
    if args.pin is not None:
        if max(args.threads) > 1:
            p.error("--pin binds everything to one CPU: use it with --threads 1 only")
        if args.pin == "auto":
            args.pin = idlest_cpu()
        else:
            try:
                args.pin = int(args.pin)
            except ValueError:
                p.error("--pin wants a CPU number or 'auto'")
    return args


# ---- FLOPs ----------------------------------------------------------------------------------------------------

def _ceil_div(a, b):
    return -(-a // b)


def model_flops(cfg, batch):
    """As bench_model.cpp's model_flops: GEMMs x2 plus the attention core, padded tokens for qkv/proj/core."""
    grid = [_ceil_div(cfg["frames"], cfg["patch"][0]), _ceil_div(cfg["image"], cfg["patch"][1]),
            _ceil_div(cfg["image"], cfg["patch"][2])]
    e = cfg["embed"]
    flops = 2.0 * batch * grid[0] * grid[1] * grid[2] * e * 3 * cfg["patch"][0] * cfg["patch"][1] * cfg["patch"][2]
    depths = cfg["depths"]
    for s, depth in enumerate(depths):
        c = e * 2 ** s
        win = [min(w, g) if cfg["video"] else w for w, g in zip(cfg["window"], grid)]
        padded = real = n = 1
        for w, g in zip(win, grid):
            padded *= _ceil_div(g, w) * w
            real *= g
            n *= w
        tp, t = batch * padded, batch * real
        block = 2.0 * tp * c * 3 * c + 2.0 * tp * c * c + 4.0 * tp * n * c + 2.0 * t * c * 4 * c * 2
        flops += block * depth
        if s + 1 < len(depths):
            grid[1], grid[2] = _ceil_div(grid[1], 2), _ceil_div(grid[2], 2)
            flops += 2.0 * batch * grid[0] * grid[1] * grid[2] * 4 * c * 2 * c
    flops += 2.0 * batch * e * 2 ** (len(depths) - 1) * cfg["classes"]
    return flops


ARCHS = {
    "swin_t": dict(embed=96, depths=(2, 2, 6, 2), window=(1, 7, 7), patch=(1, 4, 4), classes=1000, video=False),
    "swin_v2_t": dict(embed=96, depths=(2, 2, 6, 2), window=(1, 8, 8), patch=(1, 4, 4), classes=1000, video=False),
    "swin3d_t": dict(embed=96, depths=(2, 2, 6, 2), window=(8, 7, 7), patch=(2, 4, 4), classes=400, video=True),
}


# ---- the peak -------------------------------------------------------------------------------------------------

def probe_peak(program, threads):
    """{threads: GFLOP/s} from the C++ probe, run now as a child process (same CPU affinity)."""
    cmd = [program, "--benchmark_filter=^$", "--threads=" + ",".join(str(t) for t in threads)]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        print(f"FMA peak probe {program} did not run ({e}); shares of the peak are left out")
        return {}
    peaks = {}
    for line in out.splitlines():
        # "FMA peak, 2 threads at once: 201.3 GFLOP/s (100.6 per thread)"; at its exit the program measures the
        # 1-thread peak again: "FMA peak, 1 thread, re-measured after the benchmarks: 102.0 GFLOP/s (...)"
        if line.startswith("FMA peak, ") and " at once: " in line:
            head, _, rest = line.partition(" at once: ")
            t = int(head.split()[2])
            peaks[t] = max(peaks.get(t, 0.0), float(rest.split()[0]))
        elif line.startswith("FMA peak, 1 thread, re-measured") and ": " in line:
            peaks[1] = max(peaks.get(1, 0.0), float(line.split(": ", 1)[1].split()[0]))
    return peaks


# ---- timing ---------------------------------------------------------------------------------------------------

def _settle(threads):
    """With several threads, the OpenMP runtimes of the previous implementation spin for a while after a call
    (libgomp, libomp's KMP_BLOCKTIME 200 ms); a pause keeps that off the next implementation's sample."""
    if threads > 1:
        time.sleep(0.25)


def time_interleaved(fns, threads, samples):
    """({name: [seconds per call, one a sample]}, {name: [CPU share, one a sample]}): rounds of one sample per
    implementation, in turn. fns maps a name to (callable(n) -> [(wall s, process CPU s)] of n calls, n).
    The CPU share, process CPU time / (wall time x threads), falls below 1 when the implementation did not
    get its cores: another process ran there (or its threads waited)."""
    times = {name: [] for name in fns}
    shares = {name: [] for name in fns}
    for _ in range(samples):
        for name, (fn, calls) in fns.items():
            _settle(threads)
            walls, cpus = zip(*fn(calls))
            times[name].append(statistics.median(walls))
            shares[name].append(sum(cpus) / (sum(walls) * threads))
    return times, shares


def rel_diff(got, ref):
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), 1e-30)


# ---- ONNX Runtime (onnxruntime-node in a child process) -------------------------------------------------------

NODE_RUNNER = r"""
// argv: ort module dir, model.onnx, input.bin (float32), shape (JSON), threads. Stdin: one JSON command a line:
// {"op":"run","n":N[,"save":path]} -> {"times":[seconds per call],"cpu":[process CPU seconds per call]} (and
// the last output written to path as float32); {"op":"quit"}. Stdout: {"ready":true} or {"error":...} first.
const path = require('path');
const fs = require('fs');
const readline = require('readline');
const [ortDir, modelPath, inputPath, shapeJson, threads] = process.argv.slice(2);
(async () => {
  let ort, session;
  try {
    ort = require(path.join(ortDir, 'node_modules', 'onnxruntime-node'));
    session = await ort.InferenceSession.create(modelPath, {
      executionProviders: ['cpu'], intraOpNumThreads: Number(threads), interOpNumThreads: 1,
      executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
  } catch (e) {
    console.log(JSON.stringify({error: String(e && e.message || e)}));
    return;
  }
  const buf = fs.readFileSync(inputPath);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, JSON.parse(shapeJson))};
  console.log(JSON.stringify({ready: true}));
  const rl = readline.createInterface({input: process.stdin});
  for await (const line of rl) {
    const cmd = JSON.parse(line);
    if (cmd.op !== 'run') break;
    const times = [], cpu = [];
    let out;
    for (let i = 0; i < cmd.n; ++i) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      out = await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) * 1e-9);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) * 1e-6);
    }
    if (cmd.save) {
      const y = out[session.outputNames[0]].data;
      fs.writeFileSync(cmd.save, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
    }
    console.log(JSON.stringify({times, cpu}));
  }
  process.exit(0);
})();
"""


class OrtRunner:
    """One onnxruntime-node session on one model, input and thread count, in a node child process."""

    def __init__(self, ort_dir, onnx_path, x, threads, tmp):
        self.tmp = tmp
        input_path = os.path.join(tmp, "input.bin")
        x.astype("float32").tofile(input_path)
        runner = os.path.join(tmp, "ort_runner.js")
        if not os.path.exists(runner):
            with open(runner, "w") as f:
                f.write(NODE_RUNNER)
        self.proc = subprocess.Popen(["node", runner, ort_dir, onnx_path, input_path, json.dumps(list(x.shape)),
                                      str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self._read()
        if "error" in first:
            self.close()
            raise RuntimeError(first["error"])

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("node exited (code %s)" % self.proc.poll())
        return json.loads(line)

    def run(self, n, save=None):
        cmd = {"op": "run", "n": n}
        if save:
            cmd["save"] = save
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        return list(zip(reply["times"], reply["cpu"]))

    def output(self, shape):
        import numpy as np
        path = os.path.join(self.tmp, "output.bin")
        self.run(1, save=path)
        return np.fromfile(path, dtype=np.float32).reshape(shape)

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.SubprocessError):
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def ort_available(args):
    """None when ONNX Runtime can run, else why not."""
    if args.no_ort:
        return "--no-ort"
    if not shutil.which("node"):
        return "node is not installed"
    pkg = os.path.join(args.ort_dir, "node_modules", "onnxruntime-node", "package.json")
    if not os.path.exists(pkg):
        return (f"onnxruntime-node not found in {args.ort_dir}/node_modules (install: mkdir -p {args.ort_dir} && "
                f"cd {args.ort_dir} && npm init -y && npm install --ignore-scripts onnxruntime-node)")
    return None


def ort_version(args):
    try:
        with open(os.path.join(args.ort_dir, "node_modules", "onnxruntime-node", "package.json")) as f:
            return json.load(f).get("version", "?")
    except (OSError, ValueError):
        return "?"


def export_onnx(torch, module, x, path):
    """torch.onnx.export at opset 17 (the highest torch 1.13 knows); None on success, else the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, torch.from_numpy(x), path, opset_version=17, input_names=["input"],
                              output_names=["output"], do_constant_folding=True)
        return None
    except Exception as e:  # UnsupportedOperatorError for SwinV2, anything else alike: skip the peer
        first = (str(e).splitlines() or [""])[0]
        return "%s: %s" % (type(e).__name__, first.split(". ")[0][:160])


# ---- cases ----------------------------------------------------------------------------------------------------

class Case:
    """One comparison: the torch module, the winattn object, the input, the batch (images per call) and FLOPs."""

    def __init__(self, name, label, torch_label, module, winattn_obj, x, batch, flops, images_word="images"):
        self.name, self.label, self.torch_label = name, label, torch_label
        self.module, self.winattn, self.x = module, winattn_obj, x
        self.batch, self.flops, self.images_word = batch, flops, images_word


def build_models(torch, torchvision, winattn, ref, names, frames):
    """The model cases; torch modules and winattn models shared between batch sizes of one architecture."""
    import numpy as np
    built = {}
    cases = []
    for name in names:
        arch, _, b = name.rpartition("_B")
        batch = int(b)
        if arch not in built:
            torch.manual_seed(0)
            if arch == "swin3d_t":
                module = ref.VideoSwin3D()
                label = "PyTorch reference (eager)"
            else:
                module = getattr(torchvision.models, arch)()
                label = "torchvision (eager)"
            ref.init_random_(module.eval(), seed=1)
            built[arch] = (module, winattn.Model.from_torchvision(module), label)
        module, model, label = built[arch]
        # swin_v2_t at 256x256, its training and evaluation size (at 224 its 8x8 windows pad every stage).
        image = 256 if arch == "swin_v2_t" else 224
        cfg = dict(ARCHS[arch], frames=frames if arch == "swin3d_t" else 1, image=image)
        rng = np.random.default_rng(100 + batch)
        shape = (batch, 3, frames, image, image) if cfg["video"] else (batch, 3, image, image)
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        shown = f"{arch} B{batch}" + (f" ({frames}x{image}x{image})" if cfg["video"] else f" ({image}x{image})")
        cases.append(Case(name, shown, label, module, model, x, batch, model_flops(cfg, batch),
                          "clips" if cfg["video"] else "images"))
    return cases


def build_layers(torch, winattn, names):
    """torchvision's ShiftedWindowAttention vs winattn.Layer, built as compare_pytorch.py builds them."""
    import numpy as np
    from torchvision.models.swin_transformer import ShiftedWindowAttention
    sys.path.insert(0, HERE)
    from compare_pytorch import layer_flops
    shapes = {"layer_swin_t_s1_B1": (1, 56, 96, 3), "layer_swin_t_s3_B8": (8, 14, 384, 12)}
    cases = []
    for name in names:
        batch, grid, channels, heads = shapes[name]
        window, shift = 7, 3
        torch.manual_seed(1234)
        module = ShiftedWindowAttention(channels, [window, window], [shift, shift], heads).eval()
        sd = {k: t.detach().numpy() for k, t in module.state_dict().items()}
        layer = winattn.Layer(channels, heads, (window, window), (shift, shift), sd["qkv.weight"], sd["proj.weight"],
                              qkv_bias=sd["qkv.bias"], proj_bias=sd["proj.bias"],
                              relative_position_bias_table=sd["relative_position_bias_table"])
        x = np.random.default_rng(7).uniform(-1.0, 1.0, size=(batch, grid, grid, channels)).astype(np.float32)
        label = f"layer swin_t stage {1 if grid == 56 else 3} B{batch}"
        cases.append(Case(name, label, "torchvision (eager)", module, layer, x, batch,
                          layer_flops(batch, (grid, grid), channels, heads, window)))
    return cases


def winattn_call(case):
    if hasattr(case.winattn, "classify"):
        out = case.winattn.classify(case.x)  # allocated once here, reused by the timed calls
        return lambda: case.winattn.classify(case.x, out=out)
    return lambda: case.winattn.forward(case.x)


def set_winattn_threads(winattn, case, threads):
    winattn.set_num_threads(threads)
    if hasattr(case.winattn, "num_threads") and not callable(case.winattn.num_threads):
        case.winattn.num_threads = threads


# ---- the run --------------------------------------------------------------------------------------------------

def run_case(torch, winattn, case, threads, args, ort_why, tmp):
    """Times the case at `threads`; returns its result record."""
    torch.set_num_threads(threads)
    set_winattn_threads(winattn, case, threads)
    xt = torch.from_numpy(case.x)
    run_w = winattn_call(case)

    def run_t():
        return case.module(xt)

    rec = dict(case=case.name, label=case.label, threads=threads, batch=case.batch, flops=case.flops,
               unit=case.images_word, skipped={})
    # Agreement (also the first warm-up call of each).
    ref = run_t().numpy()
    rec["winattn_rel_diff"] = rel_diff(run_w(), ref)
    fns = {"winattn": (lambda n: [_timed(run_w) for _ in range(n)], 1),
           "torch": (lambda n: [_timed(run_t) for _ in range(n)], 1)}
    ort = None
    why = ort_why
    if why is None:
        onnx_path = os.path.join(tmp, case.name + ".onnx")
        if not os.path.exists(onnx_path) and not os.path.exists(onnx_path + ".failed"):
            t0 = time.perf_counter()
            why = export_onnx(torch, case.module, case.x, onnx_path)
            if why:
                with open(onnx_path + ".failed", "w") as f:
                    f.write(why)
            else:
                print(f"  ({case.label}: exported to ONNX in {time.perf_counter() - t0:.0f} s)", flush=True)
        elif os.path.exists(onnx_path + ".failed"):
            with open(onnx_path + ".failed") as f:
                why = f.read()
        if why:
            why = "torch.onnx.export failed: " + why
        else:
            try:
                ort = OrtRunner(args.ort_dir, onnx_path, case.x, threads, tmp)
                rec["ort_rel_diff"] = rel_diff(ort.output(ref.shape), ref)
                fns["ort"] = (lambda n: ort.run(n), 1)
            except Exception as e:  # a session that cannot be created: say so, keep the rest
                why = "onnxruntime-node: %s" % str(e)[:200]
                ort = None
    if why:
        rec["skipped"]["ort"] = why
    try:
        # Second warm-up call of each, which also sizes the samples: short calls (the layers) are looped to
        # >= 50 ms a sample, slow ones (whole models) get fewer samples within the budget.
        one = {}
        for name, (fn, _) in fns.items():
            _settle(threads)
            one[name] = fn(1)[0][0]
        calls = {name: max(1, int(0.05 / max(t, 1e-6))) for name, t in one.items()}
        round_s = sum(one[n] * calls[n] for n in fns)
        samples = max(args.min_samples, min(args.samples, int(args.budget / max(round_s, 1e-6))))
        times, shares = time_interleaved({n: (fns[n][0], calls[n]) for n in fns}, threads, samples)
    finally:
        if ort:
            ort.close()
    rec["samples"] = samples
    rec["median_s"] = {n: statistics.median(t) for n, t in times.items()}
    rec["all_s"] = times
    rec["cpu_share"] = {n: statistics.median(v) for n, v in shares.items()}
    return rec


def _timed(fn):
    """(wall seconds, process CPU seconds) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def fmt_row(rec, peak):
    med = rec["median_s"]
    tw = med["winattn"]
    flops, batch, threads = rec["flops"], rec["batch"], rec["threads"]
    p = peak.get(threads, 0.0)

    def cells(t):
        share = f"{100.0 * flops / t * 1e-9 / p:.0f}%" if p > 0 else "n/a"
        return f"{t * 1e3:.1f} | {batch / t:.2f} | {flops / t * 1e-9:.1f} | {share}"

    rows = []
    for peer in PEERS:
        peer_name = {"torch": rec.get("torch_label", "torch"), "ort": "ONNX Runtime"}[peer]
        if peer in med:
            diff = rec["winattn_rel_diff"] if peer == "torch" else rec.get("ort_rel_diff", float("nan"))
            rows.append(f"| {rec['label']} | {threads} | {peer_name} | {cells(med[peer])} | {cells(tw)} | "
                        f"{med[peer] / tw:.2f}x | {diff:.1e} |")
        else:
            rows.append(f"| {rec['label']} | {threads} | {peer_name} | skipped: {rec['skipped'].get(peer, '?')} "
                        f"| | | | {cells(tw)} | | |")
    return rows


def write_chart(results, peak, path, title_extra):
    """One small linear bar chart per (case, threads): images/s of winattn and each peer, the share of the FMA
    peak and the ratio written on the bars; layers first, then the whole models."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart skipped: matplotlib is not installed (Debian: apt-get install python3-matplotlib)")
        return False
    impls = ("winattn", "torch", "ort")
    colors = {"winattn": "#1f77b4", "torch": "#ff7f0e", "ort": "#2ca02c"}
    ticks = {"winattn": "winattn", "torch": "PyTorch\neager", "ort": "ONNX\nRuntime"}
    cols = min(3, len(results))
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows + 0.8), squeeze=False)
    for k, rec in enumerate(results):
        ax = axes[k // cols][k % cols]
        tw = rec["median_s"]["winattn"]
        p = peak.get(rec["threads"], 0.0)
        top = max(rec["batch"] / t for t in rec["median_s"].values())
        for j, impl in enumerate(impls):
            if impl not in rec["median_s"]:
                ax.text(j, top * 0.04, "skipped:\n" + ("export\nfailed" if "export" in rec["skipped"].get(impl, "")
                                                    else "not run"), ha="center", va="bottom", fontsize=7,
                        color="gray")
                continue
            t = rec["median_s"][impl]
            rate = rec["batch"] / t
            ax.bar(j, rate, width=0.7, color=colors[impl])
            note = f"{rate:.3g}/s"
            if p > 0:
                note += f"\n{100.0 * rec['flops'] / t * 1e-9 / p:.0f}% peak"
            if impl != "winattn":
                note += f"\nwinattn {t / tw:.2f}x"  # its time / winattn's
            ax.text(j, rate, note, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(impls)))
        labels = [ticks[i] for i in impls]
        if rec["case"].startswith("swin3d"):
            labels[1] = "PyTorch\nreference"
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlim(-0.6, len(impls) - 0.4)
        ax.set_ylim(0, top * 1.45)
        ax.set_ylabel(("clips" if rec["unit"] == "clips" else "images") + "/s", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{rec['label']}, {rec['threads']} thread{'s' if rec['threads'] > 1 else ''}", fontsize=8)
        ax.grid(axis="y", alpha=0.25)
    for k in range(len(results), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("winattn vs PyTorch eager (torchvision 0.14; swin3d_t: tests' reference module) and ONNX Runtime "
                 "(onnxruntime-node, CPU), fp32\n" + title_extra + "; % peak: share of the measured FMA peak; "
                 "winattn Nx: the peer's time / winattn's",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main():
    args = parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # before torch and OpenMP start threads; children inherit it
    if max(args.threads) == 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import torchvision
    except ImportError as e:
        print(f"model comparison skipped: torch/torchvision/numpy not importable by {sys.executable} ({e}).")
        return 0 if args.optional else 1
    if args.library:
        os.environ["WINATTN_LIBRARY"] = os.path.abspath(args.library)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    try:
        import winattn
        import reference_models as ref
    except Exception as e:
        print(f"model comparison skipped: cannot import winattn / reference_models ({e}); build the library or "
              f"set WINATTN_LIBRARY")
        return 0 if args.optional else 1
    if not hasattr(winattn, "Model"):
        print("model comparison skipped: this winattn Python binding has no winattn.Model")
        return 0 if args.optional else 1
    torch.set_grad_enabled(False)

    lib_path = winattn.library_path() if hasattr(winattn, "library_path") else ""
    build_dir = os.path.dirname(os.path.abspath(lib_path)) if lib_path else os.path.join(ROOT, "build")
    probe = args.probe or os.path.join(build_dir, "bench", "bench_model")
    if not os.path.exists(probe):
        probe = os.path.join(ROOT, "build", "bench", "bench_model")
    ort_why = ort_available(args)
    affinity = sorted(os.sched_getaffinity(0))
    print(f"winattn {winattn.version()} ({winattn.active_isa()}, {lib_path}), "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"ONNX Runtime {'(skipped: ' + ort_why + ')' if ort_why else 'onnxruntime-node ' + ort_version(args)}")
    print(f"CPU {cpu_name()}, CPUs allowed {affinity}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} "
          f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '')}; threads {args.threads}; "
          f"up to {args.samples} interleaved samples (>= {args.min_samples}, ~{args.budget:.0f} s a case), median")
    if max(args.threads) > len(affinity):
        print(f"warning: {max(args.threads)} threads on {len(affinity)} allowed CPU(s)")

    # The probe runs before the cases, after each and at the end; a busy neighbour on the pinned core slows
    # some readings, so the shares use the highest (they are then not overstated).
    probes = {t: [] for t in args.threads}

    def probe_now(when):
        if args.peak > 0:
            return
        got = probe_peak(probe, args.threads)
        for t, g in got.items():
            if t in probes:
                probes[t].append(g)
        if when:
            print(f"  (FMA peak probe {when}: " + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s" for t, g in
                                                            sorted(got.items())) + ")", flush=True)

    if args.peak > 0:
        print(f"FMA peak (given): {args.peak:.1f} GFLOP/s per thread")
    probe_now("before")
    sys.stdout.flush()

    names = args.cases
    cases = build_layers(torch, winattn, [n for n in names if n in LAYER_CASES]) + \
        build_models(torch, torchvision, winattn, ref, [n for n in names if n in MODEL_CASES], args.frames)
    tmp = tempfile.mkdtemp(prefix="winattn_models.")
    results = []
    try:
        for threads in args.threads:
            for case in cases:
                rec = run_case(torch, winattn, case, threads, args, ort_why, tmp)
                rec["torch_label"] = case.torch_label
                results.append(rec)
                med = rec["median_s"]
                line = f"  {case.label}, {threads} thread(s), {rec['samples']} samples: winattn " \
                       f"{med['winattn'] * 1e3:.1f} ms, {case.torch_label} {med['torch'] * 1e3:.1f} ms"
                line += f", ORT {med['ort'] * 1e3:.1f} ms" if "ort" in med else \
                    f", ORT skipped ({rec['skipped'].get('ort', '')})"
                line += "; CPU share " + ", ".join(f"{n} {v:.2f}" for n, v in rec["cpu_share"].items())
                print(line, flush=True)
                probe_now("")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for c in cases:
            if hasattr(c.winattn, "close"):
                c.winattn.close()

    if args.peak > 0:
        peak = {t: args.peak * t for t in args.threads}
    else:
        peak = {t: max(v) for t, v in probes.items() if v}
        for t, v in sorted(probes.items()):
            if v:
                print(f"FMA peak probe, {t} thread(s): {len(v)} readings {min(v):.1f} to {max(v):.1f} GFLOP/s; the "
                      f"shares below are of {max(v):.1f}")
        one = peak.get(1, 0.0)
        for t, g in sorted(peak.items()):
            if t > 1 and one > 0 and g < 0.75 * one * t:
                print(f"  warning: {t} threads reach only {100 * g / (one * t):.0f}% of {t} x the 1-thread peak: the "
                      f"cores are shared or busy; {t}-thread figures are unreliable")
    busy = [(r["label"], r["threads"], n, v) for r in results for n, v in r["cpu_share"].items() if v < 0.9]
    if busy:
        print("warning: samples that did not get their cores (median CPU share < 0.9: another process ran on "
              "them, or threads idled): " + "; ".join(f"{l} {t}t {n} {v:.2f}" for l, t, n, v in busy))
    print()
    print("Median per call; images/s = batch / median (swin3d_t: clips/s); % peak = GFLOP/s / FMA peak at that "
          "thread count; winattn / peer = peer time / winattn time; rel diff = max |winattn - torch| / max |torch| "
          "of the logits (ORT row: ORT against torch).")
    print("| case | threads | peer | peer ms | peer images/s | peer GFLOP/s | peer % peak | winattn ms | "
          "winattn images/s | winattn GFLOP/s | winattn % peak | winattn / peer (images/s) | max rel diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    bad = []
    for rec in results:
        for row in fmt_row(rec, peak):
            print(row)
        if not rec["winattn_rel_diff"] <= TOLERANCE:
            bad.append(rec["label"])
    print("\nFLOPs per call: " + "; ".join(f"{r['label']} {r['flops'] * 1e-9:.2f} GFLOP" for r in results
                                           if r["threads"] == args.threads[0]))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(peak_gflops=peak, cpu=cpu_name(), winattn=winattn.version(), torch=torch.__version__,
                           ort=None if ort_why else ort_version(args), results=results), f, indent=1)
        print(f"results: {args.json}")
    if args.chart:
        extra = f"{cpu_name()}, threads {','.join(str(t) for t in args.threads)}, {time.strftime('%Y-%m-%d')}"
        if write_chart(results, peak, args.chart, extra):
            print(f"chart: {args.chart}")
            if args.docs:
                docs = os.path.join(ROOT, "docs", "winattn_models.png")
                os.makedirs(os.path.dirname(docs), exist_ok=True)
                shutil.copyfile(args.chart, docs)
                print(f"chart: {docs}")
    if bad:
        print(f"\nMISMATCH (max rel diff > {TOLERANCE:g}): {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
