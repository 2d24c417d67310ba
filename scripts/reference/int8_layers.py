#!/usr/bin/env python3
"""bitsandbytes' Linear8bitLt on SmolLM2-135M's real activations, for kiln's layer-level int8 test.

Loads SmolLM2-135M-Instruct (GGUF dequantized to f32) with transformers + bitsandbytes
`load_in_8bit=True, llm_int8_threshold=6.0` as models_perplexity.py does, runs the first window
of the perplexity slice (128 tokens of Hamlet), keeps the inputs of a few int8 layers, and calls
each layer again on the first ROWS rows of its input (the attention-sink token included, where the
outliers are). Saved per layer: `x` (f32 input), `y` (bitsandbytes' output), `scb` (its weight
row absmax). The layers: an attention projection and two MLP down projections, the last of which
has most of its hidden dims above the threshold. The header's metadata key `kiln` holds the
provenance, the model, the threshold and each layer's count of outlier dims (JSON).

Writes testdata/models/smollm2_int8_layers.safetensors.
Run: python scripts/reference/int8_layers.py  (requirements-perplexity.txt;
`cargo xtask fetch smollm2 shakespeare`)
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

import models_perplexity as mp
from common import TESTDATA, provenance

LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.11.mlp.down_proj", "model.layers.29.mlp.down_proj"]
ROWS = 16


def main() -> None:
    f32, ids = mp.load_f32_and_ids(128)
    model = mp.load_int8(f32)
    modules = dict(model.named_modules())
    inputs = {}
    hooks = [
        modules[name].register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0][0]))
        for name in LAYERS
    ]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    tensors, info = {}, {}
    with torch.no_grad():
        for name in LAYERS:
            x = inputs[name][:ROWS].contiguous()
            y = modules[name](x)
            outliers = int((x.to(torch.float16).abs() >= 6.0).any(dim=0).sum())
            tensors[f"{name}.x"] = x
            tensors[f"{name}.y"] = y.contiguous()
            tensors[f"{name}.scb"] = modules[name].state.SCB.contiguous()
            info[name] = {"outlier_cols": outliers}
            print(f"{name}: x {tuple(x.shape)}, {outliers} outlier hidden dims, |y| max {y.abs().max():.3f}")
    # One metadata key: safetensors writes several in hash order, so reruns would differ in bytes.
    meta = {
        "provenance": provenance("int8_layers.py", ["torch", "transformers", "gguf", "bitsandbytes"]),
        "model": "/".join(mp.MODEL),
        "threshold": 6.0,
        "layers": info,
    }
    save_file(tensors, TESTDATA / "models" / "smollm2_int8_layers.safetensors", metadata={"kiln": json.dumps(meta)})


if __name__ == "__main__":
    main()
