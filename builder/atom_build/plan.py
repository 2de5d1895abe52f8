"""Resolve a validated recipe plus command-line overrides into a build plan (step 3, pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import RecipeErrors
from .recipe import Component, Recipe
from .validate import check_archs, check_ck_archs

VENV = "/opt/atom"
PLACEHOLDER_VALUES = {"archs": "${GPU_ARCHS}", "enable_ck": "${ENABLE_CK}", "max_jobs": "$jobs"}


def canonical_name(name: str) -> str:
    """A distribution's normalized name (PEP 503): what wheel files, indexes and locks agree on."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class ComponentStep:
    """One builder stage: how a component becomes wheels in /wheels."""

    key: str
    kind: str
    pin: str  # human-readable immutable source, recorded in the manifest
    dist_name: str = ""
    requirement: str = ""
    no_index: bool = False  # the local wheelhouse (/wheelhouse via PIP_FIND_LINKS) has it
    index_url: str | None = None  # the component's own index, when no --index-url overrides it
    sha256: str | None = None
    repo: str | None = None
    commit: str | None = None
    subdir: str = "."
    submodules: bool = False
    env: tuple[tuple[str, str], ...] = ()
    build_requires: tuple[str, ...] = ()
    path: str | None = None
    extras: tuple[str, ...] = ()

    @property
    def build_mounts(self) -> str:
        return "".join(
            f" --mount=type=bind,from=wheel-{dep},source=/wheels,target=/deps" for dep in self.build_requires
        )


@dataclass(frozen=True)
class BuildPlan:
    recipe: Recipe
    archs: tuple[str, ...]
    enable_ck: bool
    components: tuple[ComponentStep, ...]
    index_url: str = "https://pypi.org/simple"
    venv: str = VENV

    @property
    def recipe_hash(self) -> str:
        return self.recipe.sha256

    @property
    def gb_per_job(self) -> int:
        return self.recipe.gb_per_job

    @property
    def base_ref(self) -> str:
        return self.recipe.base.ref()

    @property
    def runtime_ref(self) -> str:
        return self.recipe.base.ref(runtime=True)

    @property
    def description(self) -> str:
        """The recipe's description, plus what this build overrides (a --no-ck image must not say CK on)."""
        overrides = []
        if self.archs != self.recipe.archs:
            overrides.append(f"archs {self.archs_csv}")
        if self.enable_ck != self.recipe.enable_ck:
            overrides.append("CK on" if self.enable_ck else "CK off")
        suffix = f" (this build: {', '.join(overrides)})" if overrides else ""
        return self.recipe.description + suffix

    @property
    def archs_csv(self) -> str:
        return ",".join(self.archs)

    @property
    def enable_ck_int(self) -> int:
        return int(self.enable_ck)

    @property
    def extras(self) -> tuple[str, ...]:
        """`name:extra,extra` for each component built with extras (bundle.py collect --extra)."""
        return tuple(
            f"{canonical_name(c.dist_name)}:{','.join(c.extras)}" for c in self.components if c.extras
        )

    @property
    def stages(self) -> list[str]:
        return ["build-base", *(f"wheel-{c.key}" for c in self.components), "collect", "bundle"]

    def build_args(self, kind: str) -> dict[str, str]:
        """The ARGs each rendered Dockerfile declares, with their defaults."""
        if kind == "clean":
            return {"RUNTIME_IMAGE": self.runtime_ref}
        return {
            "BASE_IMAGE": self.base_ref,
            "GPU_ARCHS": ";".join(self.archs),
            "ENABLE_CK": str(self.enable_ck_int),
            "MAX_JOBS": "",
            "PIP_INDEX_URL": self.index_url,
        }


def resolve(
    recipe: Recipe,
    archs: list[str] | None = None,
    no_ck: bool = False,
    wheelhouse: list[str] | None = None,
    index_url: str | None = None,
) -> BuildPlan:
    """archs / no_ck override the recipe; wheelhouse lists local wheel file names (--find-links)."""
    chosen = tuple(archs) if archs else recipe.archs
    errors = list(check_archs(list(chosen), recipe.flavour, "--arch")) if archs else []
    enable_ck = recipe.enable_ck and not no_ck
    if enable_ck:
        errors += check_ck_archs(list(chosen), "--arch", "pass --no-ck")
    if errors:
        raise RecipeErrors(errors)
    steps = tuple(_step(c, recipe, wheelhouse or [], index_url) for c in recipe.components)
    plan = BuildPlan(recipe=recipe, archs=chosen, enable_ck=enable_ck, components=steps)
    return replace(plan, index_url=index_url) if index_url else plan


def _step(c: Component, recipe: Recipe, wheelhouse: list[str], index_url: str | None) -> ComponentStep:
    if c.kind == "pypi":
        requirement = f"{c.name}=={c.version}"
        prefix = f"{c.name.replace('-', '_')}-{c.version}-".lower()
        no_index = any(f.lower().startswith(prefix) for f in wheelhouse)
        own_index = c.index_url if not (no_index or index_url) else None
        pin = f"pypi:{requirement}" + (f" sha256:{c.sha256}" if c.sha256 else "")
        return ComponentStep(
            c.key,
            "pypi",
            pin,
            c.name,
            requirement=requirement,
            no_index=no_index,
            index_url=own_index,
            sha256=c.sha256,
            extras=c.extras,
        )
    if c.kind == "git":
        values = {**PLACEHOLDER_VALUES, "prebuild_triton": str(int(recipe.prebuild_triton))}
        env = tuple((k, v.format(**values)) for k, v in c.env.items())
        return ComponentStep(
            c.key,
            "git",
            f"git:{c.repo}@{c.commit}" + (f"#{c.subdir}" if c.subdir != "." else ""),
            c.key,
            repo=c.repo,
            commit=c.commit,
            subdir=c.subdir,
            submodules=c.submodules,
            env=env,
            build_requires=c.build_requires,
        )
    return ComponentStep(c.key, "local", f"local:{c.path}", c.name or c.key, path=c.path, extras=c.extras)
