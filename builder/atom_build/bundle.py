"""Verify a wheel bundle on the host: every file re-hashed against manifest.json, nothing extra or missing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import AtomBuildError

BUNDLE_META = {"manifest.json", "requirements.lock"}


class BundleError(AtomBuildError):
    pass


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not path.exists():
        raise BundleError(f"{directory}: no manifest.json\n  fix: build the bundle with `atom-build wheels`")
    return json.loads(path.read_text())


def verify(directory: Path) -> dict:
    """Return the manifest if the bundle is intact, else raise listing every problem."""
    manifest = load_manifest(directory)
    listed = {w["file"]: w for w in manifest["wheels"]}
    present = {p.name for p in directory.iterdir() if p.is_file()} - BUNDLE_META
    problems = [f"missing: {f} (listed in manifest.json)" for f in sorted(set(listed) - present)]
    problems += [f"extra: {f} (not in manifest.json)" for f in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        actual = sha256_file(directory / name)
        if actual != listed[name]["sha256"]:
            problems.append(f"hash mismatch: {name}: manifest {listed[name]['sha256']}, file {actual}")
    lock_lines = (
        (directory / "requirements.lock").read_text().split()
        if (directory / "requirements.lock").exists()
        else []
    )
    for entry in listed.values():
        if f"--hash=sha256:{entry['sha256']}" not in lock_lines:
            problems.append(f"requirements.lock lacks the hash of {entry['file']}")
    if problems:
        raise BundleError(f"{directory}: bundle verification failed:\n  " + "\n  ".join(problems))
    return manifest
