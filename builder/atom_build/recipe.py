"""Recipe files: TOML -> validated, frozen data classes (step 1 of the pipeline)."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RecipeError, RecipeErrors

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO_ROOT / "recipes"
DEFAULT_RECIPE = "rocm-gfx950"


@dataclass(frozen=True)
class Base:
    image: str
    tag: str
    digest: str | None = None
    runtime_tag: str | None = None
    bootstrap: str | None = None
    runtime_digest: str | None = None

    def ref(self, runtime: bool = False) -> str:
        if runtime and self.runtime_tag:  # its own image: the base's digest does not apply to it
            return f"{self.image}:{self.runtime_tag}" + (
                f"@{self.runtime_digest}" if self.runtime_digest else ""
            )
        return f"{self.image}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Component:
    key: str
    kind: str  # pypi | git | local
    name: str | None = None
    version: str | None = None
    sha256: str | None = None
    index_url: str | None = None
    repo: str | None = None
    commit: str | None = None
    subdir: str = "."
    submodules: bool = False
    allow_fork: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    build_requires: tuple[str, ...] = ()
    path: str | None = None
    extras: tuple[str, ...] = ()
    unverified: str | None = None  # what about this pin could not be checked, in the recipe's words


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    flavour: str
    archs: tuple[str, ...]
    enable_ck: bool
    python: str
    base: Base
    components: tuple[Component, ...]
    gb_per_job: int
    prebuild_triton: bool
    source: str  # the file it came from
    sha256: str  # hash of the file's bytes


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.toml"
    if not candidate.exists():
        known = ", ".join(available_recipes())
        raise RecipeError(
            str(candidate), "recipe", f"no recipe named {name_or_path!r}", f"use one of: {known}"
        )
    return candidate


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(name_or_path: str) -> Recipe:
    """Read, validate and freeze a recipe. Raises RecipeErrors listing every problem at once."""
    path = recipe_path(name_or_path)
    label = _display(path)
    return recipe_from_bytes(_read(path, label), label)


def recipe_from_bytes(raw: bytes, label: str) -> Recipe:
    """Parse, validate and freeze recipe bytes; `label` names them in errors."""
    from .validate import validate

    data = parse(raw, label)
    errors = validate(data, label)
    if errors:
        raise RecipeErrors(errors)
    return _freeze(data, label, hashlib.sha256(raw).hexdigest())


MAX_RECIPE_BYTES = 1 << 20


def _read(path: Path, label: str) -> bytes:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RECIPE_BYTES + 1)
    except OSError as e:
        raise RecipeErrors(
            [RecipeError(label, "file", f"cannot be read ({e.strerror})", "check the path")]
        ) from e
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeErrors([RecipeError(label, "file", "is over 1 MiB", "a recipe is a short TOML file")])
    return raw


def parse(raw: bytes, label: str) -> dict:
    """TOML bytes -> dict, every failure a RecipeErrors (never a traceback)."""

    def fail(problem: str, fix: str) -> RecipeErrors:
        return RecipeErrors([RecipeError(label, "file", problem, fix)])

    if b"\x00" in raw:
        raise fail("is binary (holds NUL bytes), not TOML text", "pass a .toml recipe file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"is not UTF-8 text (byte {e.start})", "save the recipe as UTF-8") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeErrors([RecipeError(label, "toml", str(e), "fix the TOML syntax")]) from e
    except RecursionError as e:
        raise fail("nests tables or arrays too deeply", "a recipe needs two levels of tables") from e


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _freeze(data: dict, source: str, digest: str) -> Recipe:
    r, b, build = data["recipe"], data["base"], data.get("build", {})
    components = tuple(
        Component(
            key=key,
            kind=c["kind"],
            name=c.get("name"),
            version=c.get("version"),
            sha256=c.get("sha256"),
            index_url=c.get("index_url"),
            repo=c.get("repo"),
            commit=c.get("commit"),
            subdir=c.get("subdir", "."),
            submodules=c.get("submodules", False),
            allow_fork=c.get("allow_fork"),
            env=dict(c.get("env", {})),
            build_requires=tuple(c.get("build_requires", ())),
            path=c.get("path"),
            extras=tuple(c.get("extras", ())),
            unverified=c.get("unverified"),
        )
        for key, c in data["components"].items()
    )
    return Recipe(
        name=r["name"],
        description=r.get("description", ""),
        flavour=r["flavour"],
        archs=tuple(r.get("archs", ())),
        enable_ck=r.get("enable_ck", False),
        python=r.get("python", "python3"),
        base=Base(
            b["image"],
            b["tag"],
            b.get("digest"),
            b.get("runtime_tag"),
            b.get("bootstrap"),
            b.get("runtime_digest"),
        ),
        components=components,
        gb_per_job=build.get("gb_per_job", 4),
        prebuild_triton=build.get("prebuild_triton", False),
        source=source,
        sha256=digest,
    )
