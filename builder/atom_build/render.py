"""Render a build plan into Dockerfile text (step 4, pure)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import jinja2

from .errors import AtomBuildError
from .plan import BuildPlan
from .recipe import REPO_ROOT

TEMPLATES_DIR = REPO_ROOT / "images"
# Output file name -> (template, which build args it declares)
DOCKERFILES = {
    "Dockerfile": ("full.Dockerfile.j2", "full"),
    "Dockerfile.wheels": ("wheels.Dockerfile.j2", "wheels"),
    "Dockerfile.clean": ("clean.Dockerfile.j2", "clean"),
}
ARG_LINE = re.compile(r"^ARG (\w+)", re.MULTILINE)
VAR_USE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class UndeclaredBuildArg(AtomBuildError):
    pass


def label_value(value: object) -> str:
    """A double-quoted Dockerfile word that stays data: JSON escapes quotes and backslashes, and `$` is
    escaped too because Docker expands variables in LABEL and ARG values."""
    return json.dumps(str(value), ensure_ascii=False).replace("$", "\\$")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # every recipe value in a RUN line goes through `sh`, every LABEL/ARG value through `label`
    env.filters["sh"] = lambda v: shlex.quote(str(v))
    env.filters["label"] = label_value
    return env


def render(plan: BuildPlan) -> dict[str, str]:
    env = environment()
    out = {}
    for filename, (template, kind) in DOCKERFILES.items():
        text = env.get_template(template).render(plan=plan, args=plan.build_args(kind))
        out[filename] = _tidy(text)
    return out


def _tidy(text: str) -> str:
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def declared_args(dockerfile: str) -> set[str]:
    return set(ARG_LINE.findall(dockerfile))


def check_build_args(dockerfile: str, passed: dict[str, str], name: str = "Dockerfile") -> None:
    """Every --build-arg must be declared by an ARG (docker would drop it with only a warning)."""
    undeclared = sorted(set(passed) - declared_args(dockerfile))
    if undeclared:
        raise UndeclaredBuildArg(
            f"{name}: build args {undeclared} are not declared by any ARG and would be silently dropped\n"
            f"  fix: declared args are {sorted(declared_args(dockerfile))}; check the spelling"
        )


class UnsafeOutput(AtomBuildError):
    pass


def write(rendered: dict[str, str], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_file(out_dir / filename, text) for filename, text in rendered.items()]


def write_file(path: Path, text: str) -> Path:
    """Write a file but never through a symlink (it could point anywhere, e.g. at ~/.bashrc)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if path.is_symlink():
            raise UnsafeOutput(
                f"{path} is a symlink; refusing to write through it\n  fix: remove it or pick another --out"
            ) from e
        raise UnsafeOutput(f"{path}: cannot write ({e.strerror})") from e
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def drift(rendered: dict[str, str], out_dir: Path) -> list[str]:
    """Names of files whose committed text differs from what the recipe renders."""
    return [
        f for f, text in rendered.items() if not (out_dir / f).exists() or (out_dir / f).read_text() != text
    ]
