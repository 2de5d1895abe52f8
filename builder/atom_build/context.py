"""Assemble the build context: the same layout as the repository root, holding only what builds read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .bundle import load_manifest
from .recipe import REPO_ROOT

CACHE_DIR = Path(os.environ.get("ATOM_BUILD_CACHE", Path.home() / ".cache" / "atom-build"))
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", ".pytest_cache")


def stage_context(
    name: str,
    wheelhouse: Path | None = None,
    bundle: Path | None = None,
    app_components: frozenset[str] = frozenset(),
) -> Path:
    """A stable directory per name, synced so unchanged files keep their mtime (BuildKit cache hits)."""
    root = CACHE_DIR / "context" / name
    _sync_tree(REPO_ROOT / "engine", root / "engine")
    _sync_tree(REPO_ROOT / "images" / "scripts", root / "images" / "scripts")
    _sync_files(wheelhouse, root / "wheelhouse")
    _sync_files(None, root / "bundle")
    if bundle is not None:
        stage_bundle(bundle, root / "bundle", app_components)
    return root


def split_bundle(manifest: dict, app_components: frozenset[str]) -> dict[str, list[dict]]:
    """Manifest wheels -> {"deps": [...], "app": [...]}; app = wheels built by the given components."""
    parts: dict[str, list[dict]] = {"deps": [], "app": []}
    for wheel in manifest["wheels"]:
        parts["app" if wheel.get("component") in app_components else "deps"].append(wheel)
    return parts


def stage_bundle(bundle: Path, dst: Path, app_components: frozenset[str]) -> None:
    """bundle/deps and bundle/app, each with its own hashed lock; the manifest travels with the app part."""
    manifest = load_manifest(bundle)
    for part, wheels in split_bundle(manifest, app_components).items():
        _sync_files(None, dst / part)
        for wheel in wheels:
            _link(bundle / wheel["file"], dst / part / wheel["file"])
        lock = "".join(f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}\n" for w in wheels)
        (dst / part / "requirements.lock").write_text(lock)
    _link(bundle / "manifest.json", dst / "app" / "manifest.json")


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
            _link(f, dst / f.name)


def wheel_files(directory: Path | None) -> list[str]:
    return sorted(p.name for p in directory.glob("*.whl")) if directory else []
