"""OpenAI request bodies. Unknown fields are rejected (extra="forbid"), never silently ignored, and OpenAI
fields this server does not implement are a 400 that names them and says why; types are strict (a
string is never read as a number, a boolean never as a token id); `null` means the default, as OpenAI
reads it; text must be valid Unicode (a lone surrogate is a 400, not a tokenizer crash); fields that
only make sense together are checked."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ..errors import InvalidRequestError
from ..sampling_params import SamplingParams
from .limits import MAX_MESSAGES, MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS, MAX_TOOLS

STRICT = ConfigDict(extra="forbid", strict=True)


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds a lone surrogate at character {e.start} (not valid Unicode)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
StopString = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]
Refused = SkipJsonSchema[Any]  # an OpenAI field taken only to refuse it by name (or its default value)
MetadataKey = Annotated[Text, Field(max_length=64)]
MetadataValue = Annotated[Text, Field(max_length=512)]

# OpenAI fields this server does not implement, and why: a 400 that says so (a client that sends them
# must not get an answer that silently ignored them).
UNSUPPORTED = {
    "functions": "function calling is not supported (and deprecated by OpenAI for tools)",
    "function_call": "function calling is not supported (and deprecated by OpenAI for tools)",
    "audio": "audio output is not supported by a text model",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "suffix": "suffix (insertion) is not supported",
    "best_of": "best_of is not supported; use n",
}
# Values of otherwise unsupported fields that ask for nothing beyond the default: accepted.
HARMLESS = {
    "store": (False,),
}


class OpenAIModel(BaseModel):
    """Strict, closed, and `null` for a field with a default means that default (as OpenAI reads it:
    clients forward optional arguments as null)."""

    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: v for k, v in data.items() if not (v is None and k in fields and fields[k].default is not None)
        }


class JsonSchemaFormat(OpenAIModel):
    name: Annotated[Text, Field(max_length=64)] = "response"
    description: Text | None = None
    schema_: dict[str, Any] | bool = Field(default=True, alias="schema")  # True: any JSON value
    strict: bool | None = None  # always enforced: the grammar is the schema


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    _grammar: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self):
        """The grammar is built here, so a schema it cannot follow is a 400 naming response_format."""
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object ({name, schema, strict})")
        if self.type != "text":
            schema = {"type": "object"} if self.type == "json_object" else self.json_schema.schema_
            try:
                self._grammar = _grammar(json.dumps(schema, sort_keys=True))
            except InvalidRequestError as e:
                raise ValueError(str(e)) from e
        return self

    def grammar(self) -> str | None:
        """The llguidance grammar the output must follow (compiled once per distinct schema)."""
        return self._grammar


@functools.lru_cache(maxsize=256)
def _grammar(schema: str) -> str:
    from ..engine.structured import json_schema_grammar

    return json_schema_grammar(json.loads(schema))


class StreamOptions(OpenAIModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False  # vLLM's: usage in every chunk (guidellm and aiperf ask for it)


class SamplingFields(OpenAIModel):
    model: Text | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=-1, ge=-1)
    min_p: float = Field(default=0.0, ge=0, le=1)
    # Signed 64-bit, as OpenAI documents; choice i of n is seeded with seed + i.
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = None
    n: int = Field(default=1, ge=1, le=16)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    repetition_penalty: float = Field(default=1.0, gt=0, le=10)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = Field(default=None, max_length=MAX_STOP_TOKEN_IDS)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = None
    min_tokens: int = Field(default=0, ge=0)  # vLLM's: no end-of-sequence or stop before this many
    # token id (as a string, OpenAI's shape) -> added to its logit before sampling
    logit_bias: (
        Annotated[dict[str, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=1024)] | None
    ) = None
    # accepted and not stored (this server keeps no record of requests)
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    # accepted; there is one tier here
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    response_format: ResponseFormat | None = None  # text, json_object, json_schema (structured outputs)
    store: Refused = None  # false only

    # declared so that a request naming them gets a 400 saying why (UNSUPPORTED), not "extra input";
    # left out of the OpenAPI schema, which lists what the server does
    functions: Refused = None
    function_call: Refused = None
    audio: Refused = None
    modalities: Refused = None
    prediction: Refused = None
    web_search_options: Refused = None
    suffix: Refused = None
    best_of: Refused = None

    @field_validator(*UNSUPPORTED, "store", mode="before")
    @classmethod
    def _unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if value is None or value == [] or value in HARMLESS.get(name, ()):
            return None if name in UNSUPPORTED else value
        if name == "store":
            raise ValueError("store = true is not supported: this server keeps no record of requests")
        raise ValueError(f"not supported: {UNSUPPORTED[name]}")

    @field_validator("logit_bias")
    @classmethod
    def _token_id_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key in bias or ():
            if not key.isascii() or not key.isdigit() or int(key) > 2**31 - 1:
                raise ValueError(f'keys are token ids as strings ("1234"), not {key[:40]!r}')
        return bias

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream = true")
        return self

    def sampling_params(
        self, max_tokens: int | None, logprobs: int | None, index: int, grammar: str | None = None
    ) -> SamplingParams:
        """grammar: one the caller built (a required tool call); else response_format's, if any."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        seed = None if self.seed is None else self.seed + index
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            seed=seed,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            stop=stop,
            stop_token_ids=list(self.stop_token_ids or []),
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            min_tokens=self.min_tokens,
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
            grammar=grammar or (self.response_format.grammar() if self.response_format else None),
        )


