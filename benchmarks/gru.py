"""GRU speed: nlptool.layers.GRU vs keras.layers.GRU vs torch.nn.GRU.

Forward (inference) and forward+backward (gradients of the input and every
weight) at four (batch, time, input, units) shapes, all implementations
interleaved round-robin in blocks in one run so that machine noise hits them
alike; medians of the repeats. torch runs in a child process (see
TorchWorker). Also measures the machine's float32 GEMM peak in the same run
and reports achieved GFLOP/s as a fraction of it.

    make bench            # or: python benchmarks/gru.py [--repeats N] [--out FILE]

Writes benchmarks/results/gru.json and prints a table.
"""

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from nlptool.layers import GRU

SHAPES = [(64, 200, 128, 256), (32, 50, 256, 512), (128, 100, 64, 128), (1, 100, 64, 128)]
TARGETS = {
    "fwd_bwd_vs_keras": 1.3,  # forward+backward speed-up over keras.layers.GRU, every shape
    "fwd_bwd_vs_torch": 1.0,  # ... over torch.nn.GRU, every shape
    "batch1_fwd_vs_keras": 5.0,  # serving: batch-1 forward speed-up over keras
    "fwd_vs_keras": 1.0,  # no shape slower than keras in forward
}


def gru_flops(batch, steps, features, units):
    """Multiply-adds x2 of the GEMMs of one forward pass (element-wise work
    is negligible). A backward pass costs two more of each GEMM."""
    return 2 * batch * steps * 3 * units * (features + units)


def gemm_peak(repeats):
    n = 2048
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def tf_runners(layer, x):
    """(forward, forward+backward) callables for a Keras layer."""

    @tf.function
    def forward(x):
        return layer(x, training=False)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, [x] + layer.trainable_weights)

    def run_forward():
        forward(x).numpy()

    def run_forward_backward():
        for g in forward_backward(x):
            g.numpy()

    return run_forward, run_forward_backward


class TorchWorker:
    """torch.nn.GRU timed in a child process.

    TensorFlow's and PyTorch's thread pools fight for the two cores when both
    live in one process (torch ran 5-10x slower than alone), so torch runs in
    its own process, driven step by step so it still interleaves with the
    TensorFlow runs. The child reports its own timings.
    """

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--torch-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.version = self._ask({"op": "version"})

    def _ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError("the torch worker exited")
        return json.loads(reply)

    def runners(self, shape):
        def make(mode):
            return lambda: self._ask({"op": "run", "shape": shape, "mode": mode})

        return make("fwd"), make("fwd_bwd")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def torch_worker():
    import torch

    torch.set_num_threads(os.cpu_count())
    modules = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "version":
            print(json.dumps(torch.__version__), flush=True)
            continue
        batch, steps, features, units = request["shape"]
        key = (batch, steps, features, units)
        if key not in modules:
            x_np = np.random.default_rng(0).normal(size=(batch, steps, features)).astype("float32")
            modules[key] = (torch.nn.GRU(features, units, batch_first=True), torch.from_numpy(x_np))
        module, x = modules[key]
        start = time.perf_counter()
        if request["mode"] == "fwd":
            with torch.no_grad():
                module(x)
        else:
            module.zero_grad()
            x_grad = x.clone().requires_grad_(True)
            out, _ = module(x_grad)
            out.sum().backward()
        print(json.dumps(time.perf_counter() - start), flush=True)


