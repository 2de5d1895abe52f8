"""Builder pipeline without Docker: validation rules, rendering, drift check, dry runs, CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import dockerfile
import pytest

from atom_build.errors import RecipeErrors
from atom_build.plan import resolve
from atom_build.recipe import REPO_ROOT, available_recipes, load_recipe
from atom_build.render import UndeclaredBuildArg, check_build_args, render

CPU = (REPO_ROOT / "recipes" / "cpu.toml").read_text()
ROCM = (REPO_ROOT / "recipes" / "rocm-gfx950.toml").read_text()
AITER = "e4048607a535ace3a2b51ded31b1c8c2d45c0879"


def bad(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RecipeErrors) as e:
        load_recipe(str(path))
    return str(e.value)


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (f'commit = "{AITER}"', 'commit = "main"', "looks like a branch name"),
        (f'commit = "{AITER}"', 'commit = "v0.1.5"', "looks like a tag"),
        (f'commit = "{AITER}"', 'commit = "e4048607"', "short SHA"),
        (f'commit = "{AITER}"', 'commit = "HEAD"', "HEAD moves"),
        (
            'repo = "https://github.com/ROCm/aiter"',
            'repo = "https://github.com/someone/aiter"',
            "not an official",
        ),
        ('archs = ["gfx942", "gfx950"]', 'archs = ["gfx999"]', "unknown arch 'gfx999'"),
        ('archs = ["gfx942", "gfx950"]', 'archs = ["gfx1100"]', "CK is on but no arch supports it"),
        ('version = "0.5.0"', 'version = ">=0.5"', "is not an exact version"),
        ('sha256 = "32725cab', 'sha256 = "XYZ', "64 lowercase hex"),
        ('tag = "7.2.1-complete"', 'tag = "latest"', "'latest' moves"),
        ('digest = "sha256:3db551c4', 'digest = "sha256:abc"\n# "sha256:3db551c4', "is not a digest"),
        ("enable_ck = true", "enable_ck = true\nenabel_ck = false", "unknown key (typo?)"),
        ('kind = "local"', 'kind = "zip"', "unknown kind 'zip'"),
        (
            'build_requires = ["torch"]\nenv = { ENABLE_CK',
            'build_requires = ["torchh"]\nenv = { ENABLE_CK',
            "'torchh' is not a component",
        ),
        (
            '"{max_jobs}" }\n\n[components.mori]',
            '"{jobs}" }\n\n[components.mori]',
            "unknown placeholder {jobs}",
        ),
    ],
)
def test_each_validation_rule_has_a_clear_error(tmp_path, old, new, expected):
    assert old in ROCM
    message = bad(tmp_path, ROCM.replace(old, new, 1))
    assert expected in message and "fix:" in message and "bad.toml" in message


def test_fork_needs_a_reason(tmp_path):
    fork = ROCM.replace(
        'repo = "https://github.com/ROCm/aiter"',
        'repo = "https://github.com/someone/aiter"\nallow_fork = "carries fix #123"',
    )
    path = tmp_path / "fork.toml"
    path.write_text(fork)
    assert load_recipe(str(path)).name == "rocm-gfx950"


def test_hashes_required_when_promised(tmp_path):
    text = ROCM.replace("[build]", "[build]\nrequire_hashes = true")
    assert load_recipe_text(tmp_path, text).name == "rocm-gfx950"  # every wheel is hashed today
    unhashed = text.replace('sha256 = "008ee0d7', '# sha256 = "008ee0d7')
    assert "components.torch.sha256: missing, and build.require_hashes = true" in bad(tmp_path, unhashed)


def load_recipe_text(tmp_path: Path, text: str):
    path = tmp_path / "ok.toml"
    path.write_text(text)
    return load_recipe(str(path))


def test_warnings_name_what_is_unpinned_or_unverified():
    from atom_build.validate import warnings

    found = "\n".join(warnings(load_recipe("rocm-gfx950")))
    assert "runtime_tag '7.2.1' has no runtime_digest" in found
    assert "components.triton is unverified" in found
    assert "base.tag" not in found and "torch has no sha256" not in found  # both pinned now
    assert warnings(load_recipe("cpu")) == []  # bootstrapped base, hashed torch, local engine


def test_cli_arch_overrides_are_validated():
    recipe = load_recipe("rocm-gfx950")
    assert resolve(recipe, ["gfx950"]).archs == ("gfx950",)
    with pytest.raises(RecipeErrors, match="unknown arch 'sm90'"):
        resolve(recipe, ["sm90"])
    with pytest.raises(RecipeErrors, match="pass --no-ck"):
        resolve(recipe, ["gfx1201"])
    assert not resolve(recipe, ["gfx1201"], no_ck=True).enable_ck


@pytest.mark.parametrize("name", ["cpu", "rocm-gfx950", "cuda-sm90"])
def test_rendered_dockerfiles_parse_and_declare_every_arg(name):
    plan = resolve(load_recipe(name))
    for filename, text in render(plan).items():
        kind = {"Dockerfile": "full", "Dockerfile.wheels": "wheels", "Dockerfile.clean": "clean"}[filename]
        commands = dockerfile.parse_string(text)
        assert commands[0].cmd == "ARG"
        assert "# syntax" not in text and "<<EOF" not in text
        check_build_args(text, plan.build_args(kind), filename)
    clean = render(plan)["Dockerfile.clean"]
    assert "--no-index --require-hashes" in clean and "COPY" not in clean and "USER 1000:1000" in clean
    wheels = render(plan)["Dockerfile.wheels"]
    assert all(f"AS wheel-{c.key}" in wheels for c in plan.components)


def test_undeclared_build_arg_is_an_error():
    text = render(resolve(load_recipe("cpu")))["Dockerfile.wheels"]
    with pytest.raises(UndeclaredBuildArg, match="GPU_ARCH'"):
        check_build_args(text, {"GPU_ARCH": "gfx950"})


def test_no_ck_and_arch_reach_the_dockerfile():
    text = render(resolve(load_recipe("rocm-gfx950"), ["gfx950"], no_ck=True))["Dockerfile.wheels"]
    assert 'ARG ENABLE_CK="0"' in text and 'ARG GPU_ARCHS="gfx950"' in text
    assert 'ENABLE_CK="${ENABLE_CK}"' in text and 'GPU_ARCHS="${GPU_ARCHS}"' in text
    clean = render(resolve(load_recipe("rocm-gfx950"), ["gfx950"], no_ck=True))["Dockerfile.clean"]
    assert "(this build: archs gfx950, CK off)" in clean


@pytest.mark.parametrize("name", ["cpu", "rocm-gfx950", "cuda-sm90"])
def test_hadolint_passes(name, tmp_path):
    for filename, text in render(resolve(load_recipe(name))).items():
        path = tmp_path / filename
        path.write_text(text)
        result = subprocess.run(
            ["hadolint", "--config", str(REPO_ROOT / ".hadolint.yaml"), str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{name}/{filename}:\n{result.stdout}{result.stderr}"


def test_committed_dockerfiles_do_not_drift(tmp_path):
    assert subprocess.run(["atom-build", "render", "--check"], cwd=REPO_ROOT).returncode == 0
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = subprocess.run(
        ["atom-build", "render", "--check", "-o", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "drift" in result.stderr


def test_cli_explain_json_and_dry_runs():
    out = subprocess.run(
        ["atom-build", "explain", "--recipe", "cpu", "--json"], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    assert data["components"]["engine"] == "local:engine" and data["render_all_recipes_ms"] < 1000
    dry = subprocess.run(
        ["atom-build", "wheels", "--arch", "gfx950", "--dry-run"], capture_output=True, text=True, check=True
    ).stdout
    assert "FROM scratch AS bundle" in dry and "--target bundle" in dry and "GPU_ARCHS=gfx950" in dry
    dry = subprocess.run(
        ["atom-build", "image", "--no-ck", "--dry-run"], capture_output=True, text=True, check=True
    ).stdout
    assert "--require-hashes" in dry and "atom:rocm-gfx950-nock" in dry
    listed = json.loads(
        subprocess.run(["atom-build", "recipes", "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert {r["name"] for r in listed} == set(available_recipes())


def test_render_is_fast():
    start = time.perf_counter()
    for name in available_recipes():
        render(resolve(load_recipe(name)))
    assert time.perf_counter() - start < 1.0
