#!/usr/bin/env python3
"""Golden vectors for kiln-quant, produced by bitsandbytes itself (its CPU path).

Writes three safetensors files under testdata/quant/:

- golden_4bit.safetensors: bnb.functional.quantize_4bit (NF4/FP4, blocksizes 32..4096, with and
  without double quantization) on f32/f16/bf16 tensors of many shapes, and the dequantized values.
- golden_blockwise8.safetensors: create_dynamic_map() and the CPU quantize_blockwise kernel
  (the codec behind double quantization).
- golden_int8.safetensors: int8_vectorwise_quant (row-wise absmax int8, with and without the
  outlier threshold), int8_vectorwise_dequant, and the LLM.int8 forward of Linear8bitLt.

Each file carries its case list and provenance in the safetensors `__metadata__`.

Usage: python scripts/reference/bnb_golden.py [OUT_DIR]   (default: testdata/quant)
Requirements: scripts/reference/requirements-bnb.txt
"""

import datetime
import json
import os
import sys

import numpy as np
import torch

import bitsandbytes
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code
from safetensors.torch import save_file

# torch's CPU sum (behind the double-quant offset `absmax.mean()`) splits large reductions across
# threads; one thread makes the reference independent of the machine's core count.
torch.set_num_threads(1)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def provenance(generator_note):
    return {
        "generator": "scripts/reference/bnb_golden.py",
        "note": generator_note,
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "date": datetime.date.today().isoformat(),
    }


def make_input(gen, kind, shape, dtype):
    n = int(np.prod(shape))
    if kind == "normal":
        x = torch.randn(n, generator=gen)
    elif kind == "wide":
        # Magnitudes spread over many decades within each block.
        x = torch.randn(n, generator=gen) * torch.exp(torch.randn(n, generator=gen) * 3.0)
    elif kind == "zeros_blocks":
        x = torch.randn(n, generator=gen)
        x[: min(n, 64)] = 0.0  # a whole leading block (or more) of zeros
        x[-min(n, 5) :] = 0.0  # and a zero tail (all-zero partial last block when n % bs <= 5)
    elif kind == "all_zero":
        x = torch.zeros(n)
    elif kind == "tiny":
        x = torch.randn(n, generator=gen) * (1e-30 if dtype == torch.float32 else 1e-6)
    elif kind == "subnormal":
        # f32 subnormals (and smaller than the 1e-38 clamp bnb applies to absmax).
        x = torch.randn(n, generator=gen) * 1e-39
    elif kind == "huge":
        big = {torch.float32: 3e38, torch.float16: 6e4, torch.bfloat16: 3e38}[dtype]
        x = (torch.rand(n, generator=gen) * 2 - 1) * big
    elif kind == "ties":
        # Values on the exact midpoints between codes (relative to a block max of 1), plus
        # +/-0, +/-1 and the codes themselves: exercises the rounding rule at the boundaries.
        nf4 = _get_4bit_code("nf4", torch.device("cpu"))
        fp4 = _get_4bit_code("fp4", torch.device("cpu"))
        mids = torch.cat([(nf4[:-1] + nf4[1:]) / 2, fp4, nf4])
        fs = torch.sort(fp4).values
        mids = torch.cat([mids, (fs[:-1] + fs[1:]) / 2, torch.tensor([0.0, -0.0, 1.0, -1.0, 2.6e-3, -2.6e-3])])
        reps = -(-n // mids.numel())
        x = mids.repeat(reps)[:n].clone()
        x[::32] = 1.0  # keep the block max at exactly 1 for blocksize 32 and up
    else:
        raise ValueError(kind)
    return x.reshape(shape).to(dtype)


def dequant_reference(packed, qs):
    """bnb's dequantization with flat blocks (its default backend, the CUDA semantics).

    bnb 0.50.2's AVX-512 CPU kernel indexes absmax per row (row * (cols / blocksize) + col /
    blocksize), which is wrong when the last dimension is not a multiple of the blocksize; the
    public CPU call is recorded too, and whether it agreed.
    """
    absmax = qs.absmax
    if qs.nested:
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2)
        absmax += qs.offset
        absmax = absmax.float()
    code = _get_4bit_code(qs.quant_type, packed.device)
    compute = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)
    flat = compute(packed.reshape(-1), absmax, code, qs.blocksize, qs.shape, qs.dtype)
    public = F.dequantize_4bit(packed, qs)
    bits = torch.int32 if flat.dtype == torch.float32 else torch.int16
    agrees = torch.equal(flat.reshape(-1).view(bits), public.reshape(-1).view(bits))
    return flat, absmax, bool(agrees)


