"""GitHub Actions workflows: zizmor finds nothing, permissions are least-privilege, actions pinned by SHA.

actionlint's PyPI package downloads its binary from GitHub at install time, which this project's machines
cannot reach; the structural checks below cover what we rely on it for (valid YAML, jobs, steps, `uses`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as True
    return doc


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "build-matrix.yml"}


def test_zizmor_reports_no_findings():
    zizmor = shutil.which("zizmor")
    assert zizmor, "zizmor is a test dependency (pip install -e '.[test]')"
    result = subprocess.run(
        [zizmor, "--offline", "--no-progress", *map(str, WORKFLOWS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_pinned_actions(path):
    doc = load(path)
    assert doc.get("permissions") == {}, "workflow-level permissions must be empty; grant per job"
    for name, job in doc["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"job {name} must declare its permissions"
        writes = {k for k, v in perms.items() if v == "write"}
        pushes = any("docker push" in step.get("run", "") for step in job["steps"])
        assert writes <= ({"packages"} if pushes else set()), f"job {name} writes {writes} without pushing"
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{step['uses']} is not pinned to a full commit SHA"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_pull_requests_run_the_readme_test_command():
    doc = load(ROOT / ".github" / "workflows" / "tests.yml")
    assert "pull_request" in doc["on"]
    runs = [step.get("run", "") for job in doc["jobs"].values() for step in job["steps"]]
    assert any("bash .ci/run" in run for run in runs)
    assert "bash ci/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/run" in (ROOT / "README.md").read_text()


def test_matrix_covers_every_recipe_with_ck_on_and_off():
    doc = load(ROOT / ".github" / "workflows" / "build-matrix.yml")
    assert "schedule" in doc["on"]
    matrix = doc["jobs"]["build"]["strategy"]["matrix"]
    recipes = {p.stem for p in (ROOT / "recipes").glob("*.toml")}
    assert set(matrix["recipe"]) == recipes
    assert set(matrix["ck"]) == {"on", "off"}
