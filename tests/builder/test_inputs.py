"""A bundle records what made it: the recipe, overrides and a digest of each local source tree. A cached
bundle whose record differs is rebuilt (or refused when given explicitly), naming what changed."""

from __future__ import annotations

import json
import shutil

from atom_build import inputs
from atom_build.bundle import verify
from atom_build.plan import resolve
from atom_build.recipe import REPO_ROOT, load_recipe
from atom_build.serve import check_model_dir

from .test_bundle_staging import make_bundle


def test_tree_digest_follows_content_not_caches(tmp_path):
    tree = tmp_path / "engine"
    shutil.copytree(REPO_ROOT / "engine" / "atom" / "server", tree / "atom" / "server")
    before = inputs.tree_digest(tree)
    (tree / "atom" / "server" / "__pycache__").mkdir(exist_ok=True)
    (tree / "atom" / "server" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert inputs.tree_digest(tree) == before, "caches must not make a bundle stale"
    (tree / "atom" / "server" / "app.py").write_text("# edited\n", encoding="utf-8")
    assert inputs.tree_digest(tree) != before
    (tree / "atom" / "server" / "app.py").rename(tree / "atom" / "server" / "moved.py")
    assert inputs.tree_digest(tree) != before


def test_changes_name_each_input_that_differs(tmp_path):
    plan = resolve(load_recipe("cpu"))
    recorded = inputs.bundle_inputs(plan)
    inputs.write(tmp_path, recorded)
    assert inputs.changes(tmp_path, recorded) == []
    edited = {**recorded, "component.engine": "local:engine tree:" + "1" * 64}
    changed = inputs.changes(tmp_path, edited)
    assert len(changed) == 1 and changed[0].startswith("component.engine: local:engine tree:")
    other_arch = inputs.bundle_inputs(resolve(load_recipe("rocm-gfx950"), ["gfx950"]))
    assert {c.split(":")[0] for c in inputs.changes(tmp_path, other_arch)} >= {
        "archs",
        "enable_ck",
        "recipe_sha256",
    }
    (tmp_path / inputs.INPUTS_FILE).unlink()
    assert "no readable inputs.json" in inputs.changes(tmp_path, recorded)[0]


def test_a_bundle_with_its_inputs_record_still_verifies(tmp_path):
    bundle = make_bundle(tmp_path)
    inputs.write(bundle, inputs.bundle_inputs(resolve(load_recipe("cpu"))))
    verify(bundle)
    assert json.loads((bundle / "inputs.json").read_text())["archs"] == ""


def test_serve_checks_the_model_folder_before_docker(tmp_path, smollm2):
    import pytest

    from atom_build.errors import AtomBuildError

    with pytest.raises(AtomBuildError, match="no such folder"):
        check_model_dir(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AtomBuildError, match=r"has no tokenizer.json, \*.safetensors"):
        check_model_dir(tmp_path)
    check_model_dir(smollm2)
