"""torch and bitsandbytes at the shapes of kiln-quant's `gpu_bench` example, on the same card.

Times `torch.nn.functional.linear` in f16, `bnb.matmul_4bit` (NF4, NF4 with double quant, FP4,
blocksize 64), `bnb.nn.Linear8bitLt(threshold=6.0)`, bnb's 4-bit dequantize / quantize of an
8192x8192 weight, and a device copy, and writes JSON.

Method (the same as gpu_bench): warm-up, then per repeat a batch of back-to-back calls between two
synchronizations (wall clock, per call) and one synchronized call; medians over repeats. Weights
smaller than 160 MiB rotate through several copies so that no call finds its weight in L2.
CUDA-event times of the same batches are recorded too.

usage: python3 bench_torch_bnb.py OUT.json [--quick]
"""

import json
import math
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336), (128256, 4096)]
ROWS = [1, 4, 16]
ROTATE_BYTES = 160 << 20
DEV = "cuda"


def sync():
    torch.cuda.synchronize()


def time_calls(fn, calls, repeats):
    """fn(i) launches call i and returns its output."""
    sink = 0.0
    for i in range(3):
        fn(i)
    sync()
    wall, events, single = [], [], []
    for r in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        sync()
        t = time.perf_counter()
        start.record()
        out = None
        for i in range(calls):
            out = fn(r * calls + i)
        end.record()
        sync()
        wall.append((time.perf_counter() - t) * 1e6 / calls)
        events.append(start.elapsed_time(end) * 1e3 / calls)
        sink += float(out.reshape(-1)[0].float().item())
        t = time.perf_counter()
        out = fn(r)
        sync()
        single.append((time.perf_counter() - t) * 1e6)
    return {
        "us": statistics.median(wall),
        "us_events": statistics.median(events),
        "us_single": statistics.median(single),
        "sink": sink,
    }


def copies_for(nbytes):
    return max(1, min(32, math.ceil(ROTATE_BYTES / nbytes)))


def calls_for(n, k, quick):
    if quick:
        return 3
    return 20 if n * k >= 100_000_000 else 100


def bench_copy(quick):
    n = 1 << 30
    a = torch.randint(0, 255, (n,), dtype=torch.uint8, device=DEV)
    b = torch.empty_like(a)
    r = time_calls(lambda i: b.copy_(a), 2 if quick else 20, 3 if quick else 9)
    r["bytes"] = n
    r["gbps"] = 2 * n / (r["us"] * 1e3)
    print(f"copy 1 GiB: {r['us']:.1f} us, {r['gbps']:.0f} GB/s", flush=True)
    del a, b
    return r


