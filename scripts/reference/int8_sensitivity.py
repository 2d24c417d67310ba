#!/usr/bin/env python3
"""How sensitive LLM.int8's perplexity on the short SmolLM2 slice is to the last bits of its inputs.

Loads SmolLM2-135M-Instruct (GGUF dequantized to f32) with transformers + bitsandbytes
`load_in_8bit=True, llm_int8_threshold=6.0` exactly as models_perplexity.py does, then reruns the
256-token / context 128 / stride 64 perplexity while every Linear8bitLt input is multiplied by
`1 + eps * N(0, 1)` (eps 1e-7 and 1e-6, five draws each). The spread is bitsandbytes' own
sensitivity: an activation that crosses |x| = 6 moves a whole column between the int8 and the
float path. BENCHMARKS.md quotes its output.

Usage: python scripts/reference/int8_sensitivity.py  (requirements-perplexity.txt)
"""

import tempfile

import bitsandbytes as bnb
import torch
import transformers

import models_perplexity as mp


def main() -> None:
    torch.manual_seed(0)
    gguf = mp.artifact(*mp.MODEL)
    text = mp.artifact(*mp.TEXT).read_text(encoding="utf-8")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ids = tok(text, return_tensors="pt").input_ids[:, :256]
    f32 = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    with tempfile.TemporaryDirectory() as tmp:
        mp.save_plain(f32, tmp)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=config, dtype=torch.float32, device_map="cpu"
        ).eval()
    forward = bnb.nn.Linear8bitLt.forward
    print(f"eps 0: ppl {mp.strided_perplexity(model, ids, 128, 64)['ppl']:.4f}")
    for i, eps in enumerate([1e-7] * 5 + [1e-6] * 5):
        g = torch.Generator().manual_seed(100 + i)

        def noisy(self, x, eps=eps, g=g):
            return forward(self, x * (1 + eps * torch.randn(x.shape, generator=g)))

        bnb.nn.Linear8bitLt.forward = noisy
        print(f"eps {eps:g}: ppl {mp.strided_perplexity(model, ids, 128, 64)['ppl']:.4f}", flush=True)
    bnb.nn.Linear8bitLt.forward = forward


if __name__ == "__main__":
    main()
