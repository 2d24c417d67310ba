"""What transformers makes of the two real GGUF files: Q/K weights after its reverse permutation,
and the model config it derives from the metadata.

* `AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)` dequantizes every tensor and, for
  llama, undoes llama.cpp's rotary row permutation of `attn_q`/`attn_k`
  (`LlamaModel.permute` in convert_hf_to_gguf.py). We store a few rows of layer 0's
  `q_proj`/`k_proj` (f32, little-endian) and a sha256 of the whole matrix. Gemma 3 is stored the
  same way: llama.cpp does not permute its Q/K, so kiln must return them as dequantized.
* `AutoConfig.from_pretrained(dir, gguf_file=...)`: the config fields kiln's ModelHints maps.
* For every parameter of the loaded model: its HF name, shape and the sha256 of its f32 values
  (little-endian), so kiln's HF-name view of the file (renaming, Q/K unpermutation, Gemma's
  `w + 1` norms, tied embeddings) can be checked tensor by tensor.

Writes testdata/gguf/transformers/{manifest.json,*.f32}.
"""

import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from gguf_common import GEMMA3, OUT, SMOLLM2, artifact, provenance  # noqa: E402

DIR = OUT / "transformers"
CONFIG_FIELDS = [
    "model_type",
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "sliding_window",
    "vocab_size",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
]


def pick_rows(n):
    return sorted({r for r in (0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, n - 2, n - 1) if 0 <= r < n})


def main():
    DIR.mkdir(parents=True, exist_ok=True)
    for old in DIR.iterdir():
        old.unlink()
    entries = []
    configs = {}
    digests = {}
    for label, pair, gguf_q, gguf_k in (
        ("smollm2", SMOLLM2, "blk.0.attn_q.weight", "blk.0.attn_k.weight"),
        ("gemma3", GEMMA3, "blk.0.attn_q.weight", "blk.0.attn_k.weight"),
    ):
        path = artifact(pair)
        cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        d = cfg.to_dict()
        rope = d.get("rope_parameters") or {}
        if "rope_theta" in rope:
            d["rope_theta"] = rope["rope_theta"]
        elif "full_attention" in rope:
            d["rope_theta"] = rope["full_attention"]["rope_theta"]
        configs[label] = {k: d.get(k) for k in CONFIG_FIELDS}
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        attn = model.model.layers[0].self_attn
        for proj, gguf_name in (("q_proj", gguf_q), ("k_proj", gguf_k)):
            w = getattr(attn, proj).weight.detach().to(torch.float32).numpy()
            w = np.ascontiguousarray(w, dtype="<f4")
            rows = pick_rows(w.shape[0])
            name = f"{label}_layer0_{proj}"
            (DIR / f"{name}.f32").write_bytes(w[rows].tobytes())
            entries.append(
                {
                    "name": name,
                    "artifact": f"{pair[0]}/{pair[1]}",
                    "hf_module": f"model.layers.0.self_attn.{proj}.weight",
                    "gguf_tensor": gguf_name,
                    "shape": list(w.shape),
                    "n_head": cfg.num_attention_heads if proj == "q_proj" else cfg.num_key_value_heads,
                    "rows": rows,
                    "expected": f"{name}.f32",
                    "sha256_all": hashlib.sha256(w.tobytes()).hexdigest(),
                }
            )
        digests[label] = {
            name: {
                "shape": list(p.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(p.detach().to(torch.float32).numpy(), dtype="<f4").tobytes()).hexdigest(),
            }
            for name, p in model.state_dict().items()
        }
        del model
    doc = {
        "provenance": provenance("gguf_transformers.py", ["transformers", "torch", "gguf", "numpy"]),
        "weights": entries,
        "configs": configs,
        "state_dict_sha256": digests,
    }
    (DIR / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", DIR)


if __name__ == "__main__":
    main()