def golden_4bit(out_dir):
    gen = torch.Generator().manual_seed(1234)
    tensors, cases = {}, []
    specs = []
    # (shape, kind, blocksizes)
    shapes = [
        ((1,), "normal", [64]),
        ((3,), "normal", [32, 64]),
        ((7, 5), "normal", [32, 64]),
        ((64,), "normal", [32, 64, 128]),
        ((65,), "normal", [64]),
        ((2, 33), "normal", [32, 64, 4096]),
        ((16, 64), "normal", [32, 64, 128, 256]),
        ((17, 97), "wide", [64, 256]),
        ((24, 96), "zeros_blocks", [32, 64]),
        ((2, 70), "all_zero", [64]),
        ((9, 64), "tiny", [64]),
        ((4, 40), "huge", [64]),
        ((8, 100), "ties", [32, 64]),
    ]
    for shape, kind, bss in shapes:
        for dtype_name in ["float32", "float16", "bfloat16"]:
            for bs in bss:
                for qt in ["nf4", "fp4"]:
                    specs.append((shape, kind, bs, qt, dtype_name, False))
    # Large blocksizes, fewer dtypes (keeps the fixture small).
    for shape, kind, bss in [((48, 100), "normal", [4096, 2048, 1024, 512])]:
        for dtype_name in ["float32", "bfloat16"]:
            for bs in bss:
                for qt in ["nf4", "fp4"]:
                    specs.append((shape, kind, bs, qt, dtype_name, False))
    specs.append(((3, 50), "subnormal", 64, "nf4", "float32", False))
    specs.append(((3, 50), "subnormal", 64, "fp4", "float32", False))
    # Double quantization: enough blocks for several nested blocks of 256, a partial last one.
    for shape, kind, bs, qt, dt in [
        ((20, 900), "normal", 64, "nf4", "float32"),
        ((20, 900), "wide", 64, "fp4", "float32"),
        ((17, 1001), "normal", 64, "nf4", "bfloat16"),
        ((33, 1001), "normal", 128, "nf4", "float16"),
        ((130, 129), "zeros_blocks", 32, "fp4", "bfloat16"),
        ((7, 5), "normal", 64, "nf4", "float32"),
        ((2, 70), "all_zero", 64, "nf4", "float32"),
        ((8, 4096), "normal", 512, "nf4", "float16"),
    ]:
        specs.append((shape, kind, bs, qt, dt, True))

    for i, (shape, kind, bs, qt, dtype_name, dq) in enumerate(specs):
        dtype = DTYPES[dtype_name]
        x = make_input(gen, kind, shape, dtype)
        packed, qs = F.quantize_4bit(x, blocksize=bs, compress_statistics=dq, quant_type=qt)
        deq, absmax_f32, cpu_agrees = dequant_reference(packed, qs)
        p = f"c{i}"
        tensors[f"{p}.input"] = x.contiguous()
        tensors[f"{p}.packed"] = packed.reshape(-1).contiguous()
        tensors[f"{p}.dequant"] = deq.contiguous()
        case = {
            "name": p,
            "shape": list(shape),
            "kind": kind,
            "blocksize": bs,
            "quant_type": qt,
            "dtype": dtype_name,
            "double_quant": dq,
            "bnb_cpu_dequant_agrees": cpu_agrees,
        }
        if dq:
            tensors[f"{p}.absmax_q"] = qs.absmax.contiguous()
            tensors[f"{p}.nested_absmax"] = qs.state2.absmax.contiguous()
            tensors[f"{p}.offset"] = qs.offset.reshape(1).float().contiguous()
            tensors[f"{p}.absmax_dequant"] = absmax_f32.contiguous()
            # The JSON bnb stores with the tensors (quant_state.bitsandbytes__*), verbatim.
            qsd = qs.as_dict(packed=True)
            key = f"quant_state.bitsandbytes__{qt}"
            case["quant_state_json"] = bytes(qsd[key].numpy()).decode("utf-8")
            case["nested_blocksize"] = qs.state2.blocksize
        else:
            tensors[f"{p}.absmax"] = qs.absmax.contiguous()
            qsd = qs.as_dict(packed=True)
            case["quant_state_json"] = bytes(qsd[f"quant_state.bitsandbytes__{qt}"].numpy()).decode("utf-8")
        cases.append(case)

    meta = provenance("quantize_4bit on CPU; dequant = bnb default-backend flat-block dequantization")
    meta["cases"] = json.dumps(cases)
    save_file(tensors, os.path.join(out_dir, "golden_4bit.safetensors"), metadata=meta)
    return len(cases)


