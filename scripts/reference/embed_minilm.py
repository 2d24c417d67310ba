"""Sentence embeddings of all-MiniLM-L6-v2 by sentence-transformers, for kiln's embedding tests.

sentence-transformers loads the model dir kiln loads (Transformer -> mean Pooling -> Normalize,
max_seq_length 256) and encodes a handful of sentences in one padded batch, on the CPU. Besides
the model's own pipeline, the same Transformer is pooled with CLS and with mean pooling without
normalization. Writes testdata/models/minilm_embeddings.json.
Run: python scripts/reference/embed_minilm.py  (requirements-embed.txt; `cargo xtask fetch minilm`)
"""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling

from common import TESTDATA, artifact, provenance, write_json

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog.",
    "  Leading and trailing spaces are stripped.\t",
    "Café naïve résumé: 北京 is the capital of China!",
    "Rust and burn run BERT encoders on the CPU or a GPU.",
    # Over 256 tokens: truncated to max_seq_length.
    " ".join(f"token{i % 7} is number {i}." for i in range(90)),
]


def main() -> None:
    torch.manual_seed(0)
    path = artifact("minilm")
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    modules = [type(m).__name__ for m in model]
    assert modules == ["Transformer", "Pooling", "Normalize"], modules
    transformer = model[0]
    dim = transformer.get_embedding_dimension()
    cls = SentenceTransformer(modules=[transformer, Pooling(dim, pooling_mode="cls")], device="cpu")
    mean = SentenceTransformer(modules=[transformer, model[1]], device="cpu")

    features = model.preprocess(SENTENCES)
    ids = [
        row[mask.bool()].tolist()
        for row, mask in zip(features["input_ids"], features["attention_mask"])
    ]
    with torch.no_grad():
        normalized = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
        cls_raw = cls.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
        mean_raw = mean.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    cases = [
        {
            "text": text,
            "input_ids": ids[i],
            "embedding": normalized[i].tolist(),
            "cls_unnormalized": cls_raw[i].tolist(),
            "mean_unnormalized": mean_raw[i].tolist(),
        }
        for i, text in enumerate(SENTENCES)
    ]
    write_json(
        TESTDATA / "models" / "minilm_embeddings.json",
        {
            "provenance": provenance(
                "embed_minilm.py", ["sentence-transformers", "transformers", "torch", "tokenizers"]
            ),
            "model": "all-MiniLM-L6-v2",
            "max_seq_length": model.max_seq_length,
            "modules": modules,
            "cases": cases,
        },
    )
    print("minilm embeddings:", len(cases), "sentences,", dim, "dims; token counts", [len(i) for i in ids])


if __name__ == "__main__":
    main()
