#!/usr/bin/env python3
"""Loads checkpoints written by kiln (`kiln quantize` / `quantize_checkpoint`) with
transformers + bitsandbytes and compares their logits with the unquantized model's.

Usage:
  python scripts/reference/bnb_load_kiln.py ORIGINAL_DIR KILN_DIR [KILN_DIR...] [--reference BNB_DIR]
      [--device cpu|cuda]

For each KILN_DIR: from_pretrained must report no missing, unexpected or mismatched keys, every
quantized Linear must come back as a bitsandbytes module, and the logits on a fixed prompt are
compared with ORIGINAL_DIR's (max |diff| and cosine similarity printed; a cosine below 0.99
fails). With --reference (a checkpoint transformers + bitsandbytes saved with the same settings),
the logits must be identical to the reference's.
"""

import argparse
import sys

import torch
import bitsandbytes
import transformers
from transformers import AutoModelForCausalLM


def logits_of(path, device, ids):
    model, info = AutoModelForCausalLM.from_pretrained(path, device_map=device, output_loading_info=True)
    model.eval()
    with torch.no_grad():
        out = model(ids.to(device)).logits[0].float().cpu()
    return model, info, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("kiln", nargs="+")
    ap.add_argument("--reference")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"transformers {transformers.__version__}, bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}")

    torch.manual_seed(0)
    ref_model = AutoModelForCausalLM.from_pretrained(args.original, device_map=args.device, dtype=torch.float32)
    vocab = ref_model.config.vocab_size
    ids = torch.randint(0, vocab, (1, 16))
    with torch.no_grad():
        base = ref_model(ids.to(args.device)).logits[0].float().cpu()
    reference = None
    if args.reference:
        _, _, reference = logits_of(args.reference, args.device, ids)

    failed = False
    for path in args.kiln:
        model, info, out = logits_of(path, args.device, ids)
        problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        quantized = [n for n, m in model.named_modules()
                     if isinstance(m, (bitsandbytes.nn.Linear4bit, bitsandbytes.nn.Linear8bitLt))]
        diff = (out - base).abs().max().item()
        cos = torch.nn.functional.cosine_similarity(out.flatten(), base.flatten(), dim=0).item()
        line = f"{path}: {len(quantized)} bnb Linear modules, max |logits - original| = {diff:.5f}, cosine = {cos:.6f}"
        if reference is not None:
            same = torch.equal(out, reference)
            line += f", identical to reference: {same}"
            failed |= not same
        print(line)
        if problems:
            print(f"  loading problems: {problems}")
            failed = True
        if not quantized or cos < 0.99:
            failed = True
    print("FAILED" if failed else "OK")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
