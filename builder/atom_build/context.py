"""Assemble the build context: the same layout as the repository root, holding only what builds read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .recipe import REPO_ROOT

CACHE_DIR = Path(os.environ.get("ATOM_BUILD_CACHE", Path.home() / ".cache" / "atom-build"))
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", ".pytest_cache")


def stage_context(name: str, wheelhouse: Path | None = None, bundle: Path | None = None) -> Path:
    """A stable directory per name, synced so unchanged files keep their mtime (BuildKit cache hits)."""
    root = CACHE_DIR / "context" / name
    _sync_tree(REPO_ROOT / "engine", root / "engine")
    _sync_tree(REPO_ROOT / "images" / "scripts", root / "images" / "scripts")
    _sync_files(wheelhouse, root / "wheelhouse")
    _sync_files(bundle, root / "bundle")
    return root


def _sync_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=IGNORED, copy_function=shutil.copy2)


def _sync_files(src: Path | None, dst: Path) -> None:
    """Hard-link (or copy) the files of src into dst; dst always exists so bind mounts never fail."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    if src is None:
        return
    for f in sorted(src.iterdir()):
        if f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def wheel_files(directory: Path | None) -> list[str]:
    return sorted(p.name for p in directory.glob("*.whl")) if directory else []
