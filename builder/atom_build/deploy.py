"""`atom-build deploy`: Kubernetes manifests for a built image (pure: recipe and options in, YAML text out).

`--target kubernetes`: a Deployment of single-node replicas (each pod one `atom serve`, its GPUs by the
recipe's flavour) and a Service in front. The model comes from a volume mounted read-only at /model (a
PersistentVolumeClaim by default), probes ask `/health` (a startup probe allows for loading the model),
Prometheus scrape annotations point at `/metrics`, and the pod runs as the image's non-root user with no
privilege escalation and no capabilities. The image is pinned by digest when one is given or known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from .errors import AtomBuildError
from .recipe import Recipe

GPU_RESOURCES = {"rocm": "amd.com/gpu", "cuda": "nvidia.com/gpu", "cpu": None}
IMAGE_UID = 1000  # images/partials/macros.j2: the runtime user
PORT = 8000
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # an RFC 1123 label, what Kubernetes names take
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class DeployOptions:
    image: str
    name: str = "atom"
    replicas: int = 1
    gpus_per_replica: int = 1
    model_claim: str = "models"  # the PersistentVolumeClaim holding the model folder
    model_subpath: str = ""  # the model's folder inside that volume
    served_model_name: str | None = None
    digest: str | None = None  # sha256:... of the image in its registry
    extra_args: tuple[str, ...] = ()  # more `atom serve` flags


def render(target: str, recipe: Recipe, options: DeployOptions) -> dict[str, str]:
    """File name -> YAML text."""
    if target != "kubernetes":
        raise AtomBuildError(
            f"--target {target}: only 'kubernetes' is rendered so far\n"
            "  why: KubeRay manifests are not rendered until they can be checked against KubeRay's CRD schema\n"
            "  fix: for replicas across machines, run `atom serve --distributed-executor-backend ray` on a Ray\n"
            "       cluster of nodes running an image with [components.ray] (docs/deploy.md)"
        )
    check(recipe, options)
    labels = {"app.kubernetes.io/name": "atom", "app.kubernetes.io/instance": options.name}
    return {
        "deployment.yaml": _yaml(deployment(recipe, options, labels)),
        "service.yaml": _yaml(service(options, labels)),
    }


def check(recipe: Recipe, options: DeployOptions) -> None:
    if not NAME.match(options.name) or len(options.name) > 63:
        raise AtomBuildError(
            f"--name {options.name!r}: Kubernetes names are lowercase letters, digits and '-'"
        )
    if options.replicas < 1 or options.gpus_per_replica < 1:
        raise AtomBuildError("--replicas and --gpus-per-replica must be at least 1")
    if options.digest and not DIGEST.match(options.digest):
        raise AtomBuildError(f"--digest {options.digest!r}: expected sha256: and 64 hex digits")
    if recipe.flavour == "cpu" and options.gpus_per_replica > 1:
        raise AtomBuildError(f"recipe {recipe.name} is a CPU image: --gpus-per-replica means nothing there")


def image_ref(options: DeployOptions) -> str:
    """The image by digest when known (what runs is what was built), else by tag."""
    if not options.digest or "@" in options.image:
        return options.image
    repository = options.image.rsplit(":", 1)[0] if ":" in options.image.split("/")[-1] else options.image
    return f"{repository}@{options.digest}"


def deployment(recipe: Recipe, options: DeployOptions, labels: dict) -> dict:
    gpu = GPU_RESOURCES[recipe.flavour]
    resources = {"limits": {gpu: options.gpus_per_replica}} if gpu else {}
    args = ["--model", "/model"]  # the image's entrypoint is `atom serve --host 0.0.0.0 --port 8000`
    if gpu and options.gpus_per_replica > 1:
        args += ["--tensor-parallel-size", str(options.gpus_per_replica)]
    if options.served_model_name:
        args += ["--served-model-name", options.served_model_name]
    args += list(options.extra_args)
    container = {
        "name": "atom",
        "image": image_ref(options),
        "args": args,
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": resources,
        "volumeMounts": [
            {"name": "model", "mountPath": "/model", "readOnly": True}
            | ({"subPath": options.model_subpath} if options.model_subpath else {}),
            # the engine's processes share memory (Docker's and Kubernetes' default 64 MiB is too small)
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        # loading a large model takes minutes: the startup probe allows 30 of them, then liveness takes over
        "startupProbe": _probe(period=10, failures=180),
        "readinessProbe": _probe(period=5, failures=3),
        "livenessProbe": _probe(period=10, failures=6),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": IMAGE_UID,
            "runAsGroup": IMAGE_UID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod = {
        "metadata": {
            "labels": labels,
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "fsGroup": IMAGE_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {
                    "name": "model",
                    "persistentVolumeClaim": {"claimName": options.model_claim, "readOnly": True},
                },
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
            "terminationGracePeriodSeconds": 60,  # `atom serve` drains in-flight requests on SIGTERM
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": options.name, "labels": labels},
        "spec": {"replicas": options.replicas, "selector": {"matchLabels": labels}, "template": pod},
    }


def service(options: DeployOptions, labels: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": options.name, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _probe(period: int, failures: int) -> dict:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _yaml(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
