"""`atom-build pins check`: every pin resolved against its source. Real git (local bare repositories over
file://), the real PyPI simple index, and hosts that do not resolve."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atom_build.pins import Pin, Status, check_git, check_image, check_wheel, registry_of
from atom_build.recipe import REPO_ROOT

FIND_LINKS = Path("/opt/wheels")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    (repo / "file.txt").write_text(message)
    git("add", "file.txt", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """An upstream bare repository, and a fork of it with one commit upstream never had."""
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    first = commit(work, "one")
    second = commit(work, "two")
    git("clone", "-q", "--bare", str(work), str(root / "upstream.git"))
    fork_only = commit(work, "fork only")
    git("clone", "-q", "--bare", str(work), str(root / "fork.git"))
    return {
        "upstream": f"file://{root / 'upstream.git'}",
        "fork": f"file://{root / 'fork.git'}",
        "first": first,
        "second": second,
        "fork_only": fork_only,
    }


def git_pin(url: str, sha: str) -> Pin:
    return Pin("triton", "git", url, sha)


def test_git_commits_resolve_by_sha(repos):
    for sha in (repos["first"], repos["second"]):  # not only the tip: any commit of the repository
        result = check_git(git_pin(repos["upstream"], sha))
        assert result.status is Status.OK, result.detail


def test_a_commit_that_does_not_exist_is_missing(repos):
    result = check_git(git_pin(repos["upstream"], "0123456789abcdef0123456789abcdef01234567"))
    assert result.status is Status.MISSING and "no commit 0123456789ab" in result.detail


def test_a_commit_only_on_a_fork_is_missing_from_upstream(repos):
    assert check_git(git_pin(repos["fork"], repos["fork_only"])).status is Status.OK
    result = check_git(git_pin(repos["upstream"], repos["fork_only"]))
    assert result.status is Status.MISSING, result.detail


def test_an_unreachable_git_host_is_unreachable_not_ok():
    start = time.monotonic()
    result = check_git(git_pin("https://git.invalid/org/repo", "0" * 40), timeout=20)
    assert result.status is Status.UNREACHABLE, result.detail
    assert time.monotonic() - start < 25


@pytest.fixture(scope="module")
def six_wheel(tmp_path_factory) -> tuple[str, str]:
    """A real small wheel from PyPI, hashed here: the independent side of the comparison."""
    dest = tmp_path_factory.mktemp("six")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "six==1.17.0",
         "-d", str(dest)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(dest.glob("six-1.17.0-*.whl"))
    return wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest()


def wheel_pin(version: str, sha256: str | None, name: str = "six") -> Pin:
    return Pin("six", "wheel", "https://pypi.org/simple", version, name, sha256)


def test_pypi_hash_right_wrong_missing(six_wheel):
    filename, digest = six_wheel
    right = check_wheel(wheel_pin("1.17.0", digest))
    assert right.status is Status.OK and filename in right.detail
    wrong = check_wheel(wheel_pin("1.17.0", "0" * 64))
    assert wrong.status is Status.MISMATCH
    assert check_wheel(wheel_pin("1.17.0", None)).status is Status.UNHASHED
    assert check_wheel(wheel_pin("0.0.0.999", digest)).status is Status.MISSING
    nothing = check_wheel(wheel_pin("1.0", None, name="atom-build-no-such-project-7f3a"))
    assert nothing.status is Status.MISSING and "no project" in nothing.detail


def test_an_unreachable_index_is_unreachable_not_ok():
    pin = Pin("torch", "wheel", "https://index.invalid/simple", "2.13.0", "torch", "0" * 64)
    assert check_wheel(pin, timeout=10).status is Status.UNREACHABLE


def test_a_local_wheelhouse_is_hashed_on_disk(tmp_path):
    (tmp_path / "demo_pkg-1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    digest = hashlib.sha256(b"wheel bytes").hexdigest()
    pin = Pin("demo", "wheel", "https://index.invalid/simple", "1.0", "demo-pkg", digest)
    assert check_wheel(pin, tmp_path).status is Status.OK
    assert check_wheel(Pin(**{**pin.__dict__, "sha256": "1" * 64}), tmp_path).status is Status.MISMATCH


def test_image_references_and_an_unreachable_registry():
    assert registry_of("ubuntu") == ("registry-1.docker.io", "library/ubuntu")
    assert registry_of("rocm/dev-ubuntu-24.04") == ("registry-1.docker.io", "rocm/dev-ubuntu-24.04")
    assert registry_of("ghcr.io/org/img") == ("ghcr.io", "org/img")
    assert registry_of("localhost:5000/img") == ("localhost:5000", "img")
    result = check_image(Pin("base", "image", "registry.invalid/org/img", "1.0"), timeout=10)
    assert result.status is Status.UNREACHABLE


def pins_check(*args: str) -> tuple[int, list[dict], str]:
    result = subprocess.run(["atom-build", "pins", "check", "--json", "--timeout", "20", *args],
                            capture_output=True, text=True)  # fmt: skip
    return result.returncode, json.loads(result.stdout), result.stderr


def test_cpu_recipe_pins_check_passes_here():
    code, rows, _ = pins_check("--recipe", "cpu", "--find-links", str(FIND_LINKS))
    assert code == 0, rows
    assert {r["component"]: r["status"] for r in rows} == {"base": "local", "torch": "ok", "engine": "local"}


def test_default_recipe_reports_what_it_could_and_could_not_verify():
    code, rows, stderr = pins_check("--recipe", "rocm-gfx950")
    status = {r["component"]: r["status"] for r in rows}
    assert status["flydsl"] == "ok" and status["engine"] == "local"  # PyPI is reachable here
    assert set(status) == {
        "base",
        "runtime",
        "torch",
        "triton",
        "triton_kernels",
        "aiter",
        "mori",
        "flydsl",
        "engine",
    }
    assert code == (1 if {"unreachable", "missing", "mismatch"} & set(status.values()) else 0)
    assert "unverified" in stderr  # the recipe's own caveats are repeated
    allowed, rows, _ = pins_check("--recipe", "rocm-gfx950", "--allow-unreachable")
    assert allowed == (1 if {"missing", "mismatch"} & {r["status"] for r in rows} else 0)


def test_a_bad_pin_stops_a_build_in_seconds(tmp_path):
    recipe = (REPO_ROOT / "recipes" / "cpu.toml").read_text()
    good = "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"
    bad = tmp_path / "bad-pin.toml"
    bad.write_text(recipe.replace(good, "f" * 64))
    start = time.monotonic()
    result = subprocess.run(
        ["atom-build", "wheels", "--recipe", str(bad), "--find-links", str(FIND_LINKS), "--out", str(tmp_path / "b")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "do not resolve: torch" in result.stderr, result.stderr
    assert "mismatch" in result.stderr and time.monotonic() - start < 30


def test_a_build_that_needs_an_unreachable_source_fails_fast_with_advice(tmp_path):
    """No --find-links and an index that cannot be reached: the build stops before Docker, saying how."""
    start = time.monotonic()
    result = subprocess.run(
        ["atom-build", "wheels", "--recipe", "cpu", "--index-url", "https://index.invalid/simple",
         "--out", str(tmp_path / "b")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "cannot reach" in result.stderr and "--find-links DIR holding torch 2.13.0+cpu" in result.stderr
    assert "unreachable" in result.stderr  # the pin table is shown
    assert time.monotonic() - start < 60
