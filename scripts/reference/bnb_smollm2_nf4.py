"""Greedy generation of SmolLM2-135M-Instruct (GGUF) loaded in 4-bit by transformers +
bitsandbytes, for kiln's `generate --quant nf4` test.

transformers loads the same GGUF file kiln loads (dequantized to f32) and saves it as an HF
model in a temporary directory (transformers refuses a `quantization_config` together with
`gguf_file`), then loads that with `BitsAndBytesConfig(load_in_4bit=True,
bnb_4bit_quant_type="nf4")` on CPU, so every Linear of the decoder layers is quantized to NF4 as
kiln quantizes it on load (the tied lm_head and the embeddings stay f32). It applies the chat template from the GGUF metadata, and generates greedily.
bitsandbytes' AVX512-BF16 CPU repacking (bfloat16 absmax and compute, see bnb_quant_logits.py) is
turned off so that the 4-bit layers compute in float32 on any machine.

Writes testdata/quant/smollm2_nf4_greedy.json.
Run: python scripts/reference/bnb_smollm2_nf4.py  (requirements-bnb.txt plus gguf==0.19.0;
`cargo xtask fetch smollm2`)
"""

from __future__ import annotations

import os
import tempfile

import safetensors.torch
import torch
import transformers

from common import TESTDATA, artifact, provenance, write_json

torch.set_num_threads(1)

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
]
MAX_NEW_TOKENS = 12


def main() -> None:
    gguf = artifact("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    with tempfile.TemporaryDirectory() as tmp:
        f32 = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # `save_pretrained` refuses GGUF-loaded models: write the weights and config directly.
        safetensors.torch.save_model(f32, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        if hasattr(f32.config, "quantization_config"):
            del f32.config.quantization_config
        f32.config.save_pretrained(tmp)
        del f32
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, quantization_config=config, device_map="cpu"
        ).eval()
    quantized = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            quantized += 1
    assert quantized == 7 * model.config.num_hidden_layers, quantized
    cases = []
    for messages in PROMPTS:
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
    write_json(
        TESTDATA / "quant" / "smollm2_nf4_greedy.json",
        {
            "provenance": provenance(
                "bnb_smollm2_nf4.py", ["torch", "transformers", "bitsandbytes", "gguf", "tokenizers"]
            ),
            "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "float32"},
            "max_new_tokens": MAX_NEW_TOKENS,
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