def measure(runners, repeats, block_seconds=0.05):
    """Median seconds per call of each runner.

    Runners take turns in blocks (round-robin), so that machine noise hits
    them alike. A block is one untimed call, to wake thread pools and caches
    after the other runners, then enough timed calls to last about
    `block_seconds`; its mean is one sample. A runner may return its own
    timing (seconds), which then replaces the wall clock.
    """
    calls = {}
    for name, run in runners.items():  # warm-up: tracing, XLA compilation, caches
        run()
        start = time.perf_counter()
        run()
        calls[name] = max(1, math.ceil(block_seconds / (time.perf_counter() - start)))
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            run()
            total = 0.0
            for _ in range(calls[name]):
                start = time.perf_counter()
                own = run()
                total += own if own is not None else time.perf_counter() - start
            times[name].append(total / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gru.json"))
    parser.add_argument(
        "--shapes", help="only these shapes, e.g. '1,100,64,128;64,200,128,256' (default: the four of the issue)"
    )
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        return torch_worker()

    torch = TorchWorker() if importlib.util.find_spec("torch") else None
    if torch is None:
        print("torch is not installed: its column stays empty")

    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shapes.split(";")]
    peak = gemm_peak(args.repeats)
    rows = []
    for batch, steps, features, units in shapes:
        x_np = np.random.default_rng(0).normal(size=(batch, steps, features)).astype("float32")
        x = tf.constant(x_np)
        layers = {"nlptool": GRU(units, return_sequences=True), "keras": keras.layers.GRU(units, return_sequences=True)}
        runners = {}
        for name, layer in layers.items():
            runners[f"{name}/fwd"], runners[f"{name}/fwd_bwd"] = tf_runners(layer, x)
        if torch is not None:
            runners["torch/fwd"], runners["torch/fwd_bwd"] = torch.runners([batch, steps, features, units])
        medians = measure(runners, args.repeats)
        flops = gru_flops(batch, steps, features, units)
        row = {"shape": {"batch": batch, "time": steps, "input": features, "units": units}}
        for key, seconds in medians.items():
            name, mode = key.split("/")
            mode_flops = flops if mode == "fwd" else 3 * flops
            row.setdefault(name, {})[mode] = {
                "ms": round(seconds * 1e3, 3),
                "gflops": round(mode_flops / seconds / 1e9, 1),
                "fraction_of_peak": round(mode_flops / seconds / 1e9 / peak, 3),
            }
        for other in ("keras", "torch"):
            if other in row:
                for mode in ("fwd", "fwd_bwd"):
                    row["nlptool"][f"{mode}_speedup_vs_{other}"] = round(
                        row[other][mode]["ms"] / row["nlptool"][mode]["ms"], 2
                    )
        rows.append(row)
        print(f"done {batch, steps, features, units}", flush=True)

    checks = {
        "fwd_bwd_vs_keras": all(r["nlptool"]["fwd_bwd_speedup_vs_keras"] >= TARGETS["fwd_bwd_vs_keras"] for r in rows),
        "fwd_vs_keras": all(r["nlptool"]["fwd_speedup_vs_keras"] >= TARGETS["fwd_vs_keras"] for r in rows),
    }
    batch1 = [r for r in rows if r["shape"]["batch"] == 1]
    if batch1:
        checks["batch1_fwd_vs_keras"] = all(
            r["nlptool"]["fwd_speedup_vs_keras"] >= TARGETS["batch1_fwd_vs_keras"] for r in batch1
        )
    if torch is not None:
        checks["fwd_bwd_vs_torch"] = all(
            r["nlptool"]["fwd_bwd_speedup_vs_torch"] >= TARGETS["fwd_bwd_vs_torch"] for r in rows
        )
    result = {
        "benchmark": "gru",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "torch": torch and torch.version},
        "repeats": args.repeats,
        "gemm_peak_gflops": round(peak, 1),
        "targets": TARGETS,
        "targets_met": checks,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nfloat32 GEMM peak {peak:.0f} GFLOP/s; medians of {args.repeats} interleaved runs, ms")
    names = ["nlptool", "keras"] + (["torch"] if torch is not None else [])
    header = "| (B, T, D, H) | mode | " + " | ".join(names) + " | vs keras | vs torch | nlptool % of peak |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        s = r["shape"]
        for mode in ("fwd", "fwd_bwd"):
            cells = [f"{r[n][mode]['ms']:.1f}" for n in names]
            vs_torch = f"{r['nlptool'][f'{mode}_speedup_vs_torch']:.2f}x" if torch is not None else "-"
            print(
                f"| ({s['batch']}, {s['time']}, {s['input']}, {s['units']}) | {mode} | "
                + " | ".join(cells)
                + f" | {r['nlptool'][f'{mode}_speedup_vs_keras']:.2f}x | {vs_torch} | "
                f"{100 * r['nlptool'][mode]['fraction_of_peak']:.0f} % |"
            )
    print("\ntargets met:", ", ".join(f"{k}={v}" for k, v in checks.items()))
    print(f"wrote {args.out}")
    if torch is not None:
        torch.close()


if __name__ == "__main__":
    main()