def golden_blockwise8(out_dir):
    gen = torch.Generator().manual_seed(99)
    code = F.create_dynamic_map()
    tensors = {"dynamic_map": code.contiguous()}
    cases = []
    specs = [
        (256 * 7 + 13, "normal", 256),
        (1000, "wide", 256),
        (300, "offset", 256),
        (512, "zeros_blocks", 256),
        (777, "normal", 64),
        (5, "normal", 256),
        (4096, "ties8", 256),
    ]
    for i, (n, kind, bs) in enumerate(specs):
        if kind == "offset":
            x = torch.rand(n, generator=gen) * 0.1 - 0.05  # absmax - mean(absmax) looks like this
        elif kind == "ties8":
            mids = (code[:-1] + code[1:]) * 0.5
            x = torch.cat([mids, code, torch.tensor([0.0, 1.0, -1.0])]).repeat(8)[:n].clone()
            x[::256] = 1.0
        elif kind == "zeros_blocks":
            x = torch.randn(n, generator=gen)
            x[:256] = 0.0
        else:
            x = make_input(gen, kind, (n,), torch.float32)
        q, qs = F.quantize_blockwise(x, code=code, blocksize=bs)
        deq = F.dequantize_blockwise(q, qs)
        p = f"c{i}"
        tensors[f"{p}.input"] = x.contiguous()
        tensors[f"{p}.codes"] = q.contiguous()
        tensors[f"{p}.absmax"] = qs.absmax.contiguous()
        tensors[f"{p}.dequant"] = deq.contiguous()
        cases.append({"name": p, "n": n, "kind": kind, "blocksize": bs})
    meta = provenance("create_dynamic_map(); CPU quantize_blockwise/dequantize_blockwise (C++ kernels)")
    meta["cases"] = json.dumps(cases)
    save_file(tensors, os.path.join(out_dir, "golden_blockwise8.safetensors"), metadata=meta)
    return len(cases)


