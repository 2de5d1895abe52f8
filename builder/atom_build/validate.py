"""Recipe validation rules (step 2). Each rule returns RecipeErrors that say where, what and how to fix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from .errors import RecipeError
from .recipe import REPO_ROOT

FLAVOURS = ("rocm", "cuda", "cpu")
ROCM_ARCH = re.compile(r"^(gfx90a|gfx942|gfx950|gfx11\d[0-9a-f]|gfx12\d[0-9a-f])$")
CUDA_ARCHS = ("sm80", "sm90", "sm100")
CK_ARCHS = ("gfx90a", "gfx942", "gfx950")
OFFICIAL_ORGS = ("ROCm", "triton-lang", "pytorch", "openai", "NVIDIA")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
EXACT_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
GITHUB_REPO = re.compile(r"^https://github\.com/(?P<org>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)(\.git)?$")
ENV_PLACEHOLDERS = ("archs", "enable_ck", "max_jobs", "prebuild_triton")

KEYS = {
    "": {"recipe", "base", "build", "components"},
    "recipe": {"name", "description", "flavour", "archs", "enable_ck", "python"},
    "base": {"image", "tag", "digest", "runtime_tag", "bootstrap"},
    "build": {"gb_per_job", "prebuild_triton", "require_hashes"},
    "pypi": {"kind", "name", "version", "sha256", "index_url", "extras"},
    "git": {"kind", "repo", "commit", "subdir", "submodules", "allow_fork", "env", "build_requires"},
    "local": {"kind", "name", "path", "extras"},
}

Rule = Callable[[dict, str], Iterator[RecipeError]]


def validate(data: dict, file: str) -> list[RecipeError]:
    errors: list[RecipeError] = []
    for rule in RULES:
        errors.extend(rule(data, file))
        if errors and rule is required_sections:
            break  # later rules assume the sections exist
    return errors


def required_sections(data: dict, file: str) -> Iterator[RecipeError]:
    for section in ("recipe", "base", "components"):
        if not isinstance(data.get(section), dict):
            yield RecipeError(file, f"[{section}]", "section is missing", f"add a [{section}] table")
    for key in ("name", "flavour"):
        if key not in data.get("recipe", {}):
            yield RecipeError(file, f"recipe.{key}", "is missing", f"set recipe.{key}")
    for key in ("image", "tag"):
        if key not in data.get("base", {}):
            yield RecipeError(file, f"base.{key}", "is missing", f"set base.{key}")


def unknown_keys(data: dict, file: str) -> Iterator[RecipeError]:
    """A typo must never be silently dropped."""
    tables = [("", data, KEYS[""]), *((s, data.get(s, {}), KEYS[s]) for s in ("recipe", "base", "build"))]
    for key, comp in data["components"].items():
        kind = comp.get("kind")
        if kind not in KEYS or kind == "":
            yield RecipeError(
                file,
                f"components.{key}.kind",
                f"unknown kind {kind!r}",
                "use kind = 'pypi', 'git' or 'local'",
            )
            continue
        tables.append((f"components.{key}", comp, KEYS[kind]))
    for prefix, table, allowed in tables:
        for key in table:
            if key not in allowed and not (prefix == "" and key in KEYS[""]):
                where = f"{prefix}.{key}" if prefix else key
                yield RecipeError(
                    file,
                    where,
                    "unknown key (typo?)",
                    f"remove it or use one of: {', '.join(sorted(allowed))}",
                )


def archs_known(data: dict, file: str) -> Iterator[RecipeError]:
    r = data["recipe"]
    flavour = r["flavour"]
    if flavour not in FLAVOURS:
        yield RecipeError(file, "recipe.flavour", f"unknown flavour {flavour!r}", f"use one of {FLAVOURS}")
        return
    yield from check_archs(r.get("archs", []), flavour, file)
    if r.get("enable_ck"):
        if flavour != "rocm":
            yield RecipeError(file, "recipe.enable_ck", "CK exists only for ROCm", "set enable_ck = false")
        elif not any(a in CK_ARCHS for a in r.get("archs", [])):
            yield RecipeError(
                file,
                "recipe.enable_ck",
                f"CK is on but no arch supports it ({r.get('archs')})",
                f"add one of {CK_ARCHS} or set enable_ck = false",
            )


def check_archs(archs: list[str], flavour: str, file: str = "command line") -> Iterator[RecipeError]:
    for arch in archs:
        ok = (flavour == "rocm" and ROCM_ARCH.match(arch)) or (flavour == "cuda" and arch in CUDA_ARCHS)
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
    if b["tag"] == "latest" or b.get("runtime_tag") == "latest":
        yield RecipeError(file, "base.tag", "'latest' moves", "name a release tag, e.g. '7.2-complete'")
    if "digest" in b and not DIGEST.match(str(b["digest"])):
        yield RecipeError(file, "base.digest", f"{b['digest']!r} is not a digest", "use 'sha256:<64 hex>'")


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
            if not (REPO_ROOT / str(c.get("path", ""))).is_dir():
                yield RecipeError(
                    file,
                    f"{where}.path",
                    f"{c.get('path')!r} is not a directory of this repo",
                    "point path at the package folder, e.g. 'engine'",
                )


def _git_component(c: dict, where: str, file: str, keys: set[str]) -> Iterator[RecipeError]:
    repo = str(c.get("repo", ""))
    m = GITHUB_REPO.match(repo)
    if not m:
        yield RecipeError(
            file,
            f"{where}.repo",
            f"{repo!r} is not a https://github.com/ORG/NAME URL",
            "use the repository's https URL",
        )
    elif m["org"] not in OFFICIAL_ORGS and not c.get("allow_fork"):
        yield RecipeError(
            file,
            f"{where}.repo",
            f"{m['org']!r} is not an official organisation ({', '.join(OFFICIAL_ORGS)})",
            'use the upstream repository, or keep the fork and say why: allow_fork = "reason"',
        )
    commit = str(c.get("commit", ""))
    if not FULL_SHA.match(commit):
        yield RecipeError(
            file,
            f"{where}.commit",
            _describe_ref(commit),
            f"pin the full 40-hex commit: git ls-remote {repo or 'REPO'} <ref>",
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


def _describe_ref(ref: str) -> str:
    if not ref:
        return "is missing"
    if ref.upper() == "HEAD":
        return "HEAD moves with every push"
    if re.fullmatch(r"[0-9a-f]{4,39}", ref):
        return f"{ref!r} is a short SHA (ambiguous as the repository grows)"
    if re.fullmatch(r"v?\d+(\.\d+)+.*", ref):
        return f"{ref!r} looks like a tag (tags can be moved)"
    return f"{ref!r} looks like a branch name (branches move)"


def _pypi_component(c: dict, where: str, file: str, require_hashes: bool) -> Iterator[RecipeError]:
    if not c.get("name"):
        yield RecipeError(file, f"{where}.name", "is missing", "set the distribution name, e.g. 'torch'")
    version = str(c.get("version", ""))
    if not EXACT_VERSION.match(version):
        yield RecipeError(
            file,
            f"{where}.version",
            f"{version!r} is not an exact version",
            "pin one release, e.g. version = '2.13.0' (no ranges, no 'latest')",
        )
    if "sha256" in c and not SHA256.match(str(c["sha256"])):
        yield RecipeError(
            file,
            f"{where}.sha256",
            "is not 64 lowercase hex digits",
            "copy the wheel's sha256 from the index (pip hash FILE)",
        )
    if require_hashes and "sha256" not in c:
        yield RecipeError(
            file,
            f"{where}.sha256",
            "missing, and build.require_hashes = true",
            "add sha256 = '<hash of the wheel>' (pip hash FILE)",
        )


RULES: list[Rule] = [required_sections, unknown_keys, archs_known, base_pinned, components_pinned]
