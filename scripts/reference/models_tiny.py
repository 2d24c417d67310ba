"""Tiny random decoders made by transformers, and their logits, for kiln-models' parity tests.

Writes testdata/models/<name>/{config.json, model.safetensors, expected.json}.
Run: python scripts/reference/models_tiny.py  (requirements-models.txt)

expected.json holds, per model:
* "cases": single sequences and their logits at every position;
* "padded": a left-padded batch (transformers' `generate` layout: pad id 0, attention_mask,
  position ids `cumsum - 1` with padding at 0) with its logits, `null` at padding positions,
  then "continuation": two more tokens per row through the KV cache, with their logits;
* "greedy": greedy generations of one prompt (plain and with a repetition penalty);
* "batch_greedy": greedy generation of the padded batch by `generate`.

Sliding windows are smaller than the inputs and soft-capping is strong enough to matter, so the
fixtures check those paths; the models use eager attention.
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

GEMMA_BASE = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=112,
    num_attention_heads=4,
    head_dim=16,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    # Larger than the default 0.02 so attention patterns (and soft-capping) are far from uniform.
    initializer_range=0.15,
)

CASES = {
    # GQA, untied head, plain RoPE.
    "tiny-llama": ("llama", dict(LLAMA_BASE, rope_theta=10000.0)),
    # Tied embeddings (SmolLM2, Llama 3.2), MHA, Llama 3.1 RoPE scaling, explicit head_dim.
    "tiny-llama3-tied": (
        "llama",
        dict(
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
    ),
    # Llama's layout with a sliding window of 4 on every layer.
    "tiny-mistral": (
        "mistral",
        dict(LLAMA_BASE, num_key_value_heads=1, sliding_window=4, rope_theta=10000.0, initializer_range=0.1),
    ),
    # GeGLU, (1 + w) norms, sqrt(hidden) embedding scale, tied head, MQA.
    "tiny-gemma": ("gemma", dict(GEMMA_BASE, num_hidden_layers=2, num_key_value_heads=1, rope_theta=10000.0)),
    # Local (window 4) / global layers, attention and final soft-capping, query_pre_attn_scalar,
    # four norms per layer.
    "tiny-gemma2": (
        "gemma2",
        dict(
            GEMMA_BASE,
            num_hidden_layers=3,
            num_key_value_heads=2,
            sliding_window=4,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
            rope_theta=10000.0,
        ),
    ),
    # Q/K norms, local and global RoPE bases (global with linear scaling, as Gemma 3 4B+),
    # explicit layer types, window 4.
    "tiny-gemma3": (
        "gemma3_text",
        dict(
            GEMMA_BASE,
            num_hidden_layers=3,
            num_key_value_heads=2,
            sliding_window=4,
            query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        ),
    ),
}

CLASSES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    "gemma": (transformers.GemmaConfig, transformers.GemmaForCausalLM),
    "gemma2": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM),
    "gemma3_text": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM),
}

INPUTS = [
    [1, 5, 9, 17, 33, 65, 127, 2],
    [3],
    [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120],
]

# Left-padded to the longest; real tokens never use the pad id 0.
PADDED = [
    [7, 8, 9, 10, 11, 12, 13, 14],
    [21, 22, 23, 24, 25],
    [31, 32],
]
CONTINUATION = [[40, 41], [50, 51], [60, 61]]
PAD = 0


def padded_batch():
    width = max(len(r) for r in PADDED)
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in PADDED])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in PADDED])
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """transformers' `_prepare_position_ids_for_generation`."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def rows_with_nulls(logits: torch.Tensor, mask: torch.Tensor):
    return [
        [logits[b, j].tolist() if mask[b, j] else None for j in range(logits.shape[1])] for b in range(logits.shape[0])
    ]


def main() -> None:
    torch.manual_seed(0)
    for name, (model_type, cfg) in CASES.items():
        config_class, model_class = CLASSES[model_type]
        config = config_class(**cfg, attn_implementation="eager")
        model = model_class(config).eval()
        # Non-trivial norms: Llama's `w` around 1, Gemma's `1 + w` with `w` around 0.
        offset = 0.0 if model_type.startswith("gemma") else 1.0
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(offset + 0.1 * torch.randn_like(p))
        out = OUT / name
        if out.exists():
            shutil.rmtree(out)
        model.save_pretrained(out, safe_serialization=True)
        cases = []
        with torch.no_grad():
            for ids in INPUTS:
                logits = model(torch.tensor([ids])).logits[0]
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
            ids, mask = padded_batch()
            first = model(ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
            more = torch.tensor(CONTINUATION)
            full_mask = torch.cat([mask, torch.ones_like(more)], dim=1)
            second = model(
                more,
                attention_mask=full_mask,
                position_ids=positions(full_mask)[:, -more.shape[1]:],
                cache=first.cache,
                use_cache=True,
            )
            padded = {
                "input_ids": ids.tolist(),
                "attention_mask": mask.tolist(),
                "logits": rows_with_nulls(first.logits, mask),
                "continuation": {"input_ids": more.tolist(), "logits": second.logits.tolist()},
            }
            batch_new = model.generate(
                ids, attention_mask=mask, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=PAD
            )[:, ids.shape[1]:]
            batch_greedy = {"max_new_tokens": 6, "tokens": batch_new.tolist()}
        write_json(
            out / "expected.json",
            {
                "provenance": provenance("models_tiny.py", ["torch", "transformers", "safetensors"]),
                "cases": cases,
                "greedy": generations,
                "padded": padded,
                "batch_greedy": batch_greedy,
            },
        )
        for junk in ["generation_config.json"]:
            (out / junk).unlink(missing_ok=True)
        print(name, "->", out, json.loads((out / "config.json").read_text()).get("dtype"))


if __name__ == "__main__":
    main()
