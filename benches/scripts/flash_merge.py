"""Merges kiln's `flash_device` JSON and `flash_torch.py` JSON into markdown tables with ratios.

python3 flash_merge.py KILN_JSON TORCH_JSON [--out FILE.md]

Ratios are kiln / torch throughput (above 1: kiln is faster). Decode bandwidth is also given
as a share of 3.0 TB/s, the H100's measured copy bandwidth.
"""

import argparse
import json

HBM_GBS = 3000.0


def key_prefill(e):
    return (e["dtype"], e["head_dim"], e["causal"], e["window"], e["softcap"], e["seq"])


def key_decode(e):
    return (e["dtype"], e["batch"], e["kv"])


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("torch")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    kiln = json.load(open(args.kiln))
    torch = json.load(open(args.torch))
    lines = []
    lines.append(f"torch {torch.get('torch')} (CUDA {torch.get('cuda')}) on {torch.get('device')}")
    lines.append("")
    checks = kiln.get("checks") or []
    lines.append(f"kiln timed kernel: {kiln.get('timed_kernel', '?')}")
    lines.append("")
    passed = sum(1 for c in checks if c.get("pass"))
    lines.append(f"## Correctness: {passed}/{len(checks)} checks pass")
    lines.append("")
    for c in checks:
        if not c.get("pass"):
            detail = c.get("panic", "")[:300].replace("\n", " ")
            lines.append(f"- FAIL {c['case']}: max rel {c.get('max_rel', '-')} {detail}")
    worst = {}
    for c in checks:
        if "max_rel" in c:
            kernel = "TensorCore" if "TensorCore" in c["case"] else "Portable"
            dtype = c["case"].split()[0]
            worst[(dtype, kernel)] = max(worst.get((dtype, kernel), 0.0), c["max_rel"])
    for (dtype, kernel), v in sorted(worst.items()):
        lines.append(f"- {dtype} {kernel}: largest relative error {v:.2e}")
    lines.append("")

    tp = {key_prefill(e): e for e in torch.get("prefill", [])}
    lines.append("## Prefill (batch x seq = 16k tokens), TFLOP/s")
    lines.append("")
    lines.append("| dtype | d | heads | causal | window | softcap | seq | batch | kiln ms | kiln TFLOP/s | kiln pipelined TFLOP/s | torch impl | torch ms | torch TFLOP/s | kiln/torch | pipelined/torch |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in kiln.get("prefill") or []:
        t = tp.get(key_prefill(e), {})
        ratio = None
        if e.get("tflops") and t.get("tflops"):
            ratio = e["tflops"] / t["tflops"]
        pipe = e.get("pipelined_tflops")
        pipe_ratio = pipe / t["tflops"] if pipe and t.get("tflops") else None
        impl = t.get("impl", "-")
        torch_ms, torch_tf = t.get("ms"), t.get("tflops")
        extra = ""
        if t.get("sdpa_mask_tflops"):
            extra = f" (sdpa+mask {t['sdpa_mask_tflops']:.1f})"
        lines.append(
            f"| {e['dtype']} | {e['head_dim']} | {e['heads']} | {e['causal']} | {e['window']} | {e['softcap']} | {e['seq']} | {e['batch']} "
            f"| {fmt(e.get('ms'), '.3f')} | {fmt(e.get('tflops'), '.1f')}{'' if e.get('finite', True) else ' NaN!'} "
            f"| {fmt(pipe, '.1f')}{'' if e.get('pipelined_finite', True) else ' NaN!'} | {impl} | {fmt(torch_ms, '.3f')} "
            f"| {fmt(torch_tf, '.1f')}{extra} | {fmt(ratio, '.2f')} | {fmt(pipe_ratio, '.2f')} |"
        )
    lines.append("")

    kp = {key_prefill(e): e for e in kiln.get("prefill", [])}
    lines.append("## kiln: sliding window / softcap time relative to plain causal (same shape)")
    lines.append("")
    lines.append("| dtype | seq | window 4096 ms / causal ms | softcap 50 ms / causal ms |")
    lines.append("|---|---|---|---|")
    for e in kiln.get("prefill", []):
        if e["head_dim"] != 128 or not e["causal"] or e["window"] >= 0 or e["softcap"] or not e.get("ms"):
            continue
        w = kp.get((e["dtype"], 128, True, 4096, 0.0, e["seq"]), {})
        c = kp.get((e["dtype"], 128, True, -1, 50.0, e["seq"]), {})
        rw = w["ms"] / e["ms"] if w.get("ms") else None
        rc = c["ms"] / e["ms"] if c.get("ms") else None
        lines.append(f"| {e['dtype']} | {e['seq']} | {fmt(rw, '.2f')} | {fmt(rc, '.2f')} |")
    lines.append("")

    td = {key_decode(e): e for e in torch.get("decode", [])}
    lines.append("## Decode (q_len 1, GQA 32:8, head dim 128), K/V read")
    lines.append("")
    lines.append("| dtype | batch | kv | kiln us | kiln GB/s | % of 3.0 TB/s | kiln pipelined GB/s | torch us | torch GB/s | kiln/torch | pipelined/torch |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in kiln.get("decode", []):
        t = td.get(key_decode(e), {})
        ratio = None
        if e.get("gbs") and t.get("gbs"):
            ratio = e["gbs"] / t["gbs"]
        share = None if not e.get("gbs") else 100 * e["gbs"] / HBM_GBS
        pipe = e.get("pipelined_gbs")
        pipe_ratio = pipe / t["gbs"] if pipe and t.get("gbs") else None
        lines.append(
            f"| {e['dtype']} | {e['batch']} | {e['kv']} | {fmt(e.get('us'), '.1f')} | {fmt(e.get('gbs'), '.0f')} "
            f"| {fmt(share, '.0f')} | {fmt(pipe, '.0f')} | {fmt(t.get('us'), '.1f')} | {fmt(t.get('gbs'), '.0f')} | {fmt(ratio, '.2f')} "
            f"| {fmt(pipe_ratio, '.2f')} |"
        )
    text = "\n".join(lines) + "\n"
    if args.out:
        open(args.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
