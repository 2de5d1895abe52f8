"""Grammars that make `tool_choice` = required or a named function well-formed: decoding is constrained
to the model's own call syntax around the function's parameter schema (llguidance Lark with inline
JSON schemas), so the model writes what its chat format expects and the same parser reads it."""

from __future__ import annotations

import json

# compact JSON, as for response_format: a model cannot pad its arguments with whitespace forever
COMPACT = {"whitespace_flexible": False}


def call_schema(tool: dict, arguments_key: str = "arguments") -> dict:
    function = tool["function"]
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, arguments_key: parameters(tool)},
        "required": ["name", arguments_key],
        "additionalProperties": False,
    }


def parameters(tool: dict) -> dict:
    return closed(tool["function"].get("parameters") or {"type": "object", "properties": {}})


def closed(schema: object) -> object:
    """Objects that list their properties and say nothing of others get no others: a parameter list
    means these arguments (OpenAI's strict mode requires saying so; small models otherwise invent keys
    until max_tokens). Integers without bounds get JSON's safe range, +-(2**53 - 1) (a small model
    otherwise writes digits until max_tokens; past it JSON parsers lose precision anyway). Whatever this admits, the caller's own schema admits too."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in SCHEMA_MAPS & out.keys():
        out[key] = {name: closed(sub) for name, sub in out[key].items()}
    for key in SCHEMA_LISTS & out.keys():
        out[key] = [closed(sub) for sub in out[key]]
    for key in SCHEMA_ONE & out.keys():
        out[key] = closed(out[key])
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    if schema.get("type") == "integer":
        out.setdefault("minimum", -SAFE_INTEGER)
        out.setdefault("maximum", SAFE_INTEGER)
    return out


SAFE_INTEGER = 2**53 - 1
SCHEMA_MAPS = {"properties", "$defs", "definitions", "patternProperties"}
SCHEMA_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}
SCHEMA_ONE = {"items", "not", "if", "then", "else", "contains", "additionalProperties"}


def inline_json(schema: dict) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": COMPACT})


def one_of(schemas: list[dict]) -> dict:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def hermes(tools: list[dict], parallel: bool) -> str:
    call = inline_json(one_of([call_schema(t) for t in tools]))
    start = 'start: call ("\\n" call)*' if parallel else "start: call"
    return f'{start}\ncall: "<tool_call>\\n" {call} "\\n</tool_call>"\n'


def llama3_json(tools: list[dict], parallel: bool) -> str:
    # Llama 3.1's template renders one call per assistant message, so one call it is
    return "start: " + inline_json(one_of([call_schema(t, "parameters") for t in tools])) + "\n"


def harmony(tools: list[dict], parallel: bool) -> str:
    # one call per message in Harmony: the model stops at <|call|> and the caller answers it
    rules = [
        f'call{i}: " to=functions.{t["function"]["name"]}" <|channel|> "commentary json" <|message|> '
        f"{inline_json(parameters(t))} <|call|>"
        for i, t in enumerate(tools)
    ]
    return "start: " + " | ".join(f"call{i}" for i in range(len(tools))) + "\n" + "\n".join(rules) + "\n"


BUILDERS = {"hermes": hermes, "llama3_json": llama3_json, "harmony": harmony}
