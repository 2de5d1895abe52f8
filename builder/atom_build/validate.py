"""Recipe validation rules (step 2). Each rule returns RecipeErrors that say where, what and how to fix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from . import schema
from .errors import RecipeError
from .recipe import REPO_ROOT, Recipe

ROCM_ARCH = re.compile(r"gfx90a|gfx942|gfx950|gfx11\d[0-9a-f]|gfx12\d[0-9a-f]")
CUDA_ARCHS = ("sm80", "sm90", "sm100")
CK_ARCHS = ("gfx90a", "gfx942", "gfx950")
OFFICIAL_ORGS = ("ROCm", "triton-lang", "pytorch", "openai", "NVIDIA")
GITHUB_ORG = re.compile(r"https://github\.com/(?P<org>[^/]+)/")
ENV_PLACEHOLDERS = ("archs", "enable_ck", "max_jobs", "prebuild_triton")
REQUIRED = {"pypi": ("name", "version"), "git": ("repo", "commit"), "local": ("path",)}

Rule = Callable[[dict, str], Iterator[RecipeError]]


def validate(data: dict, file: str) -> list[RecipeError]:
    """Structure first (sections, types, patterns); the semantic rules run only on a well-formed recipe."""
    errors = [*required_sections(data, file), *schema.check(data, file)]
    if errors:
        return errors
    for rule in RULES:
        errors.extend(rule(data, file))
    return errors


def required_sections(data: dict, file: str) -> Iterator[RecipeError]:
    for section in ("recipe", "base", "components"):
        if not isinstance(data.get(section), dict):
            yield RecipeError(file, f"[{section}]", "section is missing", f"add a [{section}] table")
    for section, keys in (("recipe", ("name", "flavour")), ("base", ("image", "tag"))):
        table = data.get(section)
        for key in keys if isinstance(table, dict) else ():
            if key not in table:
                yield RecipeError(file, f"{section}.{key}", "is missing", f"set {section}.{key}")
    components = data.get("components")
    for key, c in components.items() if isinstance(components, dict) else ():
        kind = c.get("kind") if isinstance(c, dict) else None
        for field in REQUIRED.get(kind, ()) if isinstance(kind, str) else ():
            if field not in c:
                yield RecipeError(file, f"components.{key}.{field}", "is missing", f"set {field}")


def archs_known(data: dict, file: str) -> Iterator[RecipeError]:
    r = data["recipe"]
    flavour = r["flavour"]
    yield from check_archs(r.get("archs", []), flavour, file)
    if r.get("enable_ck"):
        if flavour != "rocm":
            yield RecipeError(file, "recipe.enable_ck", "CK exists only for ROCm", "set enable_ck = false")
        else:
            yield from check_ck_archs(r.get("archs", []), file, "set enable_ck = false")


def check_ck_archs(archs: list[str], file: str, off: str) -> Iterator[RecipeError]:
    """CK kernels exist only for CK_ARCHS: CK on with none of them would build nothing."""
    if not any(a in CK_ARCHS for a in archs):
        yield RecipeError(
            file, "recipe.enable_ck", f"CK is on but no arch supports it ({list(archs)})",
            f"add one of {CK_ARCHS} or {off}",
        )  # fmt: skip


def check_archs(archs: list[str], flavour: str, file: str = "command line") -> Iterator[RecipeError]:
    for arch in archs:
        ok = (flavour == "rocm" and ROCM_ARCH.fullmatch(arch)) or (flavour == "cuda" and arch in CUDA_ARCHS)
        if not ok:
            known = "gfx90a, gfx942, gfx950, gfx11xx, gfx12xx" if flavour == "rocm" else ", ".join(CUDA_ARCHS)
            fix = f"use one of: {known}" if flavour != "cpu" else "a cpu recipe takes no archs: archs = []"
            yield RecipeError(file, "recipe.archs", f"unknown arch {arch!r} for flavour {flavour!r}", fix)
    if flavour != "cpu" and not archs:
        yield RecipeError(
            file, "recipe.archs", "no GPU archs", "list the archs to build for, e.g. ['gfx950']"
        )


def base_pinned(data: dict, file: str) -> Iterator[RecipeError]:
    b = data["base"]
    for key in ("tag", "runtime_tag"):
        if b.get(key) == "latest":
            yield RecipeError(
                file, f"base.{key}", "'latest' moves", "name a release tag, e.g. '7.2.1-complete'"
            )


def components_pinned(data: dict, file: str) -> Iterator[RecipeError]:
    require_hashes = data.get("build", {}).get("require_hashes", False)
    keys = set(data["components"])
    for key, c in data["components"].items():
        where = f"components.{key}"
        if c.get("kind") == "git":
            yield from _git_component(c, where, file, keys)
        elif c.get("kind") == "pypi":
            yield from _pypi_component(c, where, file, require_hashes)
        elif c.get("kind") == "local":
            yield from _local_component(c, where, file)


def _local_component(c: dict, where: str, file: str) -> Iterator[RecipeError]:
    """A local component is built from this repository only: its path may not lead out (.., symlinks)."""
    path = (REPO_ROOT / c["path"]).resolve()
    if not path.is_relative_to(REPO_ROOT.resolve()):
        yield RecipeError(
            file, f"{where}.path", f"{c['path']!r} leads outside the repository (a symlink?)",
            "local components are built from this repository; vendor the package into it",
        )  # fmt: skip
    elif not path.is_dir():
        yield RecipeError(
            file, f"{where}.path", f"{c['path']!r} is not a directory of this repository",
            "point path at the package folder, e.g. 'engine'",
        )  # fmt: skip


def _git_component(c: dict, where: str, file: str, keys: set[str]) -> Iterator[RecipeError]:
    m = GITHUB_ORG.match(c["repo"])
    if m and m["org"] not in OFFICIAL_ORGS and not c.get("allow_fork"):
        yield RecipeError(
            file,
            f"{where}.repo",
            f"{m['org']!r} is not an official organisation ({', '.join(OFFICIAL_ORGS)})",
            'use the upstream repository, or keep the fork and say why: allow_fork = "reason"',
        )
    for name, value in c.get("env", {}).items():
        for placeholder in re.findall(r"{(\w+)}", str(value)):
            if placeholder not in ENV_PLACEHOLDERS:
                yield RecipeError(
                    file,
                    f"{where}.env.{name}",
                    f"unknown placeholder {{{placeholder}}}",
                    f"use one of {', '.join('{' + p + '}' for p in ENV_PLACEHOLDERS)}",
                )
    for dep in c.get("build_requires", []):
        if dep not in keys:
            yield RecipeError(
                file,
                f"{where}.build_requires",
                f"{dep!r} is not a component of this recipe",
                f"use one of: {', '.join(sorted(keys))}",
            )


def _pypi_component(c: dict, where: str, file: str, require_hashes: bool) -> Iterator[RecipeError]:
    if require_hashes and "sha256" not in c:
        yield RecipeError(
            file,
            f"{where}.sha256",
            "missing, and build.require_hashes = true",
            "add sha256 = '<hash of the wheel>' (pip hash FILE)",
        )


RULES: list[Rule] = [archs_known, base_pinned, components_pinned]


def warnings(recipe: Recipe) -> list[str]:
    """What a recipe leaves unpinned or unverified: not errors, but said before every build."""
    found = []
    b = recipe.base
    if not b.bootstrap:
        if not b.digest:
            found.append(f"base.tag {b.tag!r} has no digest: the tag can move (set base.digest)")
        if b.runtime_tag and not b.runtime_digest:
            found.append(f"base.runtime_tag {b.runtime_tag!r} has no runtime_digest: the tag can move")
    for c in recipe.components:
        if c.kind == "pypi" and not c.sha256:
            found.append(f"components.{c.key} has no sha256: any file of {c.name} {c.version} is accepted")
        if c.unverified:
            found.append(f"components.{c.key} is unverified: {c.unverified}")
    return found
