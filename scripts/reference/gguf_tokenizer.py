"""Token ids for kiln's GGUF tokenizer tests, made by transformers from the same GGUF files.

For each real GGUF (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M) this loads
`AutoTokenizer.from_pretrained(dir, gguf_file=...)` and encodes a fixed text set with and
without special tokens. It also records the vocabulary facts kiln exposes (bos/eos/unk/pad
strings, add_bos, the chat template).

transformers has no pre-tokenizer for `tokenizer.ggml.pre = "smollm"` and falls back to plain
GPT-2 splitting, while SmolLM2's own tokenizer.json (and llama.cpp) split digits one by one
first. So for SmolLM2 the ids are recorded twice: `ids_transformers_gguf` as transformers gives
them, and `ids` from the same transformers tokenizer with the pre-tokenizer SmolLM2 ships
(`Digits(individual_digits=True)` then `ByteLevel`). kiln must match `ids`.

Writes testdata/gguf/tokenizer_smollm2.json and testdata/gguf/tokenizer_gemma3.json.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import pre_tokenizers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from gguf_common import GEMMA3, OUT, SMOLLM2, artifact, provenance  # noqa: E402

TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "  leading spaces and trailing  ",
    "\t tab\tand\nnewline\n\n\nthree newlines\r\nCRLF",
    "    indented\n        more indented\n",
    "The year 2024 had 366 days; pi is 3.14159 and 1,000,000 is a million.",
    "Äpfel, Birnen & Bäume — naïve café résumé",
    "Привет, мир! Как дела?",
    "你好，世界！我想在apple工作1314151天～",
    "こんにちは世界、カタカナとひらがな",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Γειά σου Κόσμε",
    "Emoji: 🦙🚀 😶‍🌫️ 👍🏽 ✅ 🇫🇷",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    'fn main() { let x: Vec<u8> = vec![0x41, 0xFF]; println!("{x:?}"); }',
    "<html><body><div class=\"a\">text</div></body></html>",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
    "!!!!!!?????? ------======= ''''''```````\"\"\"\"......",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos<eos>",
    "\u00a0non-breaking\u2009thin\u3000ideographic spaces",
    "ﬁ ligature, Ⅻ roman, ① circled, ｆｕｌｌｗｉｄｔｈ",
    "a" * 300,
    "e\u0301 combining acute vs é precomposed",
    "zero\u200bwidth\u200djoiner",
]

SMOLLM_PRE = pre_tokenizers.Sequence(
    [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
)


def encode_all(tok):
    return [
        {
            "text": t,
            "ids": tok.encode(t, add_special_tokens=False),
            "ids_with_special": tok.encode(t, add_special_tokens=True),
        }
        for t in TEXTS
    ]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, pair in (("smollm2", SMOLLM2), ("gemma3", GEMMA3)):
        path = artifact(pair)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        cases = encode_all(tok)
        if name == "smollm2":
            raw = cases
            tok.backend_tokenizer.pre_tokenizer = SMOLLM_PRE
            cases = encode_all(tok)
            for case, r in zip(cases, raw):
                case["ids_transformers_gguf"] = r["ids"]
        doc = {
            "provenance": provenance("gguf_tokenizer.py", ["transformers", "tokenizers", "gguf", "numpy"]),
            "artifact": f"{pair[0]}/{pair[1]}",
            "how": "AutoTokenizer.from_pretrained(dir, gguf_file=...).encode(text, add_special_tokens=False/True)"
            + (
                "; ids use the pre-tokenizer of SmolLM2's tokenizer.json (Digits individual + ByteLevel),"
                " ids_transformers_gguf the one transformers picks for pre='smollm' (ByteLevel only)"
                if name == "smollm2"
                else ""
            ),
            "vocab_size": len(tok),
            "bos_token": tok.bos_token,
            "eos_token": tok.eos_token,
            "unk_token": tok.unk_token,
            "pad_token": tok.pad_token,
            "chat_template": tok.chat_template,
            "cases": cases,
        }
        out = OUT / f"tokenizer_{name}.json"
        out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print("wrote", out)


if __name__ == "__main__":
    main()
