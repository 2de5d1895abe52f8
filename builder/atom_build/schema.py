"""What every recipe field is: its type and, for strings, the full-string pattern it must match.

Every value that can reach a rendered Dockerfile is checked here before anything else looks at it: a
pattern is matched against the whole string (no trailing newline, ASCII only, no control characters),
so a recipe can never add an instruction or a shell command. The one free-text field that is rendered
(recipe.description) is also quoted on the way out (render.label_value).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import RecipeError


def _full(pattern: str) -> re.Pattern[str]:
    # re.ASCII: \d and \w mean ASCII only; fullmatch: `$` would accept a trailing newline
    return re.compile(pattern, re.ASCII)


@dataclass(frozen=True)
class Text:
    """A string that must fully match `pattern`; `what` says in words what it may hold."""

    pattern: re.Pattern[str]
    what: str
    explain: Callable[[str], str] | None = None  # a better problem statement for common mistakes

    def problems(self, value: object) -> Iterator[str]:
        if not isinstance(value, str):
            yield f"must be a string ({self.what}), got {describe(value)}"
        elif not self.pattern.fullmatch(value):
            yield self.explain(value) if self.explain else f"{shown(value)} is not {self.what}"


@dataclass(frozen=True)
class Bool:
    def problems(self, value: object) -> Iterator[str]:
        if not isinstance(value, bool):
            yield f"must be true or false (a TOML boolean, unquoted), got {describe(value)}"


@dataclass(frozen=True)
class Int:
    low: int
    high: int

    def problems(self, value: object) -> Iterator[str]:
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"must be a whole number (unquoted), got {describe(value)}"
        elif not self.low <= value <= self.high:
            yield f"{value} is out of range ({self.low} to {self.high})"


@dataclass(frozen=True)
class List:
    item: Text
    max_items: int = 64

    def problems(self, value: object) -> Iterator[str]:
        if not isinstance(value, list):
            yield f"must be a list of strings, got {describe(value)}"
            return
        if len(value) > self.max_items:
            yield f"has {len(value)} entries (at most {self.max_items})"
        for i, item in enumerate(value):
            for problem in self.item.problems(item):
                yield f"entry {i}: {problem}"


@dataclass(frozen=True)
class Map:
    key: Text
    value: Text
    max_items: int = 64

    def problems(self, value: object) -> Iterator[str]:
        if not isinstance(value, dict):
            yield f"must be a table of strings, e.g. {{ NAME = 'value' }}, got {describe(value)}"
            return
        if len(value) > self.max_items:
            yield f"has {len(value)} entries (at most {self.max_items})"
        for k, v in value.items():
            for problem in self.key.problems(k):
                yield f"key {problem}"
            for problem in self.value.problems(v):
                yield f"{shown(k)}: {problem}"


Field = Text | Bool | Int | List | Map


def shown(value: object, limit: int = 60) -> str:
    """A value as the user wrote it, escaped (a newline shows as \\n) and cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def describe(value: object) -> str:
    kind = {str: "the string", bool: "the boolean", int: "the number", float: "the number"}.get(type(value))
    if kind:
        return f"{kind} {shown(value)}"
    return {list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _describe_ref(ref: str) -> str:
    if not ref:
        return "is empty"
    if ref.upper() == "HEAD":
        return "HEAD moves with every push"
    if re.fullmatch(r"[0-9a-f]{4,39}", ref):
        return f"{shown(ref)} is a short SHA (ambiguous as the repository grows)"
    if re.fullmatch(r"v?\d+(\.\d+)+.*", ref, re.ASCII):
        return f"{shown(ref)} looks like a tag (tags can be moved)"
    if re.fullmatch(r"[A-Za-z0-9._/-]+", ref):
        return f"{shown(ref)} looks like a branch name (branches move)"
    return f"{shown(ref)} is not a commit SHA"


# ---- what each kind of value is ---------------------------------------------------------------------
NAME = Text(_full(r"[a-z0-9][a-z0-9._-]{0,63}"), "a lowercase name (letters, digits, '.', '_', '-')")
KEY = Text(_full(r"[a-z][a-z0-9_]{0,39}"), "a component key (lowercase letters, digits, '_')")
# free text: printable, one line; rendered only through render.label_value
FREE_TEXT = Text(
    _full(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{0,300}"), "one line of printable text (at most 300)"
)
FLAVOUR = Text(_full(r"rocm|cuda|cpu"), "one of 'rocm', 'cuda', 'cpu'")
ARCH = Text(_full(r"gfx[0-9a-f]{2,4}|sm\d{2,3}"), "a GPU arch such as 'gfx950' or 'sm90'")
PYTHON = Text(_full(r"(/[A-Za-z0-9._-]+)*/?python3(\.\d{1,2})?"), "a python3 interpreter, e.g. 'python3.12'")
IMAGE = Text(
    _full(r"([a-z0-9.-]+(:\d{1,5})?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"),
    "an image name such as 'rocm/dev-ubuntu-24.04'",
)
TAG = Text(_full(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"), "an image tag such as '7.2.1-complete'")
DIGEST = Text(_full(r"sha256:[0-9a-f]{64}"), "a digest 'sha256:<64 lowercase hex>'")
BOOTSTRAP = Text(_full(r"debootstrap"), "'debootstrap'")
DIST = Text(_full(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"), "a distribution name such as 'torch'")
VERSION = Text(
    _full(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?"),
    "an exact version such as '2.13.0' (no ranges, no 'latest')",
)
SHA256 = Text(_full(r"[0-9a-f]{64}"), "64 lowercase hex digits (pip hash FILE)")
INDEX_URL = Text(
    _full(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~%+-]+)*/?"),
    "an http(s) index URL without spaces, quotes or query strings",
)
EXTRA = Text(_full(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?"), "an extra's name such as 'serve'")
GIT_REPO = Text(
    _full(r"https://github\.com/[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}?(\.git)?"),
    "a https://github.com/ORG/NAME URL",
)
COMMIT = Text(_full(r"[0-9a-f]{40}"), "a full 40-hex commit", explain=_describe_ref)
REL_PATH = Text(
    _full(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*|\."),
    "a relative path inside the tree ('.' or names joined by '/', no '..')",
)
ENV_NAME = Text(_full(r"[A-Z_][A-Z0-9_]{0,63}"), "an environment variable name (A-Z, 0-9, '_')")
# no quote, `$`, backtick, backslash, space or newline: rendered inside "..." in a RUN line
ENV_VALUE = Text(
    _full(r"([A-Za-z0-9_.,:;/=+@%-]|\{[a-z_]{1,32}\}){0,200}"),
    "a value of letters, digits, . , : ; / = + @ % - _ and {placeholder}s",
)

KINDS = ("pypi", "git", "local")
KIND = Text(_full("|".join(KINDS)), "'pypi', 'git' or 'local'")

SCHEMA: dict[str, dict[str, Field]] = {
    "recipe": {
        "name": NAME,
        "description": FREE_TEXT,
        "flavour": FLAVOUR,
        "archs": List(ARCH, 16),
        "enable_ck": Bool(),
        "python": PYTHON,
    },
    "base": {
        "image": IMAGE,
        "tag": TAG,
        "digest": DIGEST,
        "runtime_tag": TAG,
        "runtime_digest": DIGEST,
        "bootstrap": BOOTSTRAP,
    },
    "build": {"gb_per_job": Int(1, 1024), "prebuild_triton": Bool(), "require_hashes": Bool()},
    "pypi": {
        "kind": KIND,
        "name": DIST,
        "version": VERSION,
        "sha256": SHA256,
        "index_url": INDEX_URL,
        "extras": List(EXTRA, 16),
        "unverified": FREE_TEXT,
    },
    "git": {
        "kind": KIND,
        "repo": GIT_REPO,
        "commit": COMMIT,
        "subdir": REL_PATH,
        "submodules": Bool(),
        "allow_fork": FREE_TEXT,
        "env": Map(ENV_NAME, ENV_VALUE),
        "build_requires": List(KEY, 32),
        "unverified": FREE_TEXT,
    },
    "local": {"kind": KIND, "name": DIST, "path": REL_PATH, "extras": List(EXTRA, 16)},
}
TOP_LEVEL = ("recipe", "base", "build", "components")
MAX_COMPONENTS = 32


def check(data: dict, file: str) -> Iterator[RecipeError]:
    """Type and pattern of every field, unknown keys, and tables where tables belong."""
    for key in data:
        if key not in TOP_LEVEL:
            yield _unknown(file, key, TOP_LEVEL)
    for section in ("recipe", "base", "build"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            yield RecipeError(file, section, f"must be a table [{section}], got {describe(table)}", _TABLE)
            continue
        yield from _check_table(table, SCHEMA[section], section, file)
    components = data.get("components", {})
    if not isinstance(components, dict):
        yield RecipeError(file, "components", f"must be a table, got {describe(components)}", _TABLE)
        return
    if len(components) > MAX_COMPONENTS:
        yield RecipeError(file, "components", f"{len(components)} components", f"at most {MAX_COMPONENTS}")
    for key, component in components.items():
        where = f"components.{key}"
        for problem in KEY.problems(key):
            yield RecipeError(file, where, f"the key {problem}", "rename the table, e.g. [components.aiter]")
        if not isinstance(component, dict):
            yield RecipeError(file, where, f"must be a table, got {describe(component)}", _TABLE)
            continue
        kind = component.get("kind")
        if kind not in KINDS:
            yield RecipeError(
                file, f"{where}.kind", f"unknown kind {shown(kind)}", "use kind = 'pypi', 'git' or 'local'"
            )
            continue
        yield from _check_table(component, SCHEMA[kind], where, file)


_TABLE = "write it as a [table] of key = value lines"


def _check_table(table: dict, fields: dict[str, Field], where: str, file: str) -> Iterator[RecipeError]:
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            yield _unknown(file, f"{where}.{key}", fields)
            continue
        for problem in field.problems(value):
            yield RecipeError(file, f"{where}.{key}", problem, _fix(field))


def _unknown(file: str, where: str, allowed) -> RecipeError:
    return RecipeError(
        file,
        shown(where)[1:-1],
        "unknown key (typo?)",
        f"remove it or use one of: {', '.join(sorted(allowed))}",
    )


def _fix(field: Field) -> str:
    if isinstance(field, Text):
        return f"write {field.what}"
    if isinstance(field, List):
        return f"write a list of {field.item.what}"
    if isinstance(field, Map):
        return f"write {{ NAME = 'value' }} with {field.value.what}"
    if isinstance(field, Int):
        return f"write a number from {field.low} to {field.high} without quotes"
    return "write true or false without quotes"
