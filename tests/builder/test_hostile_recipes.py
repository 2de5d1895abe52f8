"""Hostile recipes: no string field can add a Dockerfile instruction or a shell command, typed fields are
type-checked, malformed files end in one clear error (exit 2), and a fuzzed loader never raises anything
but RecipeErrors. Rendered Dockerfiles are parsed with BuildKit's own parser (the `dockerfile` package)."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import dockerfile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atom_build.errors import RecipeErrors
from atom_build.plan import resolve
from atom_build.recipe import REPO_ROOT, load_recipe, recipe_from_bytes
from atom_build.render import UnsafeOutput, render, write

ROCM = tomllib.loads((REPO_ROOT / "recipes" / "rocm-gfx950.toml").read_text())
ROCM["components"]["engine"]["extras"] = ["serve"]  # so local extras are covered too

PAYLOADS = [
    "x\nRUN touch /pwned",
    "x\r\nRUN touch /pwned",
    "x \\\nRUN touch /pwned",
    "$(touch /pwned)",
    "`touch /pwned`",
    "x; touch /pwned",
    "x && touch /pwned",
    'x" && touch /pwned && echo "',
    "x' ; touch /pwned ; echo '",
    "${HOME}",
    "1.0\n",
    "x\u2028RUN touch /pwned",
]

# (path into the recipe, rendered?) for every string a recipe holds; a path entry of None = a dict key
STRING_FIELDS = [
    ("recipe.name", True),
    ("recipe.description", True),
    ("recipe.python", True),
    ("recipe.archs.0", True),
    ("recipe.flavour", True),
    ("base.image", True),
    ("base.tag", True),
    ("base.runtime_tag", True),
    ("base.digest", True),
    ("components.torch.name", True),
    ("components.torch.version", True),
    ("components.torch.index_url", True),
    ("components.flydsl.sha256", True),
    ("components.aiter.repo", True),
    ("components.aiter.commit", True),
    ("components.aiter.allow_fork", False),
    ("components.triton_kernels.subdir", True),
    ("components.aiter.env.ENABLE_CK", True),
    ("components.aiter.build_requires.0", True),
    ("components.engine.name", True),
    ("components.engine.path", True),
    ("components.engine.extras.0", True),
    ("components.engine.kind", True),
]
KEY_FIELDS = ["components.<key>", "components.aiter.env.<key>"]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (ASCII payloads only)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_text(data: dict) -> str:
    lines = []
    for section in ("recipe", "base", "build"):
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.get(section, {}).items()]
    for key, component in data["components"].items():
        lines.append(f"[components.{json.dumps(key)}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in component.items()]
    return "\n".join(lines) + "\n"


def with_value(path: str, value) -> dict:
    data = json.loads(json.dumps(ROCM))
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def with_key(where: str, key: str) -> dict:
    data = json.loads(json.dumps(ROCM))
    table = data["components"] if where == "components.<key>" else data["components"]["aiter"]["env"]
    first = next(iter(table))
    table[key] = table.pop(first)
    return data


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    return load_recipe(str(path))


def docker_unquote(word: str) -> str:
    """Docker's reading of a double-quoted word: \\" \\\\ \\$ are escapes, any other backslash stays."""
    assert word[0] == word[-1] == '"', word
    out, i, body = [], 0, word[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in '"\\$':
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def instructions(text: str) -> list[tuple]:
    """The instruction list; LABEL values left out (they are where free text may appear)."""
    return [
        (c.cmd, c.flags, c.value[::2] if c.cmd == "LABEL" else c.value) for c in dockerfile.parse_string(text)
    ]


def rendered(recipe) -> dict[str, str]:
    """Rendered texts with the recipe file's hash blanked (it differs with every payload)."""
    return {n: t.replace(recipe.sha256, "<sha>") for n, t in render(resolve(recipe)).items()}


CLEAN = {n: instructions(t) for n, t in rendered(recipe_from_bytes(toml_text(ROCM).encode(), "x")).items()}


def assert_inert(recipe, payload: str, rendered_field: bool) -> None:
    for name, text in rendered(recipe).items():
        assert "/pwned" not in text or rendered_field, name
        assert instructions(text) == CLEAN[name], f"{name}: the instruction list changed"
        for command in dockerfile.parse_string(text):
            if command.cmd == "RUN":
                assert "/pwned" not in command.value[0], f"{name}: payload reached a RUN line"
            if command.cmd == "LABEL" and "/pwned" in command.original:
                labels = dict(zip(command.value[::2], command.value[1::2], strict=True))
                assert docker_unquote(labels["org.opencontainers.image.description"]) == payload


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("field,rendered", STRING_FIELDS, ids=[f for f, _ in STRING_FIELDS])
def test_string_field_payloads_are_rejected_or_inert(tmp_path, field, rendered, payload):
    text = toml_text(with_value(field, payload))
    try:
        recipe = load_text(tmp_path, text)
    except RecipeErrors as e:
        keys = {err.key for err in e.errors}
        assert any(k.startswith(field.rsplit(".", 1)[0]) for k in keys), (field, str(e))
        assert "\n" not in "".join(err.problem for err in e.errors), "values must be shown escaped"
        return
    # only free text may load with a payload in it, and it must stay data
    assert field in ("recipe.description", "components.aiter.allow_fork"), f"{field} took {payload!r}"
    assert_inert(recipe, payload, rendered)


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("where", KEY_FIELDS)
def test_table_keys_with_payloads_are_rejected(tmp_path, where, payload):
    with pytest.raises(RecipeErrors) as e:
        load_text(tmp_path, toml_text(with_key(where, payload)))
    assert "components." in str(e.value)


@pytest.mark.parametrize(
    "path,value,expected",
    [
        (
            "recipe.enable_ck",
            "false",
            "must be true or false (a TOML boolean, unquoted), got the string 'false'",
        ),
        ("build.gb_per_job", "4", "must be a whole number (unquoted), got the string '4'"),
        ("build.gb_per_job", True, "must be a whole number"),
        ("build.gb_per_job", 0, "out of range"),
        ("build.prebuild_triton", 1, "must be true or false"),
        ("components.aiter.submodules", "yes", "must be true or false"),
        ("recipe.archs", "gfx950", "must be a list of strings"),
        ("components.aiter.env", "ENABLE_CK=1", "must be a table of strings"),
        ("components.aiter.env.ENABLE_CK", 1, "must be a string"),
        ("components.torch.version", 2.1, "must be a string"),
        ("components.torch.version", "２.１", "is not an exact version"),
        ("components.aiter.env.ENABLE_CK", "{}", "{placeholder}"),
    ],
)
def test_typed_fields_are_type_checked(tmp_path, path, value, expected):
    data = with_value(path, value) if "." in path.split(".", 1)[1] or path.count(".") else None
    with pytest.raises(RecipeErrors) as e:
        load_text(tmp_path, toml_text(data).replace("\\uff12", "２").replace("\\uff11", "１"))
    message = str(e.value)
    assert expected in message and "hostile.toml" in message and path.rsplit(".", 1)[0] in message


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "[recipe]: section is missing"),
        (b"\xff\xfe[recipe]\n", "is not UTF-8 text"),
        (b"\x00\x01\x02binary", "is binary"),
        (b"[recipe]\nname = " + b"[" * 5000 + b"]" * 5000, "recipe"),
        (b'[recipe]\nname = "x"\n[components]\ntorch = 3\n', "components.torch: must be a table"),
        (b"components = 3\n[recipe]\n", "components"),
        (b"[recipe\n", "fix the TOML syntax"),
    ],
)
def test_malformed_recipe_files_exit_2_with_one_clear_error(tmp_path, content, expected):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    result = subprocess.run(["atom-build", "explain", "--recipe", str(path)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and expected in result.stderr, result.stderr


def test_messages_print_recipe_text_literally(tmp_path):
    data = with_value("base.tag", "[bold red]x[/]")
    path = tmp_path / "markup.toml"
    path.write_text(toml_text(data))
    result = subprocess.run(["atom-build", "explain", "--recipe", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "'[bold red]x[/]'" in result.stderr


def test_local_paths_stay_inside_the_repository(tmp_path):
    for path in ("../outside", "/etc", "engine/../..", "./engine"):
        with pytest.raises(RecipeErrors, match="components.engine.path"):
            load_text(tmp_path, toml_text(with_value("components.engine.path", path)))
    link = REPO_ROOT / "bundle" / "escape-link"
    link.symlink_to("/etc")
    try:
        with pytest.raises(RecipeErrors, match="leads outside the repository"):
            load_text(tmp_path, toml_text(with_value("components.engine.path", "bundle/escape-link")))
    finally:
        link.unlink()


def test_outputs_are_never_written_through_a_symlink(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "Dockerfile").symlink_to(target)
    with pytest.raises(UnsafeOutput, match="is a symlink"):
        write(render(resolve(load_recipe("cpu"))), out)
    assert target.read_text() == "precious"


def toml_inline(data: dict) -> str:
    """Any structure as TOML: top-level keys, inline tables and arrays (floats as repr, finite only)."""

    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return toml_value(v)

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in data.items())


SCALARS = st.one_of(
    st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False, allow_infinity=False)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["kind", "name", "path", "repo", "x", "env"]), inner, max_size=3)
    ),
    max_leaves=12,
)
PATHS = [f for f, _ in STRING_FIELDS] + [
    "recipe", "base", "build", "components", "components.torch", "recipe.enable_ck", "build.gb_per_job",
    "components.aiter.env", "components.aiter.submodules", "recipe.archs",
]  # fmt: skip


def mutated(path: str, value) -> bytes:
    try:
        data = with_value(path, value)
    except (KeyError, IndexError, TypeError):
        data = json.loads(json.dumps(ROCM))
    return toml_inline(data).encode()


@settings(derandomize=True, max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.builds(mutated, st.sampled_from(PATHS), VALUES),
    )
)
def test_fuzzed_recipe_loader_raises_only_recipe_errors(raw):
    """derandomize: CI sees the same cases every run, so a failure reproduces."""
    try:
        recipe = recipe_from_bytes(raw, "fuzz.toml")
    except RecipeErrors:
        return
    render(resolve(recipe))  # whatever loads must also render
