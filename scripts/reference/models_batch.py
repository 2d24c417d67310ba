"""Greedy generation of a left-padded batch by transformers on the tiny Llama fixture.

Three prompts of different lengths are left-padded (pad id 0, `attention_mask` 0 there) and
generated greedily in one `generate` call, as transformers does for batched prompts: each row
continues from its own last real token with positions counted over its real tokens, and a row
that emits an end-of-sequence token is finished (transformers pads it from then on; kiln
produces nothing more). Cases: no eos (every row runs to `max_new_tokens`), an eos id chosen
from the free-running output so that two rows stop at different steps and one never does, and
a repetition penalty. Each prompt is also generated alone (no padding); the script checks that the
batch and the lone runs agree, so the fixture holds both.

Reads testdata/models/tiny-llama (made by models_tiny.py); writes
testdata/models/tiny_llama_batch.json.
Run: python scripts/reference/models_batch.py  (requirements-models.txt)
"""

from __future__ import annotations

import torch
import transformers

from common import TESTDATA, provenance, write_json

MODEL = TESTDATA / "models" / "tiny-llama"
PROMPTS = [
    [1, 5, 9, 17, 33, 65, 127, 4],
    [1, 42, 7],
    [1, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111],
]
PAD = 0
MAX_NEW_TOKENS = 12


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = [[PAD] * (width - len(p)) + p for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask)


def cut(row: list[int], eos: int | None) -> tuple[list[int], str]:
    """A row's new tokens up to and including its first eos (transformers pads after it)."""
    if eos is not None and eos in row:
        return row[: row.index(eos) + 1], "eos"
    return row, "max_tokens"


def run(model, prompts, eos, penalty) -> list[list[int]]:
    ids, mask = left_pad(prompts)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=PAD,
            repetition_penalty=penalty,
        )
    return out[:, ids.shape[1] :].tolist()


def choose_eos(free: list[list[int]]) -> int:
    """The first token of the free-running output that would stop two rows, at different steps
    (not the first two), and never the third."""
    for step in range(MAX_NEW_TOKENS):
        for row in free:
            t = row[step]
            stops = [r.index(t) if t in r else None for r in free]
            early = [s for s in stops if s is not None]
            if None in stops and len(early) >= 2 and len(set(early)) == len(early) and min(early) >= 2:
                return t
    raise SystemExit("no eos candidate stops the rows at different steps")


def main() -> None:
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    free = run(model, PROMPTS, None, 1.0)
    eos = choose_eos(free)
    cases = []
    for eos_id, penalty in [(None, 1.0), (eos, 1.0), (None, 1.3)]:
        batch = run(model, PROMPTS, eos_id, penalty)
        rows, stops = zip(*(cut(r, eos_id) for r in batch))
        alone = [cut(run(model, [p], eos_id, penalty)[0], eos_id)[0] for p in PROMPTS]
        assert list(rows) == alone, f"batched {rows} != alone {alone}"
        print(eos_id, penalty, [len(r) for r in rows], stops)
        cases.append(
            {
                "eos_token_id": eos_id,
                "repetition_penalty": penalty,
                "max_new_tokens": MAX_NEW_TOKENS,
                "tokens": list(rows),
                "stop": list(stops),
            }
        )
    ids, mask = left_pad(PROMPTS)
    write_json(
        TESTDATA / "models" / "tiny_llama_batch.json",
        {
            "provenance": provenance("models_batch.py", ["torch", "transformers", "safetensors"]),
            "model": "tiny-llama",
            "prompts": PROMPTS,
            "pad_token_id": PAD,
            "input_ids": ids.tolist(),
            "attention_mask": mask.tolist(),
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
