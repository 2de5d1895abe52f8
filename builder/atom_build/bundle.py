"""Verify a wheel bundle on the host, strictly: the manifest's schema, every file re-hashed, nothing extra,
missing, duplicated, linked or special, and a lock that says exactly what the manifest says.

Every problem is reported at once, so one run shows the whole extent of a tampered or broken bundle.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections import Counter
from pathlib import Path

from . import provenance
from .errors import AtomBuildError

MANIFEST, LOCK = "manifest.json", "requirements.lock"
# inputs.json: the cache key (atom_build.inputs); provenance.intoto.json and sbom.cdx.json: see their modules
BUNDLE_META = {MANIFEST, LOCK, "inputs.json", "provenance.intoto.json", "sbom.cdx.json"}
HEX64 = re.compile(r"[0-9a-f]{64}")
WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")
# the manifest's schema: field -> accepted types (images/scripts/bundle.py writes it)
MANIFEST_FIELDS = {
    "recipe": (str,),
    "recipe_sha256": (str,),
    "archs": (list,),
    "enable_ck": (bool,),
    "python": (str,),
    "components": (dict,),
    "wheels": (list,),
}
WHEEL_FIELDS = {
    "name": (str,),
    "version": (str,),
    "file": (str,),
    "sha256": (str,),
    "component": (str, type(None)),
    "source": (str,),
}


class BundleError(AtomBuildError):
    pass


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lock_line(wheel: dict) -> str:
    return f"{wheel['name']}=={wheel['version']} --hash=sha256:{wheel['sha256']}"


def load_manifest(directory: Path) -> dict:
    """The manifest, schema-checked; BundleError listing every schema problem."""
    manifest, problems = _read_manifest(directory)
    if problems:
        raise BundleError(_report(directory, problems))
    return manifest


def verify(directory: Path) -> dict:
    """Return the manifest if the bundle is intact, else raise listing every problem."""
    if not directory.is_dir() or directory.is_symlink():
        raise BundleError(
            f"{directory}: not a bundle directory\n  fix: pass the folder `atom-build wheels` wrote"
        )
    manifest, problems = _read_manifest(directory)
    if manifest is not None:
        wheels = [
            w for w in manifest["wheels"]
            if isinstance(w, dict) and isinstance(w.get("file"), str) and isinstance(w.get("sha256"), str)
        ]  # fmt: skip
        problems += _check_entries(directory, wheels)
        problems += _check_lock(directory, wheels)
        if not problems:
            problems += provenance.check(directory, manifest)
    if problems:
        raise BundleError(_report(directory, problems))
    return manifest


def _report(directory: Path, problems: list[str]) -> str:
    return f"{directory}: bundle verification failed:\n  " + "\n  ".join(problems)


def _read_manifest(directory: Path) -> tuple[dict | None, list[str]]:
    path = directory / MANIFEST
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return None, [f"{MANIFEST} is not a regular file"]
    if not path.exists():
        return None, [f"no {MANIFEST} (build the bundle with `atom-build wheels`)"]
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        return None, [f"{MANIFEST} is not valid JSON ({e})"]
    if not isinstance(manifest, dict):
        return None, [f"{MANIFEST} must hold a JSON object"]
    problems = _schema(manifest, MANIFEST_FIELDS, MANIFEST)
    if problems:
        return None, problems
    for i, wheel in enumerate(manifest["wheels"]):
        if not isinstance(wheel, dict):
            problems.append(f"{MANIFEST}: wheels[{i}] must be an object")
            continue
        problems += _schema(wheel, WHEEL_FIELDS, f"{MANIFEST}: wheels[{i}]")
        if not problems:
            problems += _wheel_values(wheel, f"{MANIFEST}: wheels[{i}]")
    if not HEX64.fullmatch(manifest["recipe_sha256"]):
        problems.append(f"{MANIFEST}: recipe_sha256 is not 64 lowercase hex digits")
    return manifest, problems


def _schema(obj: dict, fields: dict, where: str) -> list[str]:
    problems = [f"{where}: missing field {k!r}" for k in fields if k not in obj]
    problems += [f"{where}: unknown field {k!r}" for k in obj if k not in fields]
    for key, types in fields.items():
        if key in obj and (not isinstance(obj[key], types) or isinstance(obj[key], bool) != (bool in types)):
            problems.append(f"{where}: {key} has the wrong type ({type(obj[key]).__name__})")
    return problems


def _wheel_values(wheel: dict, where: str) -> list[str]:
    problems = []
    if not WHEEL_FILE.fullmatch(wheel["file"]):
        problems.append(f"{where}: file {wheel['file']!r} is not a wheel file name in the bundle folder")
    if not HEX64.fullmatch(wheel["sha256"]):
        problems.append(f"{where}: sha256 is not 64 lowercase hex digits")
    return problems


def _check_entries(directory: Path, wheels: list[dict]) -> list[str]:
    problems = []
    for name, count in Counter(w["file"] for w in wheels).items():
        if count > 1:
            problems.append(f"duplicate: {name} is listed {count} times in {MANIFEST}")
    for name, count in Counter(str(w.get("name")) for w in wheels).items():
        if count > 1:
            problems.append(f"duplicate: distribution {name!r} has {count} wheels in {MANIFEST}")
    listed = {w["file"]: w for w in wheels}
    present = set()
    for entry in sorted(directory.iterdir()):
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"symlink: {entry.name} (a bundle holds regular files only)")
        elif stat.S_ISDIR(mode):
            problems.append(f"extra directory: {entry.name}")
        elif not stat.S_ISREG(mode):
            problems.append(f"special file: {entry.name} (not a regular file)")
        elif entry.name not in BUNDLE_META:
            present.add(entry.name)
    problems += [f"missing: {f} (listed in {MANIFEST})" for f in sorted(set(listed) - present)]
    problems += [f"extra: {f} (not in {MANIFEST})" for f in sorted(present - set(listed))]
    for wheel in wheels:
        name = wheel["file"]
        if name in present:
            actual = sha256_file(directory / name)
            if actual != wheel["sha256"]:
                problems.append(f"hash mismatch: {name}: manifest {wheel['sha256']}, file {actual}")
    return problems


def _check_lock(directory: Path, wheels: list[dict]) -> list[str]:
    path = directory / LOCK
    if path.is_symlink() or not path.is_file():
        return [f"no {LOCK} (or not a regular file)"]
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        return [f"{LOCK} is not UTF-8 text"]
    expected = Counter(lock_line(w) for w in wheels)
    actual = Counter(lines)
    problems = [f"{LOCK}: line {line!r} is not in {MANIFEST}" for line in actual if line not in expected]
    problems += [f"{LOCK}: lacks {line!r} ({MANIFEST} lists it)" for line in expected if line not in actual]
    problems += [f"{LOCK}: {line!r} appears {n} times" for line, n in actual.items() if n > 1]
    return problems
