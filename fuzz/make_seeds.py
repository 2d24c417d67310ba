#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/ (stdlib only).

The seeds are small valid inputs: libFuzzer and the proptest smoke tests mutate them. They are
made from the committed test data (configs, chat templates, the bitsandbytes tables of
testdata/quant) and from tiny GGUF and safetensors files written here.

    python3 fuzz/make_seeds.py
"""

import json
import os
import random
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
rng = random.Random(20261205)


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- safetensors -------------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def read_safetensors(path):
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    base = 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], b[base + s : base + e])
    return out


def f32(*xs):
    return struct.pack(f"<{len(xs)}f", *xs)


def f16(*xs):
    return struct.pack(f"<{len(xs)}e", *xs)


def bf16(*xs):
    return b"".join(struct.pack("<f", x)[2:] for x in xs)


def safetensors_seeds():
    write("safetensors", "floats.safetensors", safetensors(
        [
            ("a.weight", "F32", [2, 3], f32(1, -2, 3.5, 0, 1e-3, -7)),
            ("b.weight", "F16", [4], f16(1, -0.5, 2, 65504)),
            ("c.bias", "BF16", [2, 2], bf16(1, 2, -3, 0.25)),
            ("d", "F32", [], f32(42)),
            ("e", "F32", [0, 4], b""),
            ("f", "I8", [3], bytes([1, 255, 7])),
            ("g", "I64", [1], struct.pack("<q", -5)),
            ("h", "U8", [2], b"\x00\x01"),
        ],
        {"format": "pt"},
    ))
    # One bitsandbytes 4-bit Linear (NF4, double quant) and one FP4 without, with bnb's own code
    # tables taken from the committed checkpoint.
    real = read_safetensors(ROOT / "testdata/quant/tiny-llama/nf4-dq/model.safetensors")
    p = "model.layers.0.self_attn.q_proj.weight"
    nf4_map = real[p + ".quant_map"][2]
    nested_map = real[p + ".nested_quant_map"][2]
    fp4 = read_safetensors(ROOT / "testdata/quant/tiny-llama/fp4/model.safetensors")
    fp4_map = fp4[p + ".quant_map"][2]
    state = {
        "quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4, 16],
        "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.25,
    }
    state_fp4 = {"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 16]}
    sj = json.dumps(state).encode()
    sj4 = json.dumps(state_fp4).encode()
    write("safetensors", "bnb_4bit.safetensors", safetensors(
        [
            ("q.weight", "U8", [32, 1], bytes(rng.randrange(256) for _ in range(32))),
            ("q.weight.absmax", "U8", [1], b"\x80"),
            ("q.weight.nested_absmax", "F32", [1], f32(0.5)),
            ("q.weight.nested_quant_map", "F32", [256], nested_map),
            ("q.weight.quant_map", "F32", [16], nf4_map),
            ("q.weight.quant_state.bitsandbytes__nf4", "U8", [len(sj)], sj),
            ("k.weight", "U8", [32, 1], bytes(rng.randrange(256) for _ in range(32))),
            ("k.weight.absmax", "F32", [1], f32(0.75)),
            ("k.weight.quant_map", "F32", [16], fp4_map),
            ("k.weight.quant_state.bitsandbytes__fp4", "U8", [len(sj4)], sj4),
        ],
        {"format": "pt"},
    ))
    write("safetensors", "bnb_int8.safetensors", safetensors(
        [
            ("o.weight", "I8", [2, 4], bytes([1, 2, 3, 4, 255, 254, 127, 128])),
            ("o.SCB", "F32", [2], f32(4, 127)),
            ("o.weight_format", "U8", [], b"\x00"),
            ("o.bias", "F32", [2], f32(0.5, -0.5)),
        ],
    ))


# --- GGUF ----------------------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
        "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176),
        "Q6_K": (14, 256, 210), "Q8_K": (15, 256, 292), "BF16": (30, 1, 2)}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def gvalue(ty, v):
    if ty == STRING:
        return gstr(v)
    if ty == ARRAY:
        ety, items = v
        return struct.pack("<IQ", ety, len(items)) + b"".join(gvalue(ety, x) for x in items)
    return struct.pack(SCALAR[ty], v)


def block_bytes(ty, n_blocks):
    """Random blocks with small f16 scales (the first two bytes of each block)."""
    _, _, size = GGML[ty]
    out = b""
    for _ in range(n_blocks):
        blk = bytearray(rng.randrange(256) for _ in range(size))
        if ty in ("F32", "F16", "BF16"):
            if ty == "F32":
                blk = bytearray(f32(rng.uniform(-1, 1)))
            elif ty == "F16":
                blk = bytearray(f16(rng.uniform(-1, 1)))
            else:
                blk = bytearray(bf16(rng.uniform(-1, 1)))
        else:
            blk[0:2] = f16(rng.uniform(0.001, 0.1))
        out += bytes(blk)
    return out


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: list of (key, type, value); tensors: list of (name, dims, ggml type name)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, ty, v in kvs:
        out += gstr(k) + struct.pack("<I", ty) + gvalue(ty, v)
    data = b""
    infos = b""
    for name, dims, ty in tensors:
        data += b"\0" * (-len(data) % alignment)
        n = 1
        for d in dims:
            n *= d
        _, block, _ = GGML[ty]
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", GGML[ty][0], len(data))
        data += block_bytes(ty, n // block)
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


def template(name):
    return (ROOT / "chat-template/templates" / name).read_text()


def gguf_seeds():
    write("gguf", "synthetic.gguf", (ROOT / "testdata/gguf/synthetic.gguf").read_bytes())
    # A llama with a byte-level BPE tokenizer and a ChatML template; legacy quant types.
    tokens = ["<|im_start|>", "<|im_end|>", "h", "e", "l", "o", "\u0120", "he", "ll", "hell",
              "hello", "\u0120hello"]
    merges = ["h e", "l l", "he ll", "hell o", "\u0120 hello"]
    llama = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "tiny"),
        ("general.file_type", U32, 3),
        ("llama.block_count", U32, 1),
        ("llama.context_length", U32, 64),
        ("llama.embedding_length", U32, 32),
        ("llama.feed_forward_length", U32, 32),
        ("llama.attention.head_count", U32, 2),
        ("llama.attention.head_count_kv", U32, 1),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, "smollm"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3] + [1] * (len(tokens) - 2))),
        ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
        ("tokenizer.ggml.bos_token_id", U32, 0),
        ("tokenizer.ggml.eos_token_id", U32, 1),
        ("tokenizer.ggml.add_bos_token", BOOL, False),
        ("tokenizer.chat_template", STRING, template("chatml.jinja")),
    ]
    write("gguf", "llama_bpe.gguf", gguf(llama, [
        ("token_embd.weight", [32, len(tokens)], "Q8_0"),
        ("blk.0.attn_q.weight", [32, 32], "Q4_0"),
        ("blk.0.attn_k.weight", [32, 16], "Q4_1"),
        ("blk.0.attn_v.weight", [32, 16], "Q5_0"),
        ("blk.0.attn_output.weight", [32, 32], "Q5_1"),
        ("blk.0.attn_norm.weight", [32], "F32"),
        ("blk.0.ffn_norm.weight", [32], "F16"),
        ("output_norm.weight", [32], "BF16"),
    ]))
    # A Gemma 3 with a SentencePiece tokenizer (version 2 file); k-quants.
    sp = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\u2581",
          "h", "i", "\u2581h", "hi", "\u2581hi", "  ", "<0x0A>"]
    gemma3 = [
        ("general.architecture", STRING, "gemma3"),
        ("gemma3.block_count", U32, 1),
        ("gemma3.context_length", U32, 128),
        ("gemma3.embedding_length", U32, 256),
        ("gemma3.feed_forward_length", U32, 256),
        ("gemma3.attention.head_count", U32, 1),
        ("gemma3.attention.head_count_kv", U32, 1),
        ("gemma3.attention.key_length", U32, 256),
        ("gemma3.attention.value_length", U32, 256),
        ("gemma3.attention.sliding_window", U32, 32),
        ("gemma3.rope.freq_base", F32, 1000000.0),
        ("gemma3.rope.scaling.type", STRING, "linear"),
        ("gemma3.rope.scaling.factor", F32, 8.0),
        ("gemma3.attention.layer_norm_rms_epsilon", F32, 1e-6),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, sp)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 6 + [-float(i) for i in range(len(sp) - 6)])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3, 3, 2, 3, 3] + [1] * 6 + [4, 6])),
        ("tokenizer.ggml.bos_token_id", U32, 2),
        ("tokenizer.ggml.eos_token_id", U32, 1),
        ("tokenizer.ggml.unknown_token_id", U32, 3),
        ("tokenizer.ggml.padding_token_id", U32, 0),
        ("tokenizer.ggml.eot_token_id", U32, 5),
        ("tokenizer.ggml.add_space_prefix", BOOL, False),
        ("tokenizer.chat_template", STRING, template("gemma.jinja")),
    ]
    write("gguf", "gemma3_spm.gguf", gguf(gemma3, [
        ("token_embd.weight", [256, len(sp)], "Q2_K"),
        ("blk.0.attn_q.weight", [256, 1], "Q3_K"),
        ("blk.0.attn_k.weight", [256, 1], "Q4_K"),
        ("blk.0.attn_v.weight", [256, 1], "Q5_K"),
        ("blk.0.ffn_down.weight", [256, 1], "Q6_K"),
        ("blk.0.attn_q_norm.weight", [256], "F32"),
        ("blk.0.post_ffw_norm.weight", [256], "F16"),
        ("blk.0.ffn_gate.weight", [256, 1], "Q8_K"),
    ], version=2))
    # A BERT with a WordPiece vocabulary, no tensors.
    wp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581hello", "\u2581world", "ing", "s"]
    bert = [
        ("general.architecture", STRING, "bert"),
        ("general.alignment", U32, 64),
        ("bert.block_count", U32, 1),
        ("bert.embedding_length", U32, 8),
        ("bert.attention.head_count", U32, 2),
        ("bert.attention.causal", BOOL, False),
        ("bert.attention.layer_norm_epsilon", F32, 1e-12),
        ("tokenizer.ggml.model", STRING, "bert"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, wp)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 2, 3, 3, 3, 1, 1, 1, 1])),
        ("tokenizer.ggml.unknown_token_id", U32, 1),
        ("tokenizer.ggml.cls_token_id", U32, 2),
        ("tokenizer.ggml.seperator_token_id", U32, 3),
        ("tokenizer.ggml.mask_token_id", U32, 4),
        ("tokenizer.ggml.padding_token_id", U32, 0),
    ]
    write("gguf", "bert_wordpiece.gguf", gguf(bert, [("token_embd.weight", [8, len(wp)], "F16")], alignment=64))


# --- config.json ---------------------------------------------------------------------------------

def config_seeds():
    for d in ["tiny-llama", "tiny-mistral", "tiny-gemma", "tiny-gemma2", "tiny-gemma3", "tiny-bert",
              "tiny-llama3-tied"]:
        write("config", f"{d}.json", (ROOT / "testdata/models" / d / "config.json").read_bytes())
    q = ROOT / "testdata/quant/tiny-llama"
    write("config", "nf4-dq.json", (q / "nf4-dq/config.json").read_bytes())
    write("config", "int8.json", (q / "int8/config.json").read_bytes())
    write("config", "generation_config.json", (q / "f32/generation_config.json").read_bytes())
    write("config", "gemma3_wrapper.json", json.dumps({
        "model_type": "gemma3",
        "text_config": {
            "model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "vocab_size": 64, "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        },
    }, indent=1))
    write("config", "tokenizer_config.json", json.dumps({
        "bos_token": "<s>", "eos_token": "</s>",
        "chat_template": [
            {"name": "default", "template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"},
            {"name": "tool_use", "template": "{{ tools | tojson }}{{ messages | length }}"},
        ],
    }, indent=1))


# --- chat templates ------------------------------------------------------------------------------

HANDMADE = {
    "tools.jinja": """{%- macro render(m) -%}
{{ m.role | upper }}{% if m.tool_calls %}{% for c in m.tool_calls %} call {{ c.function.name }}({{ c.function.arguments | tojson }}){% endfor %}{% endif %}: {{ m.content | trim }}
{%- endmacro -%}
{%- set ns = namespace(system='', n=0) -%}
{%- if tools %}{{ '# tools\\n' }}{% for t in tools %}{{ t | tojson(indent=2) }}{{ '\\n' }}{% endfor %}{% endif -%}
{%- for m in messages -%}
{%- if m.role == 'system' %}{% set ns.system = m.content %}{% continue %}{% endif -%}
{%- set ns.n = ns.n + 1 -%}
{{ render(m) }}{{ '\\n' }}
{%- if loop.last and m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif -%}
{%- endfor -%}
{{ ns.system[:20] }}{{ '%d turns' | format(ns.n) }} {{ strftime_now('%Y-%m-%d') }}
{%- if add_generation_prompt %}ASSISTANT:{% endif -%}""",
    "raise.jinja": """{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] | default('', true) ~ eos_token }}{% endfor %}""",
    "python.jinja": """{{ messages | map(attribute='role') | join(',') }}|{{ 'a,b'.split(',') | list }}|{{ ' x '.strip() }}|{{ messages[0].content.startswith('H') }}|{{ {'k': [1, 2.5, none, true]} | tojson }}|{{ (messages | selectattr('role', 'equalto', 'user') | list | length) }}|{{ '{:>8}'.format('r') }}|{% if documents %}{% for d in documents %}{{ d.title }}{% endfor %}{% endif %}""",
}


def chat_template_seeds():
    d = json.loads((ROOT / "testdata/chat-template/templates.json").read_text())
    cases = d["cases"]
    templates = {f: template(f) for f in ["chatml.jinja", "gemma.jinja", "llama2.jinja",
                                          "llama3.jinja", "mistral.jinja"]}
    templates.update(HANDMADE)
    picks = {
        "chatml.jinja": ["multi", "continue", "parts"],
        "gemma.jinja": ["multi_nosys_nogen", "not_alternating"],
        "llama2.jinja": ["system", "unicode"],
        "llama3.jinja": ["tools", "extra_vars"],
        "mistral.jinja": ["user", "reasoning"],
        "tools.jinja": ["tool_calls", "nested_arguments", "empty"],
        "raise.jinja": ["multi", "system"],
        "python.jinja": ["documents", "tool_call_string_args"],
    }
    for name, case_names in picks.items():
        for c in case_names:
            case = json.dumps(cases[c], ensure_ascii=False, separators=(",", ":"))
            write("chat_template", f"{name[:-6]}-{c}.bin", templates[name].encode() + b"\0" + case.encode())


if __name__ == "__main__":
    safetensors_seeds()
    gguf_seeds()
    config_seeds()
    chat_template_seeds()
    for t in sorted(os.listdir(SEEDS)):
        files = sorted((SEEDS / t).iterdir())
        print(f"{t}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")
