"""A tiny random BERT encoder made by transformers, and its last hidden states, for kiln-models'
BERT parity tests.

Writes testdata/models/tiny-bert/{config.json, model.safetensors, expected.json}. The cases cover
right padding (attention mask zeros), sentence pairs (token type ids 1) and both together.
Run: python scripts/reference/models_bert.py  (requirements-models.txt)
"""

from __future__ import annotations

import shutil

import torch
import transformers

from common import TESTDATA, provenance, write_json

OUT = TESTDATA / "models" / "tiny-bert"

CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    hidden_act="gelu",
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    # Larger than BERT's 0.02, so attention is far from uniform and masking bugs show.
    initializer_range=0.2,
)

# Each case: a batch of (input_ids, token_type_ids, attention_mask) rows, right-padded with 0.
CASES = {
    "padded": [
        ([2, 15, 27, 33, 48, 9, 3], [0] * 7, [1] * 7),
        ([2, 40, 41, 3, 0, 0, 0], [0] * 7, [1, 1, 1, 1, 0, 0, 0]),
    ],
    "pair": [
        ([2, 11, 12, 13, 3, 21, 22, 23, 24, 3], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1], [1] * 10),
    ],
    "pair_padded": [
        ([2, 5, 6, 3, 7, 8, 9, 3], [0, 0, 0, 0, 1, 1, 1, 1], [1] * 8),
        ([2, 98, 3, 50, 3, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]),
    ],
    "one_token": [
        ([2], [0], [1]),
    ],
}


def main() -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(**CONFIG)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    model.set_attn_implementation("eager")
    # Non-trivial LayerNorms: weights around 1, biases around 0.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "LayerNorm.bias" in name:
                p.copy_(0.1 * torch.randn_like(p))
    if OUT.exists():
        shutil.rmtree(OUT)
    model.save_pretrained(OUT, safe_serialization=True)
    cases = []
    with torch.no_grad():
        for name, rows in CASES.items():
            ids = torch.tensor([r[0] for r in rows])
            types = torch.tensor([r[1] for r in rows])
            mask = torch.tensor([r[2] for r in rows])
            hidden = model(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
            cases.append(
                {
                    "name": name,
                    "input_ids": ids.tolist(),
                    "token_type_ids": types.tolist(),
                    "attention_mask": mask.tolist(),
                    # [batch][seq][hidden], padded positions included.
                    "last_hidden_state": hidden.tolist(),
                }
            )
    write_json(
        OUT / "expected.json",
        {
            "provenance": provenance("models_bert.py", ["torch", "transformers", "safetensors"]),
            "cases": cases,
        },
    )
    print("tiny-bert ->", OUT)


if __name__ == "__main__":
    main()