class CompletionRequest(SamplingFields):
    # one prompt (text or token ids) or a batch of them; choice i*n + j is prompt i's j-th completion
    prompt: Text | list[int] | list[Text] | list[list[int]] = Field(min_length=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: Literal[False] = False

    def prompts(self) -> list[str | list[int]]:
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]
        return list(self.prompt)


class TextPart(OpenAIModel):
    """One part of a message's content list; the only kind a text model can take (images are a 400)."""

    type: Literal["text"]
    text: Text


class FunctionCall(OpenAIModel):
    name: Text
    arguments: Text  # a JSON object as text, as OpenAI sends it


class ToolCallMessage(OpenAIModel):
    """A tool call of an earlier assistant turn, sent back with the conversation."""

    id: Text
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list[TextPart] | None = None  # None: an assistant turn that only called tools
    name: Text | None = None
    tool_calls: Annotated[list[ToolCallMessage], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: Text | None = None  # role tool: the call this result answers
    reasoning_content: Text | None = None  # an assistant turn's reasoning, as this server returns it
    refusal: Text | None = None  # OpenAI's, echoed back by clients that resend whole messages

    @field_validator("role", mode="before")
    @classmethod
    def _known_roles(cls, role: object) -> object:
        if role == "function":
            raise ValueError("'function' messages are OpenAI's deprecated form; send role 'tool'")
        return role

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, content: object) -> object:
        # checked before the union, whose own error would only say "not a valid string"
        for i, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise ValueError(f"part {i} has type {kind!r}; this server takes text parts only")
        return content

    @model_validator(mode="after")
    def _fields_of_the_role(self):
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id (the id of the call it answers)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content")
        return self

    def for_template(self) -> dict:
        """The chat template's view: content as one string (text parts joined by newlines), and the
        fields templates read by these names (`thinking` is gpt-oss's name for reasoning)."""
        content = self.content
        if isinstance(content, list):
            content = "\n".join(p.text for p in content)
        out = {"role": self.role, "content": content or ""}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning_content:
            out["reasoning_content"] = out["thinking"] = self.reasoning_content
        return out


class FunctionDefinition(OpenAIModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    description: Text | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of an object; none: no arguments
    strict: bool | None = None  # always enforced when a call is required: the grammar is the schema


class Tool(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: Text


class NamedToolChoice(OpenAIModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: Annotated[list[Tool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    # gpt-oss's template reads it (the system message's "Reasoning: ..."); other templates ignore it
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self):
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise ValueError("tools: two functions have the same name")
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"tool_choice names {choice.function.name!r}, which is not in tools")
        if choice == "required" and not names:
            raise ValueError("tool_choice required needs tools")
        if self.forced_tools() and self.response_format and self.response_format.grammar():
            raise ValueError("tool_choice required or named and response_format cannot both constrain")
        return self

    def active_tools(self) -> list[dict] | None:
        """The tools the model is told about (none when tool_choice is none), in OpenAI's JSON shape."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def forced_tools(self) -> list[dict] | None:
        """The tools one of which must be called (required: any; named: that one), else None."""
        choice, tools = self.tool_choice, self.active_tools()
        if choice == "required":
            return tools
        if isinstance(choice, NamedToolChoice):
            return [t for t in tools if t["function"]["name"] == choice.function.name]
        return None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs is only allowed with logprobs = true")
        return self
