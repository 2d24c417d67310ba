"""Times torch attention at the settings of kiln's `flash_device` benchmark and writes JSON.

python3 flash_torch.py [--out FILE] [--quick]

Prefill: `scaled_dot_product_attention` (batch * seq = 16k tokens); sliding window 4096 and
softcap 50 with eager attention (matmul, mask, f32 softmax, matmul, as transformers' eager),
and the window also with SDPA given a boolean mask. Decoding: SDPA with `enable_gqa` (q_len 1,
GQA 32:8, head dim 128). Times are CUDA-event medians of batches of calls after warm-up.
"""

import argparse
import json
import math

import torch
import torch.nn.functional as F


def time_fn(fn, per, reps):
    out = fn()
    torch.cuda.synchronize()
    out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(per):
            out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / per)
    times.sort()
    assert torch.isfinite(out.float()).all().item(), "non-finite output"
    return times[len(times) // 2]


def pairs(s, causal, window):
    if not causal:
        return s * s
    if window < 0:
        return s * (s + 1) // 2
    return sum(min(i, window) + 1 for i in range(s))


def eager(q, k, v, causal, window, softcap, head_chunk):
    """transformers-style eager attention, computed over chunks of heads to bound memory."""
    b, h, s, d = q.shape
    scale = 1.0 / math.sqrt(d)
    i = torch.arange(s, device=q.device)
    visible = torch.ones(s, s, dtype=torch.bool, device=q.device)
    if causal:
        visible &= i[:, None] >= i[None, :]
    if window >= 0:
        visible &= i[:, None] - i[None, :] <= window
    out = torch.empty_like(q)
    for h0 in range(0, h, head_chunk):
        qs, ks, vs = q[:, h0 : h0 + head_chunk], k[:, h0 : h0 + head_chunk], v[:, h0 : h0 + head_chunk]
        scores = torch.matmul(qs, ks.transpose(-1, -2)) * scale
        if softcap > 0:
            scores = softcap * torch.tanh(scores / softcap)
        scores = scores.masked_fill(~visible, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out[:, h0 : h0 + head_chunk] = torch.matmul(probs, vs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="flash_torch.json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    dev = "cuda"
    report = {
        "tool": "torch",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "prefill": [],
        "decode": [],
    }
    seqs = [1024, 8192] if args.quick else [512, 1024, 2048, 4096, 8192, 16384]
    settings = []
    for dtype in ["f16", "bf16"]:
        for d in [64, 128, 256]:
            for causal in [False, True]:
                settings.append((dtype, d, causal, -1, 0.0))
        settings.append((dtype, 128, True, 4096, 0.0))
        settings.append((dtype, 128, True, -1, 50.0))
    torch_dtype = {"f16": torch.float16, "bf16": torch.bfloat16}
    for dtype, d, causal, window, softcap in settings:
        heads = 32 if d == 64 else 16
        for s in seqs:
            batch = 16384 // s
            shape = (batch, heads, s, d)
            q, k, v = (torch.randn(shape, device=dev, dtype=torch_dtype[dtype]) for _ in range(3))
            per = 3 if s >= 4096 else 5
            flops = 4.0 * batch * heads * d * pairs(s, causal, window)
            entry = {
                "dtype": dtype, "head_dim": d, "heads": heads, "batch": batch, "seq": s,
                "causal": causal, "window": window, "softcap": softcap,
            }
            if window < 0 and softcap == 0:
                secs = time_fn(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), per, 5)
                entry.update(impl="sdpa", ms=secs * 1e3, tflops=flops / secs / 1e12)
            else:
                # Bound the eager score matrix to ~2 GiB per chunk of heads.
                chunk = max(1, min(heads, (2 << 30) // (batch * s * s * 4)))
                secs = time_fn(lambda: eager(q, k, v, causal, window, softcap, chunk), 1, 3)
                entry.update(impl="eager", ms=secs * 1e3, tflops=flops / secs / 1e12)
                if softcap == 0:
                    i = torch.arange(s, device=dev)
                    mask = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] <= window)
                    secs_m = time_fn(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 1, 3)
                    entry.update(sdpa_mask_ms=secs_m * 1e3, sdpa_mask_tflops=flops / secs_m / 1e12)
            print(json.dumps(entry), flush=True)
            report["prefill"].append(entry)
            del q, k, v
            torch.cuda.empty_cache()

    kvs = [1024, 32768] if args.quick else [1024, 2048, 4096, 8192, 16384, 32768]
    for dtype in ["f16", "bf16"]:
        for batch in [1, 4, 16]:
            for kv in kvs:
                q = torch.randn(batch, 32, 1, 128, device=dev, dtype=torch_dtype[dtype])
                k = torch.randn(batch, 8, kv, 128, device=dev, dtype=torch_dtype[dtype])
                v = torch.randn(batch, 8, kv, 128, device=dev, dtype=torch_dtype[dtype])
                secs = time_fn(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), 20, 7)
                gbs = 2 * batch * 8 * kv * 128 * 2 / secs / 1e9
                entry = {"dtype": dtype, "batch": batch, "kv": kv, "impl": "sdpa", "us": secs * 1e6, "gbs": gbs}
                print(json.dumps(entry), flush=True)
                report["decode"].append(entry)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
