"""Logits and a greedy continuation of Gemma 3 270M (GGUF) by transformers, for kiln's
real-model test.

transformers loads the same GGUF file kiln loads (every tensor dequantized to f32, Gemma's
`w + 1` norms shifted back) as `Gemma3ForCausalLM` with eager attention. For one prompt we
store, per position, the top-k logits and the logits of a fixed sample of token ids (not the
262k-wide rows), and the greedy continuation. Writes testdata/models/gemma3_270m.json.
Run: python scripts/reference/models_gemma3.py  (requirements-gguf.txt; `cargo xtask fetch gemma3`)
"""

from __future__ import annotations

import torch
import transformers

from common import TESTDATA, artifact, provenance, write_json

# The file has no chat template: a plain prompt, tokenized as transformers does (bos first).
PROMPT = "The capital of France is Paris. The capital of Germany is"
TOP_K = 16
# Spread over the whole vocabulary, plus the ids near the start (special tokens).
SAMPLE_IDS = sorted(set(range(0, 8)) | set(range(1, 262144, 4099)))
NEW_TOKENS = 8


def main() -> None:
    gguf = artifact("gemma3", "gemma-3-270m-q4_k_m.gguf")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0]
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0)
    positions = []
    for row in logits:
        top = torch.topk(row, TOP_K)
        positions.append(
            {
                "top_ids": top.indices.tolist(),
                "top_logits": top.values.tolist(),
                "sample_logits": row[SAMPLE_IDS].tolist(),
            }
        )
    new = out[0, ids.shape[1]:].tolist()
    print(type(model).__name__, ids.shape, repr(tok.decode(new)))
    write_json(
        TESTDATA / "models" / "gemma3_270m.json",
        {
            "provenance": provenance("models_gemma3.py", ["torch", "transformers", "gguf"]),
            "artifact": "gemma3/gemma-3-270m-q4_k_m.gguf",
            "model_class": type(model).__name__,
            "prompt": PROMPT,
            "prompt_ids": ids[0].tolist(),
            "sample_ids": SAMPLE_IDS,
            "positions": positions,
            "greedy": {"tokens": new, "text": tok.decode(new)},
        },
    )


if __name__ == "__main__":
    main()
