#!/usr/bin/env python3
"""Times transformers' apply_chat_template(tokenize=False) on the chat template bench input.

Reads testdata/chat-template/bench_conversation.json (the same input as
benches/benches/chat_template.rs) and the template and tokenizer it names from the artifact cache
($KILN_CACHE or <repo>/.cache/kiln). Prints one JSON object: microseconds per render (min and
median of the repeats), iterations, the rendered text's sha256, and package versions.

Usage: python scripts/reference/bench_chat_template.py [--iterations N] [--repeats R]
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jinja2
import transformers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KILN_CACHE", REPO / ".cache" / "kiln"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    spec = json.loads((REPO / "testdata" / "chat-template" / "bench_conversation.json").read_text(encoding="utf-8"))
    template = (CACHE / spec["template"]).read_text(encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(CACHE / spec["tokenizer"])

    def render():
        return tok.apply_chat_template(
            spec["messages"], tools=spec["tools"], chat_template=template,
            add_generation_prompt=True, tokenize=False,
        )

    text = render()  # compiles and caches the template, as every later call reuses it
    per_render = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.iterations):
            render()
        per_render.append((time.perf_counter() - start) / args.iterations * 1e6)
    print(json.dumps({
        "what": "transformers apply_chat_template(tokenize=False), Llama 3.1 template, 3 tools, 10 turns",
        "us_per_render_min": min(per_render),
        "us_per_render_median": statistics.median(per_render),
        "iterations": args.iterations,
        "repeats": args.repeats,
        "rendered_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "rendered_bytes": len(text.encode("utf-8")),
        "versions": {"python": platform.python_version(), "transformers": transformers.__version__,
                     "jinja2": jinja2.__version__},
    }))


if __name__ == "__main__":
    sys.exit(main())
