"""The command-line options that several `atom-build` commands share (typer Annotated types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RecipeOpt = Annotated[
    str,
    typer.Option(
        "--recipe", "-r", envvar="ATOM_RECIPE", help="Recipe name in recipes/ or a path to a .toml file."
    ),
]
ArchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arch",
        metavar="ARCH",
        help="GPU arch to build for (repeatable); overrides the recipe, e.g. gfx950 or sm90.",
    ),
]
NoCkOpt = Annotated[bool, typer.Option("--no-ck", help="Build without Composable Kernel (ENABLE_CK=0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
DryOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the Dockerfile and the docker command; run nothing.")
]
FindLinksOpt = Annotated[
    Path | None, typer.Option("--find-links", help="Local wheelhouse pip may take wheels from.")
]
IndexOpt = Annotated[str | None, typer.Option("--index-url", help="PyPI mirror for every pip step.")]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert", help="CA bundle for a TLS proxy; passed as a BuildKit secret, never stored in a layer."
    ),
]
SkipPinsOpt = Annotated[
    bool,
    typer.Option(
        "--skip-pin-check", help="Build without resolving the pins first (a bad pin then fails mid-build)."
    ),
]
DockerOpt = Annotated[
    str | None, typer.Option("--docker", help="docker client to build with (default: found).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="A cold build: no BuildKit layer cache.")]
