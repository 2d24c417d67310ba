#!/usr/bin/env python3
"""Tiny HF checkpoints quantized by transformers + bitsandbytes, for kiln-quant's format tests.

Builds a random tiny LlamaForCausalLM (1 layer, hidden 64, attention biases, untied lm_head),
saves it in f32 (single file and sharded), then loads it with
`from_pretrained(..., quantization_config=BitsAndBytesConfig(...), device_map="cpu")` and saves
the quantized model with `save_pretrained`:

- tiny-llama/f32/           model.safetensors + config.json (unquantized)
- tiny-llama/f32-sharded/   the same, sharded with model.safetensors.index.json
- tiny-llama/nf4-dq/        load_in_4bit, nf4, double quant, compute dtype bfloat16
- tiny-llama/fp4/           load_in_4bit, fp4, no double quant, compute dtype float32
- tiny-llama/int8/          load_in_8bit, threshold 6.0
- tiny-llama/<variant>.dequant.safetensors  bnb's dequantized weight of every quantized Linear
  (4-bit: flat-block dequantization as bnb's default/CUDA backends do it; int8:
  int8_vectorwise_dequant), keyed by the weight name
- tiny-llama/logits.safetensors  input ids and the logits of each model on them (CPU)

Every in_features is a multiple of 64, so bnb's CPU 4-bit kernel (which mis-indexes absmax
otherwise) computes the same as its CUDA path here.

Usage: python scripts/reference/bnb_checkpoint.py [OUT_DIR]   (default: testdata/quant)
"""

import datetime
import json
import os
import shutil
import sys

import torch

import accelerate
import bitsandbytes
import bitsandbytes.functional as F
import safetensors
import transformers
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

torch.set_num_threads(1)

VARIANTS = {
    "nf4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                   bnb_4bit_compute_dtype=torch.bfloat16),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                bnb_4bit_compute_dtype=torch.float32),
    "int8": dict(load_in_8bit=True, llm_int8_threshold=6.0),
}
INPUT_IDS = torch.tensor([[1, 17, 42, 90, 5, 63, 95, 8]])


def provenance():
    return {
        "generator": "scripts/reference/bnb_checkpoint.py",
        "bitsandbytes": bitsandbytes.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "safetensors": safetensors.__version__,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


def dequantize_dir(path):
    """bnb's dequantization of every quantized Linear weight in a saved checkpoint."""
    out = {}
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        t = {k: f.get_tensor(k) for k in keys}
    for k in keys:
        for qt in ("nf4", "fp4"):
            suffix = f".weight.quant_state.bitsandbytes__{qt}"
            if k.endswith(suffix):
                prefix = k[: -len(suffix)] + ".weight"
                qs_dict = {kk[len(prefix) + 1:]: v for kk, v in t.items() if kk.startswith(prefix + ".")}
                qs = F.QuantState.from_dict(qs_dict, device=torch.device("cpu"))
                absmax = qs.absmax
                if qs.nested:
                    absmax = F.dequantize_blockwise(qs.absmax, qs.state2)
                    absmax += qs.offset
                    absmax = absmax.float()
                code = _get_4bit_code(qs.quant_type, torch.device("cpu"))
                compute = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)
                out[prefix] = compute(t[prefix].reshape(-1), absmax, code, qs.blocksize, qs.shape, qs.dtype).contiguous()
        if k.endswith(".SCB"):
            prefix = k[: -len(".SCB")]
            out[prefix + ".weight"] = F.int8_vectorwise_dequant(t[prefix + ".weight"], t[k]).contiguous()
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "quant")
    root = os.path.join(out_dir, "tiny-llama")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)

    torch.manual_seed(2024)
    cfg = LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        attention_bias=True, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    # Random init leaves biases at zero: give them values so that bias handling is tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.02)
    f32_dir = os.path.join(root, "f32")
    model.save_pretrained(f32_dir)
    model.save_pretrained(os.path.join(root, "f32-sharded"), max_shard_size="60KB")

    logits = {"input_ids": INPUT_IDS.contiguous()}
    with torch.no_grad():
        logits["f32"] = model(INPUT_IDS).logits[0].contiguous()

    for name, kwargs in VARIANTS.items():
        qcfg = BitsAndBytesConfig(**kwargs)
        qmodel = AutoModelForCausalLM.from_pretrained(f32_dir, quantization_config=qcfg, device_map="cpu",
                                                      dtype=torch.float32).eval()
        vdir = os.path.join(root, name)
        qmodel.save_pretrained(vdir)
        with torch.no_grad():
            logits[name] = qmodel(INPUT_IDS).logits[0].float().contiguous()
        save_file(dequantize_dir(vdir), os.path.join(root, f"{name}.dequant.safetensors"), metadata=provenance())
        # The saved checkpoint must load back through transformers.
        reloaded = AutoModelForCausalLM.from_pretrained(vdir, device_map="cpu").eval()
        with torch.no_grad():
            again = reloaded(INPUT_IDS).logits[0].float()
        assert torch.equal(again, logits[name]), f"{name}: reloaded logits differ"
        print(name, "saved; max |logits - f32| =", (logits[name] - logits["f32"]).abs().max().item())

    save_file(logits, os.path.join(root, "logits.safetensors"), metadata=provenance())
    with open(os.path.join(root, "PROVENANCE.json"), "w") as f:
        json.dump({**provenance(), "variants": {k: {kk: str(vv) for kk, vv in v.items()} for k, v in VARIANTS.items()}},
                  f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
