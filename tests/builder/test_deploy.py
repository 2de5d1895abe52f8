"""`atom-build deploy --target kubernetes`: the manifests validate against Kubernetes' own JSON schemas
(kubernetes-validate, strict: an unknown field fails) for each recipe's flavour, and say what matters:
GPUs by vendor, the model read-only, probes on /health, scrape annotations, a non-root pod, the image by
digest when given. Bad options are errors that say what to fix."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from atom_build.cli import app
from atom_build.deploy import DeployOptions, render
from atom_build.errors import AtomBuildError
from atom_build.recipe import load_recipe

K8S = "1.33.0"  # a current Kubernetes; the schemas ship with kubernetes-validate
DIGEST = "sha256:" + "ab" * 32


def manifests(recipe: str, **options) -> dict[str, dict]:
    files = render("kubernetes", load_recipe(recipe), DeployOptions(**{"image": f"atom:{recipe}", **options}))
    return {name: yaml.safe_load(text) for name, text in files.items()}


@pytest.mark.parametrize(
    "recipe,gpu", [("rocm-gfx950", "amd.com/gpu"), ("cuda-sm90", "nvidia.com/gpu"), ("cpu", None)]
)
def test_manifests_validate_and_carry_what_a_cluster_needs(recipe, gpu):
    docs = manifests(recipe, replicas=2, gpus_per_replica=1 if recipe == "cpu" else 4, digest=DIGEST)
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S, strict=True)  # raises on anything off the schema
    deployment, service = docs["deployment.yaml"], docs["service.yaml"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == f"atom@{DIGEST}"  # pinned: what runs is what was built
    limits = container["resources"].get("limits", {})
    assert (limits == {gpu: 4} and "--tensor-parallel-size" in container["args"]) if gpu else limits == {}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/model")
    assert mount["readOnly"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    security = container["securityContext"]
    assert (
        security["runAsNonRoot"] and security["runAsUser"] != 0 and not security["allowPrivilegeEscalation"]
    )
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_cli_writes_the_files(tmp_path):
    args = ["deploy", "--target", "kubernetes", "--recipe", "cpu", "-o", str(tmp_path), "--name", "smol",
            "--model-subpath", "smollm2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    deployment = yaml.safe_load((tmp_path / "deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == "smol"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "atom:cpu"  # no digest: tag


@pytest.mark.parametrize(
    "target,options,says",
    [
        ("kuberay", {}, "checked against KubeRay's CRD schema"),
        ("kubernetes", {"name": "Atom_1"}, "lowercase letters"),
        ("kubernetes", {"digest": "sha256:xyz"}, "64 hex digits"),
        ("kubernetes", {"replicas": 0}, "at least 1"),
    ],
)
def test_bad_options_say_what_to_fix(target, options, says):
    with pytest.raises(AtomBuildError, match=says):
        render(target, load_recipe("cpu"), DeployOptions(image="atom:cpu", **options))
