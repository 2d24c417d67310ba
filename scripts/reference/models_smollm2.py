"""Greedy generations of SmolLM2-135M-Instruct (GGUF) by transformers, for kiln's end-to-end tests.

transformers loads the same GGUF file kiln loads (dequantized to f32), applies the chat template
from its metadata, and generates greedily. Writes testdata/models/smollm2_greedy.json.
Run: python scripts/reference/models_smollm2.py  (requirements-gguf.txt; `cargo xtask fetch smollm2`)
"""

from __future__ import annotations

import torch
import transformers

from common import TESTDATA, artifact, provenance, write_json

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three primary colors."},
    ],
    [{"role": "user", "content": "Translate 'good morning' into German."}],
]
# A follow-up to the last prompt, asked with the model's own first answer as history.
FOLLOW_UP = "And into French?"
MAX_NEW_TOKENS = 40


def main() -> None:
    gguf = artifact("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    cases = []
    prompts = list(PROMPTS)
    while prompts:
        messages = prompts.pop(0)
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = out[0, ids.shape[1]:].tolist()
        cases.append(
            {
                "messages": messages,
                "prompt_ids": ids[0].tolist(),
                "tokens": new,
                "text": tok.decode(new, skip_special_tokens=True),
            }
        )
        print(repr(cases[-1]["text"]))
        if messages is PROMPTS[-1]:
            prompts.append(
                messages
                + [{"role": "assistant", "content": cases[-1]["text"]}, {"role": "user", "content": FOLLOW_UP}]
            )
    write_json(
        TESTDATA / "models" / "smollm2_greedy.json",
        {
            "provenance": provenance("models_smollm2.py", ["torch", "transformers", "gguf", "tokenizers"]),
            "max_new_tokens": MAX_NEW_TOKENS,
            "eos_token_id": model.generation_config.eos_token_id,
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
