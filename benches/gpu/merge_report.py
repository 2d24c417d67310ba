"""Merges gpu_bench's JSON (kiln) and bench_torch_bnb.py's JSON (torch, bitsandbytes) into a
markdown report with ratios.

usage: python3 merge_report.py KILN.json TORCH_BNB.json > report.md

Ratios are speedups (reference time / kiln time, > 1 means kiln is faster), on the back-to-back
wall-clock time per call that both harnesses measure the same way.
"""

import json
import sys

TARGETS = {
    "nf4": 2.5,
    "nf4-dq": 2.5,
    "int8": 1.6,
}


def load(path):
    with open(path) as f:
        return json.load(f)


def key(r):
    return (r["kind"], tuple(r["shape"]), r["m"])


def main():
    kiln = load(sys.argv[1])
    ref = load(sys.argv[2])
    kt = {key(r): r for r in kiln.get("gemv", []) + kiln.get("int8", [])}
    rt = {key(r): r for r in ref.get("linear", [])}
    out = []
    d = ref.get("device", {})
    out.append("# kiln-quant device kernels vs torch / bitsandbytes\n")
    out.append(
        f"Card: {d.get('name')} ({d.get('sms')} SMs), driver {d.get('driver')}, torch {d.get('torch')} "
        f"(CUDA {d.get('cuda')}), bitsandbytes {d.get('bitsandbytes')}; kiln runtime "
        f"{kiln.get('device', {}).get('runtime')}. Times are medians of back-to-back calls (wall clock "
        f"per call, weights rotated past L2), f16 activations.\n"
    )
    c = kiln.get("checks", {})
    out.append(f"Correctness checks (kiln on the device vs the CPU codec): {c.get('total', 0) - c.get('failed', 0)}"
               f"/{c.get('total', 0)} passed.")
    failed = [r for r in c.get("results", []) if not r.get("pass")]
    for r in failed[:20]:
        out.append(f"- FAIL {r['name']}: max abs err {r['max_abs_err']}, {r.get('detail', '')}")
    out.append("")

    kc, rc = kiln.get("copy", {}), ref.get("copy", {})
    out.append("| bandwidth | kiln | torch |")
    out.append("|---|---|---|")
    out.append(f"| device copy 1 GiB (read + write) | {kc.get('gbps', 0):.0f} GB/s | {rc.get('gbps', 0):.0f} GB/s |")
    lf = kiln.get("launch", {})
    out.append(f"| kiln launch floor (tiny kernel, back to back) | {lf.get('us', 0):.2f} us/call | |")
    out.append("")

    out.append("| dequantize 8192x8192 | kiln us | kiln TB/s | bnb us | bnb TB/s | speedup |")
    out.append("|---|---|---|---|---|---|")
    bd = {(r.get("dq"), r.get("dtype")): r for r in ref.get("dequantize", []) if r.get("kind") == "bnb-dequantize"}
    for r in kiln.get("dequantize", []):
        b = bd.get((r["dq"], r["dtype"]))
        sp = f"{b['us'] / r['us']:.2f}x" if b else ""
        bus = f"{b['us']:.1f}" if b else ""
        btb = f"{b['tbps']:.2f}" if b else ""
        out.append(f"| {r['quant']}{'+DQ' if r['dq'] else ''} -> {r['dtype']} | {r['us']:.1f} | {r['tbps']:.2f} | {bus} | {btb} | {sp} |")
    bq = [r for r in ref.get("dequantize", []) if r.get("kind") == "bnb-quantize"]
    for r in kiln.get("quantize", []):
        kus = r["us"]
        bus = "{:.1f}".format(bq[0]["us"]) if bq else ""
        sp = "{:.2f}x".format(bq[0]["us"] / kus) if bq else ""
        out.append(f"| quantize nf4 from f16 | {kus:.1f} | | {bus} | | {sp} |")
    out.append("")

    for kind, bkind, title in [
        ("nf4", "bnb-nf4", "NF4"),
        ("nf4-dq", "bnb-nf4-dq", "NF4 + double quant"),
        ("fp4", "bnb-fp4", "FP4"),
        ("int8", "bnb-int8", "LLM.int8 (threshold 6.0)"),
    ]:
        target = TARGETS.get(kind)
        out.append(f"### {title}" + (f" (target at m=1: >= {target}x torch f16)" if target else ""))
        out.append("")
        out.append("| out x in | m | torch f16 us | bnb us | kiln us | kiln GB/s | vs torch f16 | vs bnb |")
        out.append("|---|---|---|---|---|---|---|---|")
        for (k, shape, m), r in sorted(kt.items(), key=lambda x: (x[0][1], x[0][2])):
            if k != kind:
                continue
            t = rt.get(("torch-f16", shape, m))
            b = rt.get((bkind, shape, m))
            vs_t = t["us"] / r["us"] if t else None
            vs_b = b["us"] / r["us"] if b else None
            mark = ""
            if target and m == 1 and vs_t is not None:
                mark = " ok" if vs_t >= target else " MISS"
            out.append(
                f"| {shape[0]}x{shape[1]} | {m} | {t['us'] if t else float('nan'):.2f} | "
                f"{b['us'] if b else float('nan'):.2f} | {r['us']:.2f} | {r['gbps']:.0f} | "
                f"{'' if vs_t is None else f'{vs_t:.2f}x'}{mark} | {'' if vs_b is None else f'{vs_b:.2f}x'} |"
            )
        out.append("")

    var = kiln.get("gemv_variants", [])
    if var:
        out.append("### kiln NF4 GEMV launch variants (m = 1)")
        out.append("")
        out.append("| out x in | variant | us | GB/s |")
        out.append("|---|---|---|---|")
        for r in var:
            out.append(f"| {r['shape'][0]}x{r['shape'][1]} | {r['variant']} | {r['us']:.2f} | {r['gbps']:.0f} |")
        out.append("")
    lin = kiln.get("linear4bit", [])
    if lin:
        out.append("### kiln `Linear4bit` (NF4, f16 compute) by token count")
        out.append("")
        out.append("Fused GEMV up to 16 tokens, dequantize + burn's matmul beyond; torch f16 where timed.")
        out.append("")
        out.append("| out x in | tokens | path | kiln us | torch f16 us |")
        out.append("|---|---|---|---|---|")
        for r in lin:
            t = rt.get(("torch-f16", tuple(r["shape"]), r["tokens"]))
            out.append(
                f"| {r['shape'][0]}x{r['shape'][1]} | {r['tokens']} | {r['path']} | {r['us']:.2f} | "
                f"{'' if t is None else format(t['us'], '.2f')} |"
            )
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
