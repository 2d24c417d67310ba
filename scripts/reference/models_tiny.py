"""Tiny random decoders made by transformers, and their logits, for kiln-models' parity tests.

Writes testdata/models/<name>/{config.json, model.safetensors, expected.json}.
Run: python scripts/reference/models_tiny.py  (requirements-models.txt)
"""

from __future__ import annotations

import json
import shutil

import torch
import transformers

from common import TESTDATA, provenance, write_json

OUT = TESTDATA / "models"

LLAMA_BASE = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
)

CASES = {
    # GQA, untied head, plain RoPE.
    "tiny-llama": dict(LLAMA_BASE, rope_theta=10000.0),
    # Tied embeddings (SmolLM2, Llama 3.2), MHA, Llama 3.1 RoPE scaling, explicit head_dim.
    "tiny-llama3-tied": dict(
        LLAMA_BASE,
        num_key_value_heads=4,
        head_dim=16,
        tie_word_embeddings=True,
        rope_scaling=dict(
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
        rope_theta=500000.0,
    ),
}

INPUTS = [
    [1, 5, 9, 17, 33, 65, 127, 2],
    [3],
    [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120],
]


def main() -> None:
    torch.manual_seed(0)
    for name, cfg in CASES.items():
        config = transformers.LlamaConfig(**cfg)
        model = transformers.LlamaForCausalLM(config).eval()
        # Non-trivial norms: random weights around 1.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
        out = OUT / name
        if out.exists():
            shutil.rmtree(out)
        model.save_pretrained(out, safe_serialization=True)
        cases = []
        with torch.no_grad():
            for ids in INPUTS:
                logits = model(torch.tensor([ids])).logits[0]
                # Decode check: the last token's logits from a cached forward equal the full pass.
                cases.append({"input_ids": ids, "logits": logits.tolist()})
            # Greedy generation, plain and with a repetition penalty (no eos: full length).
            generations = []
            for penalty in [1.0, 1.3]:
                prompt = INPUTS[0]
                out_ids = model.generate(
                    torch.tensor([prompt]),
                    max_new_tokens=12,
                    do_sample=False,
                    repetition_penalty=penalty,
                    eos_token_id=None,
                    pad_token_id=0,
                )[0, len(prompt):]
                generations.append(
                    {"prompt": prompt, "repetition_penalty": penalty, "max_new_tokens": 12, "tokens": out_ids.tolist()}
                )
        write_json(
            out / "expected.json",
            {
                "provenance": provenance("models_tiny.py", ["torch", "transformers", "safetensors"]),
                "cases": cases,
                "greedy": generations,
            },
        )
        for junk in ["generation_config.json"]:
            (out / junk).unlink(missing_ok=True)
        print(name, "->", out, json.loads((out / "config.json").read_text()).get("dtype"))


if __name__ == "__main__":
    main()
