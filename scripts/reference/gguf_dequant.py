"""Dequantization fixtures for kiln's GGUF reader, made with gguf-py (`gguf.quants.dequantize`).

Two kinds of case, listed in testdata/gguf/dequant/manifest.json:

* `real`: a few rows of one tensor per quantization type present in the two real GGUF files
  (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M). Only the expected f32 values are stored; the
  test reads the rows from the artifact through kiln's reader.
* `synthetic`: blocks for every type kiln decodes, stored with their bytes. Types gguf-py can
  quantize are quantized from seeded normal data; every type also gets random bytes whose f16/f32
  scale fields are overwritten with sane finite values (so all bit patterns of the quants show up).

Expected values: `gguf.quants.dequantize` for every type except Q8_K, which gguf-py does not
decode; for Q8_K the values come from a direct transcription of ggml's `dequantize_row_q8_K`
(`y = d * q`, float32), marked `"reference": "ggml-c-transcription"` in the manifest.

Binary files are little-endian: `*.bin` block bytes, `*.f32` expected float32 values.
"""

import hashlib
import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

from gguf_common import GEMMA3, OUT, SMOLLM2, artifact, provenance

DIR = OUT / "dequant"
RNG = np.random.default_rng(20261128)

# Offsets of the f16 scale fields within one block, per type (f32 for Q8_K).
F16_SCALES = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}

QUANTIZABLE = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
RANDOM_BYTES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K]


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    """ggml's dequantize_row_q8_K: float d, int8 qs[256], int16 bsums[16]; y = d * qs."""
    blocks = blocks.reshape(-1, 292)
    d = blocks[:, :4].copy().view(np.float32)
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * q).astype(np.float32).reshape(-1)


def reference(data: np.ndarray, qtype: T) -> tuple[np.ndarray, str]:
    if qtype == T.Q8_K:
        return dequantize_q8_k(data), "ggml-c-transcription"
    return np.asarray(dequantize(data, qtype), dtype=np.float32).reshape(-1), "gguf-py"


def write(name: str, values: np.ndarray, ext: str) -> str:
    path = DIR / f"{name}.{ext}"
    path.write_bytes(np.ascontiguousarray(values).tobytes())
    return path.name


def sane_scales(raw: np.ndarray, qtype: T) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = raw.reshape(-1, type_size)
    n = blocks.shape[0]
    if qtype == T.Q8_K:
        d = RNG.uniform(1e-4, 1e-2, size=n).astype(np.float32) * RNG.choice([-1, 1], size=n)
        blocks[:, :4] = d.astype(np.float32).view(np.uint8).reshape(n, 4)
    else:
        for off in F16_SCALES[qtype]:
            s = (RNG.uniform(1e-3, 0.2, size=n) * RNG.choice([-1, 1], size=n)).astype(np.float16)
            blocks[:, off : off + 2] = s.view(np.uint8).reshape(n, 2)
    return blocks.reshape(-1)


def synthetic_cases():
    cases = []
    row_len = 512
    n_rows = 3
    for qtype in QUANTIZABLE:
        x = RNG.standard_normal((n_rows, row_len)).astype(np.float32)
        x[1] *= 1e-3  # a row of small values
        x[2, :7] = 0.0
        q = np.asarray(quantize(x, qtype))
        raw = q.view(np.uint8).reshape(-1)
        expected, ref = reference(q.view(np.uint8).reshape(n_rows, -1), qtype)
        name = f"syn_quantized_{qtype.name.lower()}"
        cases.append(case(name, qtype, n_rows, row_len, raw, expected, ref, "gguf quantize of seeded normal data"))
    for qtype in RANDOM_BYTES:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        rl = 512
        nb = n_rows * rl // block_size
        raw = RNG.integers(0, 256, size=nb * type_size, dtype=np.uint8)
        raw = sane_scales(raw, qtype)
        expected, ref = reference(raw.reshape(n_rows, -1), qtype)
        name = f"syn_random_{qtype.name.lower()}"
        cases.append(case(name, qtype, n_rows, rl, raw, expected, ref, "random bytes, sane scales"))
    # F16 including subnormals, infinities and signed zeros (no NaN: bit-exact NaN payloads are not promised)
    bits = RNG.integers(0, 0x10000, size=1024, dtype=np.uint16)
    bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0xFC00, bits)  # NaN -> inf
    bits[:4] = [0x0000, 0x8000, 0x0001, 0x83FF]
    raw = bits.view(np.uint8)
    expected, ref = reference(raw.reshape(2, -1), T.F16)
    cases.append(case("syn_bits_f16", T.F16, 2, 512, raw, expected, ref, "random f16 bit patterns"))
    bits = RNG.integers(0, 0x10000, size=1024, dtype=np.uint16)
    bits = np.where((bits & 0x7F80) == 0x7F80, bits & 0xFF80, bits)
    raw = bits.view(np.uint8)
    expected, ref = reference(raw.reshape(2, -1), T.BF16)
    cases.append(case("syn_bits_bf16", T.BF16, 2, 512, raw, expected, ref, "random bf16 bit patterns"))
    return cases


def case(name, qtype, n_rows, row_len, raw, expected, ref, how):
    assert expected.size == n_rows * row_len, (name, expected.size)
    assert np.isfinite(expected).all() or qtype in (T.F16, T.BF16), name
    return {
        "name": name,
        "kind": "synthetic",
        "type": qtype.name,
        "n_rows": n_rows,
        "row_len": row_len,
        "bytes": write(name, raw, "bin"),
        "expected": write(name, expected.astype(np.float32), "f32"),
        "reference": ref,
        "how": how,
    }


def real_cases():
    cases = []
    for label, pair in (("smollm2", SMOLLM2), ("gemma3", GEMMA3)):
        reader = GGUFReader(artifact(pair))
        seen = set()
        for t in reader.tensors:
            if t.tensor_type in seen:
                continue
            seen.add(t.tensor_type)
            shape = [int(d) for d in t.shape]  # GGUF order: ne[0] first
            row_len = shape[0]
            n_rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            data = np.asarray(t.data)
            full = np.asarray(dequantize(data, t.tensor_type), dtype=np.float32).reshape(n_rows, row_len)
            rows = sorted({0, 1, 2, n_rows - 2, n_rows - 1} & set(range(n_rows)))
            name = f"real_{label}_{t.tensor_type.name.lower()}"
            cases.append(
                {
                    "name": name,
                    "kind": "real",
                    "artifact": f"{pair[0]}/{pair[1]}",
                    "tensor": t.name,
                    "type": t.tensor_type.name,
                    "dims": shape,
                    "rows": rows,
                    "row_len": row_len,
                    "expected": write(name, full[rows].reshape(-1), "f32"),
                    "sha256_all_rows": hashlib.sha256(full.astype("<f4").tobytes()).hexdigest(),
                    "reference": "gguf-py",
                    "how": "GGUFReader tensor data -> gguf.quants.dequantize, selected rows",
                }
            )
    return cases


def main():
    DIR.mkdir(parents=True, exist_ok=True)
    for old in DIR.iterdir():
        old.unlink()
    cases = real_cases() + synthetic_cases()
    manifest = {"provenance": provenance("gguf_dequant.py", ["gguf", "numpy"]), "cases": cases}
    (DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(len(cases), "cases written to", DIR)


if __name__ == "__main__":
    main()
