"""What made a bundle: a record of its inputs, so a cached bundle is never silently reused after
the recipe, an override or a local source (the engine) changed.

The record (`inputs.json` beside the manifest) is a cache key, not a trust anchor: what a bundle holds
is checked by `bundle verify` against manifest.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .context import IGNORED
from .plan import BuildPlan
from .recipe import REPO_ROOT

INPUTS_FILE = "inputs.json"


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and bytes, with the same exclusions as the build context."""
    digest = hashlib.sha256()
    for path in sorted(_files(root)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _files(root: Path):
    for path in root.iterdir():
        if IGNORED(str(path.parent), [path.name]):
            continue
        if path.is_dir() and not path.is_symlink():
            yield from _files(path)
        elif path.is_file():
            yield path


def bundle_inputs(plan: BuildPlan) -> dict[str, str]:
    inputs = {
        "recipe_sha256": plan.recipe_hash,
        "archs": plan.archs_csv,
        "enable_ck": str(plan.enable_ck_int),
    }
    for c in plan.components:
        inputs[f"component.{c.key}"] = c.pin
        if c.kind == "local":
            inputs[f"component.{c.key}"] += f" tree:{tree_digest(REPO_ROOT / (c.path or '.'))}"
    return inputs


def write(bundle_dir: Path, inputs: dict[str, str]) -> None:
    (bundle_dir / INPUTS_FILE).write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")


def changes(bundle_dir: Path, inputs: dict[str, str]) -> list[str]:
    """How the bundle's recorded inputs differ from these ([] = same); a bundle without a record differs."""
    path = bundle_dir / INPUTS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return [f"the bundle has no readable {INPUTS_FILE} (built before inputs were recorded)"]
    if not isinstance(recorded, dict):
        return [f"{INPUTS_FILE} is not a JSON object"]
    found = []
    for key in sorted(set(recorded) | set(inputs)):
        old, new = recorded.get(key), inputs.get(key)
        if old != new:
            found.append(f"{key}: {_short(old)} -> {_short(new)}")
    return found


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 90 else text[:40] + "..." + text[-40:]
