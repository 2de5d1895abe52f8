"""`atom-build bundle verify` is strict: every way a bundle can be tampered with or broken is reported,
all at once, with exit status 2. Bundles are made by the real in-container finalize step."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from atom_build.bundle import BundleError, verify

from .test_bundle_staging import make_bundle


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def problems(bundle: Path) -> str:
    with pytest.raises(BundleError) as e:
        verify(bundle)
    return str(e.value)


def duplicate_with_wrong_hash(m: dict) -> None:
    m["wheels"].append({**m["wheels"][0], "sha256": "f" * 64})


def second_version(m: dict) -> None:
    m["wheels"].append({**m["wheels"][0], "file": "x-9-py3-none-any.whl"})


TAMPERING = {
    "duplicate entry, one hash wrong": (
        lambda b: edit_manifest(b, duplicate_with_wrong_hash),
        ["is listed 2 times", "hash mismatch"],
    ),
    "two wheels of one distribution": (lambda b: edit_manifest(b, second_version), ["has 2 wheels"]),
    "invalid JSON": (lambda b: (b / "manifest.json").write_text("{not json"), ["not valid JSON"]),
    "missing field": (lambda b: edit_manifest(b, lambda m: m.pop("recipe")), ["missing field 'recipe'"]),
    "wheel missing sha256": (
        lambda b: edit_manifest(b, lambda m: m["wheels"][0].pop("sha256")),
        ["wheels[0]: missing field 'sha256'"],
    ),
    "wrong type": (lambda b: edit_manifest(b, lambda m: m.update(enable_ck="no")), ["enable_ck has the wrong type"]),
    "path in a file name": (
        lambda b: edit_manifest(b, lambda m: m["wheels"][0].update(file="../../etc/x.whl")),
        ["is not a wheel file name"],
    ),
    "symlinked wheel": (lambda b: _replace_with_symlink(b), ["symlink: atom_engine"]),
    "extra directory": (lambda b: (b / "sub").mkdir(), ["extra directory: sub"]),
    "special file": (lambda b: os.mkfifo(b / "pipe.whl"), ["special file: pipe.whl"]),
    "extra file": (lambda b: (b / "stray.whl").write_bytes(b""), ["extra: stray.whl"]),
    "missing file": (lambda b: next(b.glob("numpy-*.whl")).unlink(), ["missing: numpy"]),
    "lock line altered": (lambda b: _edit_lock(b, lambda t: t.replace("numpy==2.3.0", "numpy==2.3.1")), [
        "line 'numpy==2.3.1", "lacks 'numpy==2.3.0"]),
    "lock line duplicated": (lambda b: _edit_lock(b, lambda t: t + t.splitlines()[0] + "\n"), ["appears 2 times"]),
    "lock line added": (lambda b: _edit_lock(b, lambda t: t + "evil==1.0 --hash=sha256:" + "0" * 64 + "\n"), [
        "line 'evil==1.0"]),
    "lock missing": (lambda b: (b / "requirements.lock").unlink(), ["no requirements.lock"]),
}  # fmt: skip


def _replace_with_symlink(bundle: Path) -> None:
    wheel = next(bundle.glob("atom_engine-*.whl"))
    real = bundle.parent / wheel.name
    wheel.rename(real)
    wheel.symlink_to(real)


def _edit_lock(bundle: Path, change) -> None:
    path = bundle / "requirements.lock"
    path.write_text(change(path.read_text()))


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
def test_each_kind_of_tampering_is_reported(tmp_path, case):
    bundle = make_bundle(tmp_path)
    verify(bundle)
    tamper, expected = TAMPERING[case]
    tamper(bundle)
    message = problems(bundle)
    for text in expected:
        assert text in message, message


def test_every_problem_is_reported_at_once_with_exit_2(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "stray.whl").write_bytes(b"")
    (bundle / "sub").mkdir()
    _edit_lock(bundle, lambda t: t.replace("numpy==2.3.0", "numpy==2.3.1"))
    wheel = next(bundle.glob("torch-*.whl"))
    wheel.write_bytes(b"tampered")
    result = subprocess.run(["atom-build", "bundle", "verify", str(bundle)], capture_output=True, text=True)
    assert result.returncode == 2
    for text in ("extra: stray.whl", "extra directory: sub", "hash mismatch: torch", "lacks 'numpy==2.3.0"):
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
