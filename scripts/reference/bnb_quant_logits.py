#!/usr/bin/env python3
"""Logits of the tiny Llama loaded quantized by transformers + bitsandbytes, for kiln-models'
quantized-loading parity tests.

Loads testdata/quant/tiny-llama/f32 with
`from_pretrained(..., quantization_config=BitsAndBytesConfig(...), dtype=torch.float32,
device_map="cpu")` for each variant below (every compute dtype float32, so a CPU backend can
match it), runs a few inputs through it, and writes
testdata/quant/tiny-llama/quant_logits.safetensors:

- `<case>.input_ids`            i64 `[seq]` for each case
- `<variant>.<case>.logits`     f32 `[seq, vocab]`
- `f32.<case>.logits`           the unquantized model's logits
- `<variant>.<module>.weight`   bnb's dequantization of every quantized Linear weight (only for
  `nf4`, the variant testdata/quant/tiny-llama has no saved checkpoint of)

On a CPU with AVX512-BF16, bitsandbytes 0.50.2's `Linear4bit.forward` repacks the weight for its
fused CPU kernel at the first inference call, rounding the absmax to bfloat16 and computing in
bfloat16 whatever `bnb_4bit_compute_dtype` says (`_convert_weight_packed_for_cpu`). That is a
property of one CPU kernel, not of the format: the script turns it off
(`support_avx512bf16_for_cpu = False`) so every machine takes bnb's default path
(`dequantize_4bit` to the compute dtype, then `torch.nn.functional.linear`), the path its CUDA
backend computes too.

Usage: python scripts/reference/bnb_quant_logits.py  (requirements-bnb.txt)
"""

from __future__ import annotations

import json

import torch
import bitsandbytes.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from common import TESTDATA, provenance

torch.set_num_threads(1)
torch.manual_seed(0)

ROOT = TESTDATA / "quant" / "tiny-llama"

VARIANTS = {
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
                bnb_4bit_compute_dtype=torch.float32),
    "nf4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                   bnb_4bit_compute_dtype=torch.float32),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                bnb_4bit_compute_dtype=torch.float32),
    "int8": dict(load_in_8bit=True, llm_int8_threshold=6.0),
}

CASES = {
    "a": [1, 17, 42, 90, 5, 63, 95, 8],
    "b": [3, 60, 61, 62, 2, 0, 77, 41, 12, 88, 19, 50, 33],
}


def dequantized_weights(model) -> dict[str, torch.Tensor]:
    """bnb's own dequantization of each 4-bit Linear weight."""
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            assert not getattr(state, "packing_format_for_cpu", False), name
            out[f"{name}.weight"] = F.dequantize_4bit(weight.data, state).float().contiguous()
    return out


def main() -> None:
    src = ROOT / "f32"
    tensors: dict[str, torch.Tensor] = {}
    for case, ids in CASES.items():
        tensors[f"{case}.input_ids"] = torch.tensor(ids, dtype=torch.int64)

    models = {"f32": AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()}
    for name, kwargs in VARIANTS.items():
        model = AutoModelForCausalLM.from_pretrained(
            src, quantization_config=BitsAndBytesConfig(**kwargs), dtype=torch.float32, device_map="cpu"
        ).eval()
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        models[name] = model

    with torch.no_grad():
        for name, model in models.items():
            for case, ids in CASES.items():
                logits = model(torch.tensor([ids])).logits[0]
                tensors[f"{name}.{case}.logits"] = logits.float().contiguous()
            if name != "f32":
                diff = (tensors[f"{name}.a.logits"] - tensors["f32.a.logits"]).abs().max().item()
                print(f"{name}: max |logits - f32| on case a = {diff:.6f}")
    for key, w in dequantized_weights(models["nf4"]).items():
        tensors[f"nf4.{key}"] = w

    meta = provenance("bnb_quant_logits.py", ["torch", "transformers", "bitsandbytes", "accelerate", "safetensors"])
    metadata = {
        "provenance": json.dumps(meta),
        "variants": json.dumps({k: {kk: str(vv) for kk, vv in v.items()} for k, v in VARIANTS.items()}),
        "source": "testdata/quant/tiny-llama/f32",
    }
    save_file(tensors, ROOT / "quant_logits.safetensors", metadata=metadata)
    print("wrote", ROOT / "quant_logits.safetensors")


if __name__ == "__main__":
    main()
