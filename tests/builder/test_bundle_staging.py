"""Bundle provenance and staging, without Docker: which component built each wheel, and the deps/app split
that lets an engine-only change rebuild only the clean image's last layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from atom_build.bundle import verify
from atom_build.context import split_bundle, stage_bundle

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "images" / "scripts" / "bundle.py"


def make_bundle(tmp_path: Path) -> Path:
    """Run the real in-container finalize step over wheel files and the component stages' markers."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    files = {
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl": "torch",
        "atom_engine-0.1.0-py3-none-any.whl": "engine",
        "numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl": None,  # a dependency pip downloaded
    }
    for name, component in files.items():
        (bundle / name).write_bytes(name.encode())
        if component:
            (bundle / f".component-{component}").write_text(name + "\n")
    subprocess.run(
        [sys.executable, str(SCRIPT), "finalize", str(bundle), "--recipe", "cpu", "--recipe-sha256", "0" * 64,
         "--pin", "torch=pypi:torch==2.13.0+cpu", "--pin", "engine=local:engine"],
        check=True, capture_output=True,
    )  # fmt: skip
    return bundle


def test_manifest_records_which_component_built_each_wheel(tmp_path):
    bundle = make_bundle(tmp_path)
    wheels = {w["name"]: w for w in json.loads((bundle / "manifest.json").read_text())["wheels"]}
    assert wheels["atom-engine"]["component"] == "engine"
    assert wheels["atom-engine"]["source"] == "local:engine"
    assert wheels["torch"]["source"] == "pypi:torch==2.13.0+cpu"
    assert wheels["numpy"]["component"] is None and wheels["numpy"]["source"] == "pypi (dependency)"
    assert not list(bundle.glob(".component-*")), "markers must not reach the exported bundle"
    verify(bundle)  # still a valid bundle


def test_staging_splits_dependencies_from_the_app(tmp_path):
    bundle = make_bundle(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    parts = split_bundle(manifest, frozenset({"engine"}))
    assert [w["name"] for w in parts["app"]] == ["atom-engine"]
    assert sorted(w["name"] for w in parts["deps"]) == ["numpy", "torch"]

    staged = tmp_path / "context" / "bundle"
    stage_bundle(bundle, staged, frozenset({"engine"}))
    assert sorted(p.name for p in (staged / "deps").iterdir()) == sorted(
        [w["file"] for w in parts["deps"]] + ["requirements.lock"]
    )
    assert (staged / "app" / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    app_lock = (staged / "app" / "requirements.lock").read_text().split()
    assert app_lock[0] == "atom-engine==0.1.0" and app_lock[1].startswith("--hash=sha256:")
    deps_lock = (staged / "deps" / "requirements.lock").read_text()
    assert "atom-engine" not in deps_lock and deps_lock.count("--hash=sha256:") == 2
