"""Reproducible wheels and their provenance, without Docker: the engine wheel built twice (other paths,
other mtimes) with the SOURCE_DATE_EPOCH the rendered Dockerfile uses is bit-identical; `bundle diff`
says why two bundles differ; the in-toto provenance names exactly the manifest's wheels and pins."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from atom_build import inputs, provenance
from atom_build.bundle import BundleError, verify
from atom_build.bundle_diff import diff
from atom_build.plan import resolve
from atom_build.recipe import REPO_ROOT, load_recipe
from atom_build.render import render

SCRIPT = REPO_ROOT / "images" / "scripts" / "bundle.py"


def rendered_epoch() -> str:
    text = render(resolve(load_recipe("cpu")))["Dockerfile.wheels"]
    return re.search(r"SOURCE_DATE_EPOCH=(\d+) pip wheel", text).group(1)


def engine_wheel(tmp: Path, name: str, epoch: str | None) -> Path:
    """The local component's build command, on a fresh copy of engine/ (new path, new mtimes)."""
    src = tmp / f"src-{name}" / "engine"
    shutil.copytree(
        REPO_ROOT / "engine", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    for f in src.rglob("*.py"):
        os.utime(f, (1_700_000_000 + len(name) * 1000, 1_700_000_000 + len(name) * 1000))
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch:
        env["SOURCE_DATE_EPOCH"] = epoch
    out = tmp / f"wheels-{name}"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    return next(out.glob("atom_engine-*.whl"))


def bundle_of(tmp: Path, name: str, wheel: Path) -> Path:
    bundle = tmp / f"bundle-{name}"
    bundle.mkdir()
    shutil.copy(wheel, bundle / wheel.name)
    (bundle / ".component-engine").write_text(wheel.name + "\n")
    subprocess.run(
        [sys.executable, str(SCRIPT), "finalize", str(bundle), "--recipe", "cpu", "--recipe-sha256", "0" * 64,
         "--pin", "engine=local:engine"],
        check=True, capture_output=True,
    )  # fmt: skip
    return bundle


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    epoch = rendered_epoch()
    return {
        "a": bundle_of(tmp, "a", engine_wheel(tmp, "a", epoch)),
        "bb": bundle_of(tmp, "bb", engine_wheel(tmp, "bb", epoch)),
        "plain": bundle_of(tmp, "plain", engine_wheel(tmp, "plain", None)),
    }


def test_the_engine_wheel_is_bit_identical_across_builds(builds):
    a = json.loads((builds["a"] / "manifest.json").read_text())["wheels"][0]["sha256"]
    b = json.loads((builds["bb"] / "manifest.json").read_text())["wheels"][0]["sha256"]
    assert a == b
    assert diff(builds["a"], builds["bb"]) == []


def test_bundle_diff_explains_a_difference(builds):
    lines = diff(builds["a"], builds["plain"])
    assert lines[0].startswith("atom-engine 0.1.0: sha256")
    assert any("timestamp differs" in line and "SOURCE_DATE_EPOCH" in line for line in lines[1:]), lines
    result = subprocess.run(["atom-build", "bundle", "diff", str(builds["a"]), str(builds["plain"])],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and "timestamp differs" in result.stdout
    same = subprocess.run(["atom-build", "bundle", "diff", str(builds["a"]), str(builds["bb"])],
                          capture_output=True, text=True)  # fmt: skip
    assert same.returncode == 0 and "identical" in same.stderr


def test_provenance_names_the_wheels_and_every_pin(builds, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(builds["a"], bundle)
    plan = resolve(load_recipe("cpu"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["components"] = {c.key: c.pin for c in plan.components}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    recorded = inputs.bundle_inputs(plan)
    now = datetime.now(UTC)
    statement = provenance.statement(plan, manifest, recorded, "sha256:" + "a" * 64, now, now)
    provenance.write(bundle, statement)
    verify(bundle)
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["torch"]["digest"] == {
        "sha256": "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"
    }
    assert deps["engine"]["digest"]["sha256"] == recorded["component.engine"].rsplit("tree:", 1)[1]
    assert deps["base-image"]["digest"] == {"sha256": "a" * 64}
    assert statement["subject"] == [
        {"name": w["file"], "digest": {"sha256": w["sha256"]}} for w in manifest["wheels"]
    ]

    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    provenance.write(bundle, statement)
    with pytest.raises(BundleError, match="is not in manifest.json"):
        verify(bundle)
    statement = provenance.statement(plan, manifest, recorded, None, now, now)
    statement["predicate"]["buildDefinition"]["resolvedDependencies"].pop(0)
    provenance.write(bundle, statement)
    with pytest.raises(BundleError, match="lacks the pin of component torch"):
        verify(bundle)
