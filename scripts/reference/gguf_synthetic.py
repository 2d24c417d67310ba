"""A small GGUF v3 file written by gguf-py's GGUFWriter, and what gguf-py's GGUFReader reads back.

The file has one metadata key of every value type (all integer widths, f32/f64, bool, string,
arrays of numbers, of strings and of arrays), a custom `general.alignment` of 64, and tensors of
several types and ranks. kiln's reader must agree with GGUFReader on every key, value, tensor
dimension, type, offset and (dequantized) value.

Writes testdata/gguf/synthetic.gguf and testdata/gguf/synthetic.json.
"""

import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

from gguf_common import OUT, provenance

RNG = np.random.default_rng(7)
NESTED = [[1, 2], [3], [4, 5, 6]]


def build(path):
    w = GGUFWriter(str(path), arch="llama")
    w.add_custom_alignment(64)
    prov = provenance("gguf_synthetic.py", ["gguf", "numpy"])
    w.add_string("kiln.fixture.provenance", json.dumps(prov, sort_keys=True))
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo wörld 🦙\nline two")
    w.add_key_value("test.empty_string", "", GGUFValueType.STRING)
    w.add_array("test.array_i32", [1, -2, 3, -4])
    w.add_key_value("test.array_u8", [0, 1, 255], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT8)
    w.add_array("test.array_f32", [0.5, -1.25, 3e-8])
    w.add_array("test.array_str", ["a", "", "ß✓", "<|im_end|>"])
    w.add_array("test.array_bool", [True, False, True])
    w.add_array("test.array_nested", NESTED)
    # llama metadata, so the file also exercises ModelHints
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)

    tensors = {}
    a = RNG.standard_normal((3, 5)).astype(np.float32)  # row-major [3, 5]: GGUF dims [5, 3]
    w.add_tensor("t.f32", a)
    tensors["t.f32"] = a
    b = RNG.standard_normal((2, 7)).astype(np.float16)
    w.add_tensor("t.f16", b)
    tensors["t.f16"] = b
    c = RNG.standard_normal((2, 3, 64)).astype(np.float32)
    qc = quantize(c, T.Q4_0)
    w.add_tensor("t.q4_0", qc, raw_dtype=T.Q4_0)
    tensors["t.q4_0"] = c
    d = RNG.standard_normal((4, 32)).astype(np.float32)
    qd = quantize(d, T.Q8_0)
    w.add_tensor("t.q8_0", qd, raw_dtype=T.Q8_0)
    e = RNG.standard_normal((3,)).astype(np.float32)
    w.add_tensor("t.vec", e)
    f = RNG.standard_normal((2, 16)).astype(np.float32)
    w.add_tensor("t.bf16", quantize(f, T.BF16), raw_dtype=T.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def jsonable(field):
    return {"types": [t.name for t in field.types], "value": field.contents()}


def main():
    path = OUT / "synthetic.gguf"
    OUT.mkdir(parents=True, exist_ok=True)
    build(path)
    r = GGUFReader(str(path))
    metadata = {}
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = jsonable(field)
    # GGUFReader.contents() flattens arrays of arrays; record the nesting as written.
    metadata["test.array_nested"]["value"] = NESTED
    for key in ("test.f32",):
        metadata[key]["f32_bits"] = int(np.float32(metadata[key]["value"]).view(np.uint32))
    tensors = []
    for t in r.tensors:
        values = np.asarray(dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32).reshape(-1)
        tensors.append(
            {
                "name": t.name,
                "type": t.tensor_type.name,
                "dims": [int(x) for x in t.shape],
                "n_elements": int(t.n_elements),
                "n_bytes": int(t.n_bytes),
                "offset_in_file": int(t.data_offset),
                "f32_bits": [int(v) for v in values.view(np.uint32)],
            }
        )
    doc = {
        "provenance": provenance("gguf_synthetic.py", ["gguf", "numpy"]),
        "file": "synthetic.gguf",
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "file_size": path.stat().st_size,
        "metadata": metadata,
        "tensors": tensors,
    }
    (OUT / "synthetic.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
