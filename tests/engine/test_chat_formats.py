"""Chat formats without a model: each parser reads what its format's model writes (whole and streamed
token by token alike), malformed output ends as content and never raises, the grammar of a required
call accepts exactly the syntax the parser reads, and the real templates (gpt-oss, Qwen3, Llama 3.1)
render tools, calls and results."""

from __future__ import annotations

import json
from pathlib import Path

import llguidance
import pytest

from atom.chat import ChatDelta, ChatFormat
from atom.tokenizer import Tokenizer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Adds two integers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
    },
}
TOOLS = [WEATHER, ADD]


@pytest.fixture(scope="module")
def harmony(tiny_gpt_oss_harmony: Path) -> Tokenizer:
    return Tokenizer(tiny_gpt_oss_harmony)


@pytest.fixture(scope="module")
def smol(smollm2: Path) -> Tokenizer:
    return Tokenizer(smollm2)


def parse(chat: ChatFormat, tokenizer: Tokenizer, text: str, streamed: bool, tools=TOOLS) -> ChatDelta:
    """What the parser makes of a model's output text (special tokens included), fed whole or one
    token at a time with the text each token adds, as the server gets them."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    parser = chat.parser(tokenizer, tools)
    out = ChatDelta()
    if not streamed:
        out += parser.feed(ids, tokenizer.decode(ids))
    else:
        for i in range(len(ids)):
            before, now = tokenizer.decode(ids[:i]), tokenizer.decode(ids[: i + 1])
            out += parser.feed(ids[i : i + 1], now[len(before) :])
    out += parser.finish()
    return out


HERMES = ChatFormat("hermes", False, False)
QWEN3 = ChatFormat("hermes", True, True)
LLAMA3 = ChatFormat("llama3_json", True, False)
HARMONY = ChatFormat("harmony", True, False)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    "chat,text,content,reasoning,calls",
    [
        (HERMES, 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>', "Sure.\n",
         "", [("add", {"a": 1, "b": 2})]),
        (HERMES, '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n<tool_call>\n'
         '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', "\n", "",
         [("add", {"a": 1}), ("get_weather", {"city": "Oslo"})]),
        (HERMES, "No tools <tool_ needed, 3 < 4.", "No tools <tool_ needed, 3 < 4.", "", []),
        # malformed: broken JSON, an undeclared function, a call never closed: all stay content
        (HERMES, '<tool_call>\n{"name": "add", "arguments": {"a": 1\n</tool_call>',
         '<tool_call>\n{"name": "add", "arguments": {"a": 1\n</tool_call>', "", []),
        (HERMES, '<tool_call>{"name": "rm", "arguments": {}}</tool_call>',
         '<tool_call>{"name": "rm", "arguments": {}}</tool_call>', "", []),
        (HERMES, '<tool_call>\n{"name": "add", "argu', '<tool_call>\n{"name": "add", "argu', "", []),
        (HERMES, '<tool_call>\n{"name": "add", "arguments": {"a": 5}}', "", "", [("add", {"a": 5})]),
        (QWEN3, "<think>\nLet me add.\n</think>\n\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}"
         "\n</tool_call>", "\n\n", "\nLet me add.\n", [("add", {"a": 2})]),
        (QWEN3, "<think>never closed", "", "never closed", []),
        (LLAMA3, '{"name": "get_weather", "parameters": {"city": "Rome"}}', "", "", [("get_weather", {"city": "Rome"})]),
        (LLAMA3, '{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}', "", "",
         [("add", {"a": 1}), ("add", {"a": 2})]),
        (LLAMA3, "It is sunny {maybe}.", "It is sunny {maybe}.", "", []),
        (LLAMA3, '{"name": "add", "parameters": ', '{"name": "add", "parameters": ', "", []),
    ],
)  # fmt: skip
def test_text_formats(smol, streamed, chat, text, content, reasoning, calls):
    out = parse(chat, smol, text, streamed)
    assert (out.content, out.reasoning) == (content, reasoning)
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == calls
    assert all(c.id.startswith("call_") for c in out.tool_calls)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    "text,content,reasoning,calls",
    [
        ("<|channel|>analysis<|message|>The user wants 2+2.<|end|><|start|>assistant<|channel|>final"
         "<|message|>It is 4.<|return|>", "It is 4.", "The user wants 2+2.", []),
        # the recipient after the channel (as models write it) and before it (as the template renders it)
        ("<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
         'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>', "", "Need weather.",
         [("get_weather", {"city": "Paris"})]),
        (' to=functions.add<|channel|>commentary json<|message|>{"a": 1, "b": 2}<|call|>', "", "",
         [("add", {"a": 1, "b": 2})]),
        # a preamble to the user on commentary is content
        ("<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant to=functions.add<|channel|>"
         'commentary json<|message|>{"a": 3}<|call|>', "Checking.", "", [("add", {"a": 3})]),
        # malformed: a channel never closed, broken JSON, an undeclared function, no Harmony at all
        ("<|channel|>analysis<|message|>thinking and thinking", "", "thinking and thinking", []),
        ("<|channel|>final<|message|>cut short", "cut short", "", []),
        ('<|channel|>commentary to=functions.add json<|message|>{"a": 1<|call|>', '{"a": 1', "", []),
        ('<|channel|>commentary to=functions.rm json<|message|>{}<|call|>', "{}", "", []),
        ("just words, no channels", "just words, no channels", "", []),
        ("<|channel|>analysis<|message|>a<|start|>assistant<|channel|>final<|message|>b<|return|>", "b", "a", []),
    ],
)  # fmt: skip
def test_harmony(harmony, streamed, text, content, reasoning, calls):
    out = parse(HARMONY, harmony, text, streamed)
    assert (out.content, out.reasoning) == (content, reasoning)
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == calls


def test_harmony_streams_reasoning_and_content_as_they_come(harmony):
    parser = HARMONY.parser(harmony, TOOLS)
    ids = harmony.encode("<|channel|>analysis<|message|>one two three", add_special_tokens=False)
    seen = [parser.feed([t], "").reasoning for t in ids]
    assert "".join(seen) == "one two three" and sum(1 for s in seen if s) >= 3  # not held to the end


def canonical_call(chat: ChatFormat, tool: dict, args: dict) -> str:
    name = tool["function"]["name"]
    return {
        "hermes": f"<tool_call>\n{json.dumps({'name': name, 'arguments': args}, separators=(',', ':'))}\n</tool_call>",
        "llama3_json": json.dumps({"name": name, "parameters": args}, separators=(",", ":")),
        "harmony": f" to=functions.{name}<|channel|>commentary json<|message|>"
        f"{json.dumps(args, separators=(',', ':'))}<|call|>",
    }[chat.kind]


@pytest.mark.parametrize("chat", [HERMES, LLAMA3, HARMONY], ids=lambda c: c.kind)
def test_required_call_grammar_accepts_what_the_parser_reads(harmony, chat):
    """The constrained syntax and the parser agree: a call the grammar lets through parses to that call,
    a call to another function or with arguments off the schema is refused by the grammar."""
    llg = llguidance.LLTokenizer(
        harmony.tok.to_str(), n_vocab=49168, eos_token=[harmony.tok.token_to_id("<|return|>")]
    )

    def accepts(grammar: str, text: str) -> bool:
        matcher = llguidance.LLMatcher(llg, grammar, log_level=0)
        ids = harmony.encode(text, add_special_tokens=False)
        return all(matcher.consume_token(t) for t in ids) and matcher.is_accepting()

    named = chat.grammar([WEATHER], parallel=False)
    good = canonical_call(chat, WEATHER, {"city": "Oslo", "unit": "c"})
    assert accepts(named, good)
    assert not accepts(named, canonical_call(chat, ADD, {"a": 1}))
    assert not accepts(named, canonical_call(chat, WEATHER, {"city": 3}))
    assert not accepts(named, canonical_call(chat, WEATHER, {"city": "Oslo", "extra": 1}))  # closed
    out = parse(chat, harmony, good, streamed=True)
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == [
        ("get_weather", {"city": "Oslo", "unit": "c"})
    ]
    required = chat.grammar(TOOLS, parallel=False)
    assert accepts(required, good) and accepts(required, canonical_call(chat, ADD, {"a": 1, "b": 2}))


def test_a_schema_the_grammar_cannot_follow_names_the_tool():
    bad = {"type": "function", "function": {"name": "lookahead", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "pattern": "(?=x)"}}}}}  # fmt: skip
    with pytest.raises(
        Exception, match="(?s)tools: the parameters of lookahead cannot be enforced: .*look-around"
    ):
        HERMES.grammar([bad], parallel=False)


def test_formats_are_read_from_the_templates(smollm2, harmony, real_chat_templates):
    assert ChatFormat.of(harmony) == HARMONY
    smol = Tokenizer(smollm2)
    assert ChatFormat.of(smol) == HERMES  # ChatML without tools: we describe them ourselves
    smol.chat_template = real_chat_templates["qwen3"]
    assert ChatFormat.of(smol) == QWEN3
    smol.chat_template = real_chat_templates["llama3.1"]
    assert ChatFormat.of(smol) == LLAMA3


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
]  # fmt: skip
EXPECTED = {  # what each real template must show of the tools, the call and its result
    "gpt-oss": [
        "Reasoning: high",
        "namespace functions {",
        "type get_weather = (_: {",
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}<|call|>',
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"-3 C"<|end|>',
    ],
    "qwen3": [
        '{"type": "function", "function": {"name": "get_weather"',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        "<tool_response>\n-3 C\n</tool_response>",
    ],
    "llama3.1": [
        "Environment: ipython",
        '"name": "get_weather"',
        '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"-3 C"<|eot_id|>',  # its template JSON-quotes it
    ],
    None: [  # SmolLM2's ChatML knows no tools: they are described in its system message
        "Be brief.\n\n# Tools",
        '<tools>\n{"type": "function", "function": {"name": "get_weather"',
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        "<|im_start|>user\n<tool_response>\n-3 C\n</tool_response>",
    ],
}
ENDS = {"gpt-oss": "<|start|>assistant", "qwen3": "<|im_start|>assistant\n", "llama3.1": "assistant<|end_header_id|>\n\n", None: "<|im_start|>assistant\n"}  # fmt: skip


@pytest.mark.parametrize("template", list(EXPECTED))
def test_real_templates_render_tools_calls_and_results(
    smollm2, tiny_gpt_oss_harmony, real_chat_templates, template
):
    from atom.server.protocol import ChatCompletionRequest
    from atom.server.routes.chat import prepare

    tokenizer = Tokenizer(tiny_gpt_oss_harmony if template == "gpt-oss" else smollm2)
    if template:
        tokenizer.chat_template = real_chat_templates[template]
    body = ChatCompletionRequest.model_validate(
        {"messages": CONVERSATION, "tools": TOOLS, "reasoning_effort": "high"}
    )
    prompt, grammar = prepare(tokenizer, ChatFormat.of(tokenizer), body)
    for piece in EXPECTED[template]:
        assert piece in prompt, (piece, prompt)
    assert prompt.endswith(ENDS[template]) and grammar is None  # auto: nothing forced
    if template:  # and exactly what HF transformers renders of it (arguments as objects, as HF takes them)
        assert prompt == hf_render(tokenizer, CONVERSATION, reasoning_effort="high")


def hf_render(tokenizer: Tokenizer, messages: list[dict], **variables) -> str:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer.tok, chat_template=tokenizer.chat_template)
    hf.bos_token, hf.eos_token = tokenizer._token("bos_token"), tokenizer._token("eos_token")
    messages = json.loads(json.dumps(messages))
    for m in messages:
        for call in m.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        if m["content"] is None:
            m["content"] = ""
    return hf.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True, **variables
    )
