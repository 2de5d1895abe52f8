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

    def ref(self, runtime: bool = False) -> str:
        tag = (self.runtime_tag or self.tag) if runtime else self.tag
        return f"{self.image}:{tag}" + (f"@{self.digest}" if self.digest else "")


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
    from .validate import validate  # validation rules live in their own module

    path = recipe_path(name_or_path)
    raw_bytes = path.read_bytes()
    label = _display(path)
    try:
        data = tomllib.loads(raw_bytes.decode())
    except tomllib.TOMLDecodeError as e:
        raise RecipeErrors([RecipeError(label, "toml", str(e), "fix the TOML syntax")]) from e
    errors = validate(data, label)
    if errors:
        raise RecipeErrors(errors)
    return _freeze(data, label, hashlib.sha256(raw_bytes).hexdigest())


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
        base=Base(b["image"], b["tag"], b.get("digest"), b.get("runtime_tag"), b.get("bootstrap")),
        components=components,
        gb_per_job=build.get("gb_per_job", 4),
        prebuild_triton=build.get("prebuild_triton", False),
        source=source,
        sha256=digest,
    )
