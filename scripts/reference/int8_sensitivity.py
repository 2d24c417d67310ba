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

import bitsandbytes as bnb
import torch

import models_perplexity as mp


def main() -> None:
    torch.manual_seed(0)
    f32, ids = mp.load_f32_and_ids(256)
    model = mp.load_int8(f32)
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