def golden_int8(out_dir):
    gen = torch.Generator().manual_seed(7)
    tensors, cases = {}, []
    # Row-wise quantization (int8_vectorwise_quant) with and without the outlier threshold.
    specs = [
        ((5, 17), "float16", 0.0),
        ((5, 17), "float32", 0.0),
        ((5, 17), "bfloat16", 0.0),
        ((16, 64), "float16", 6.0),
        ((16, 64), "float32", 6.0),
        ((16, 64), "bfloat16", 6.0),
        ((1, 40), "float16", 6.0),
        ((9, 33), "float16", 5.3),
        ((4, 8), "float16", 6.0),  # with an all-zero row and an all-outlier row
        ((64, 128), "float32", 0.0),
    ]
    for i, (shape, dtype_name, thr) in enumerate(specs):
        dtype = DTYPES[dtype_name]
        x = torch.randn(shape, generator=gen) * 2.5
        if shape == (4, 8):
            x[1] = 0.0
            x[2] = 9.0
        x = x.to(dtype)
        cb, scb, cols = F.int8_vectorwise_quant(x.clone(), threshold=thr)
        deq = F.int8_vectorwise_dequant(cb, scb)
        p = f"r{i}"
        tensors[f"{p}.input"] = x.contiguous()
        tensors[f"{p}.cb"] = cb.contiguous()
        tensors[f"{p}.scb"] = scb.contiguous()
        tensors[f"{p}.dequant"] = deq.contiguous()
        if cols is not None:
            tensors[f"{p}.outlier_cols"] = cols.to(torch.int64).contiguous()
        cases.append({"name": p, "shape": list(shape), "dtype": dtype_name, "threshold": thr,
                      "has_outlier_cols": cols is not None})

    # LLM.int8 forward through Linear8bitLt (inference: has_fp16_weights=False, eval mode).
    mm_specs = [
        (3, 64, 48, "float32", 6.0, True),
        (5, 64, 32, "float16", 6.0, True),
        (4, 96, 40, "float32", 0.0, False),
        (1, 128, 64, "float16", 6.0, False),
        (7, 256, 96, "float32", 3.0, True),
    ]
    mm_cases = []
    for i, (tokens, fin, fout, dtype_name, thr, bias) in enumerate(mm_specs):
        dtype = DTYPES[dtype_name]
        w = torch.randn(fout, fin, generator=gen) * 0.05
        b = torch.randn(fout, generator=gen) * 0.1 if bias else None
        x = torch.randn(tokens, fin, generator=gen)
        # A few outlier hidden dims, as in LLM.int8's motivation.
        for col in (3, fin // 2):
            x[:, col] *= 12.0
        x = x.to(dtype)
        lin = bitsandbytes.nn.Linear8bitLt(fin, fout, bias=bias, has_fp16_weights=False, threshold=thr)
        lin.weight = bitsandbytes.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
        if bias:
            lin.bias = torch.nn.Parameter(b.clone(), requires_grad=False)
        lin = lin.to("cpu")
        lin.eval()
        with torch.no_grad():
            out = lin(x)
        ca, sca, cols = F.int8_vectorwise_quant(x.to(torch.float16).clone(), threshold=thr)
        p = f"m{i}"
        tensors[f"{p}.x"] = x.contiguous()
        tensors[f"{p}.weight"] = w.contiguous()
        if bias:
            tensors[f"{p}.bias"] = b.contiguous()
        tensors[f"{p}.cb"] = lin.state.CB.contiguous() if lin.state.CB is not None else lin.weight.data.contiguous()
        tensors[f"{p}.scb"] = (lin.state.SCB if lin.state.SCB is not None else lin.weight.SCB).contiguous()
        tensors[f"{p}.ca"] = ca.contiguous()
        tensors[f"{p}.sca"] = sca.contiguous()
        if cols is not None:
            tensors[f"{p}.outlier_cols"] = cols.to(torch.int64).contiguous()
        tensors[f"{p}.out"] = out.contiguous()
        mm_cases.append({"name": p, "tokens": tokens, "in": fin, "out": fout, "dtype": dtype_name,
                         "threshold": thr, "bias": bias})

    meta = provenance("int8_vectorwise_quant/dequant (default backend); Linear8bitLt forward on CPU")
    meta["cases"] = json.dumps(cases)
    meta["matmul_cases"] = json.dumps(mm_cases)
    save_file(tensors, os.path.join(out_dir, "golden_int8.safetensors"), metadata=meta)
    return len(cases) + len(mm_cases)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "quant")
    os.makedirs(out_dir, exist_ok=True)
    print("4bit cases:", golden_4bit(out_dir))
    print("blockwise8 cases:", golden_blockwise8(out_dir))
    print("int8 cases:", golden_int8(out_dir))


if __name__ == "__main__":
    main()