def bench_linear(quick):
    rows = []
    shapes = SHAPES[:1] if quick else SHAPES
    reps = 3 if quick else 11
    for n, k in shapes:
        calls = calls_for(n, k, quick)
        # torch f16
        ws = [torch.randn(n, k, dtype=torch.float16, device=DEV) for _ in range(copies_for(2 * n * k))]
        for m in ROWS:
            xs = [torch.randn(m, k, dtype=torch.float16, device=DEV) for _ in range(4)]
            with torch.no_grad():
                r = time_calls(lambda i: F.linear(xs[i % 4], ws[i % len(ws)]), calls, reps)
            r.update(kind="torch-f16", shape=[n, k], m=m, copies=len(ws))
            r["gbps"] = (2 * n * k + 2 * m * (n + k)) / (r["us"] * 1e3)
            print(f"torch f16 [{n}x{k}] m={m}: {r['us']:.2f} us ({r['us_events']:.2f} events)", flush=True)
            rows.append(r)
        del ws
        torch.cuda.empty_cache()
        # bnb 4-bit
        for qt, dq, label in [("nf4", False, "bnb-nf4"), ("nf4", True, "bnb-nf4-dq"), ("fp4", False, "bnb-fp4")]:
            qs = []
            nbytes = n * k // 2 + (n * k // 64) * (1 if dq else 4)
            for _ in range(copies_for(nbytes)):
                w = torch.randn(n, k, dtype=torch.float16, device=DEV)
                q, st = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=dq, quant_type=qt)
                qs.append((q, st))
                del w
            torch.cuda.empty_cache()
            for m in ROWS:
                xs = [torch.randn(m, k, dtype=torch.float16, device=DEV) for _ in range(4)]

                def call(i):
                    q, st = qs[i % len(qs)]
                    return bnb.matmul_4bit(xs[i % 4], q.t(), quant_state=st)

                with torch.no_grad():
                    r = time_calls(call, calls, reps)
                r.update(kind=label, shape=[n, k], m=m, copies=len(qs))
                r["gbps"] = (nbytes + 2 * m * (n + k)) / (r["us"] * 1e3)
                print(f"{label} [{n}x{k}] m={m}: {r['us']:.2f} us ({r['us_events']:.2f} events)", flush=True)
                rows.append(r)
            del qs
            torch.cuda.empty_cache()
        # bnb LLM.int8
        layers = []
        for _ in range(copies_for(n * k)):
            lin = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=6.0)
            with torch.no_grad():
                lin.weight.data.normal_()
            layers.append(lin.to(DEV).eval())
        for m in ROWS:
            xs = [torch.randn(m, k, dtype=torch.float16, device=DEV) for _ in range(4)]
            with torch.no_grad():
                r = time_calls(lambda i: layers[i % len(layers)](xs[i % 4]), calls, reps)
            r.update(kind="bnb-int8", shape=[n, k], m=m, copies=len(layers))
            r["gbps"] = (n * k + 4 * n + 2 * m * (n + k)) / (r["us"] * 1e3)
            print(f"bnb int8 [{n}x{k}] m={m}: {r['us']:.2f} us ({r['us_events']:.2f} events)", flush=True)
            rows.append(r)
        del layers
        torch.cuda.empty_cache()
    return rows


def bench_dequant(quick):
    n = k = 8192
    out = []
    for dq in [False, True]:
        w = torch.randn(n, k, dtype=torch.float16, device=DEV)
        q, st = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=dq, quant_type="nf4")
        r = time_calls(lambda i: bnbf.dequantize_4bit(q, st), 2 if quick else 20, 3 if quick else 9)
        nbytes = n * k // 2 + (n * k // 64) * (1 if dq else 4) + 2 * n * k
        r.update(kind="bnb-dequantize", quant="nf4", dq=dq, dtype="float16", shape=[n, k], bytes=nbytes)
        r["tbps"] = nbytes / (r["us"] * 1e6)
        print(f"bnb dequantize nf4 dq={dq} 8192^2 -> f16: {r['us']:.1f} us, {r['tbps']:.2f} TB/s", flush=True)
        out.append(r)
        if not dq:
            rq = time_calls(
                lambda i: bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")[0], 1 if quick else 5, 3 if quick else 7
            )
            rq.update(kind="bnb-quantize", quant="nf4", dq=False, dtype="float16", shape=[n, k])
            print(f"bnb quantize nf4 8192^2 from f16: {rq['us']:.1f} us", flush=True)
            out.append(rq)
        del w, q, st
    return out


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    paths = [a for a in args if not a.startswith("--")]
    out_path = paths[0] if paths else "torch_bnb.json"
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
    except OSError:
        driver = "unknown"
    device = {
        "name": props.name,
        "sms": props.multi_processor_count,
        "memory_gib": props.total_memory / 2**30,
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bitsandbytes": bnb.__version__,
    }
    print(f"device: {device}", flush=True)
    t0 = time.time()
    report = {
        "tool": "benches/gpu/bench_torch_bnb.py",
        "device": device,
        "copy": bench_copy(quick),
        "dequantize": bench_dequant(quick),
        "linear": bench_linear(quick),
    }
    report["seconds"] = time.time() - t0
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {out_path} ({report['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
