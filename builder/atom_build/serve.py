"""`atom-build serve`: run an image with the model mounted read-only and the right device flags.

Every way this commonly fails (no model folder, an image not built, a port taken, a name in use, no GPU
of the asked kind, a model the engine cannot load) ends within seconds with the reason and a next step,
and the container it created is removed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import AtomBuildError

GPU_MODES = ("rocm", "nvidia", "none")
MODEL_FILES = ("config.json", "tokenizer.json")


def check_model_dir(model: Path) -> None:
    """Docker would create a missing host folder and the engine would fail inside it: check here."""
    if not model.is_dir():
        raise AtomBuildError(
            f"--model {model}: no such folder\n  fix: pass an HF model folder (`atom-build demo-model` makes one)"
        )
    missing = [f for f in MODEL_FILES if not (model / f).is_file()]
    if not any(model.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise AtomBuildError(
            f"--model {model}: has no {', '.join(missing)}\n"
            "  fix: pass a Hugging Face model folder (config.json, tokenizer.json, *.safetensors)"
        )


def check_gpus(gpus: str) -> None:
    if gpus not in GPU_MODES:
        raise AtomBuildError(f"--gpus {gpus!r} is not one of {GPU_MODES}")
    if gpus == "rocm" and not Path("/dev/kfd").exists():
        raise AtomBuildError("--gpus rocm: this machine has no /dev/kfd (no ROCm GPU driver)\n"
                             "  fix: run on an Instinct machine with amdgpu loaded, or --gpus none")  # fmt: skip


def run_kwargs(image: str, model: Path, port: int, gpus: str, name: str | None) -> dict:
    """docker SDK containers.create() arguments (pure: tested without Docker)."""
    if gpus not in GPU_MODES:
        raise AtomBuildError(f"--gpus {gpus!r} is not one of {GPU_MODES}")
    kwargs: dict = {
        "image": image,
        # the id clients see is the host folder's name, as with `atom serve --model DIR` on the host
        "command": ["--model", "/model", "--served-model-name", model.resolve().name],
        "volumes": {str(model.resolve()): {"bind": "/model", "mode": "ro"}},
        "ports": {"8000/tcp": ("127.0.0.1", port)},
        "name": name,
        "shm_size": "16g" if gpus != "none" else "1g",
    }
    if gpus == "rocm":
        kwargs.update(
            devices=["/dev/kfd:/dev/kfd", "/dev/dri:/dev/dri"],
            group_add=["video"],
            ipc_mode="host",
            security_opt=["seccomp=unconfined"],
        )
    elif gpus == "nvidia":
        import docker.types

        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


def docker_run_flags(gpus: str) -> str:
    """The same flags for a plain `docker run` (printed and documented)."""
    return {
        "rocm": "--device /dev/kfd --device /dev/dri --group-add video --ipc host --shm-size 16g "
        "--security-opt seccomp=unconfined",
        "nvidia": "--gpus all --shm-size 16g",
        "none": "--shm-size 1g",
    }[gpus]


def explain_docker_error(e: Exception, image: str, port: int, name: str | None) -> AtomBuildError:
    """Docker SDK errors -> one line of reason and one of advice."""
    import docker.errors

    text = str(getattr(e, "explanation", None) or e)
    if isinstance(e, docker.errors.ImageNotFound):
        return AtomBuildError(
            f"image {image!r} does not exist here\n  fix: build it (`atom-build image`) or pass --image"
        )
    if "port is already allocated" in text or "address already in use" in text:
        return AtomBuildError(f"port {port} is already in use on this machine\n  fix: pass another --port")
    if isinstance(e, docker.errors.APIError) and e.status_code == 409:
        return AtomBuildError(
            f"a container named {name!r} already exists\n  fix: docker rm -f {name}, or another --name"
        )
    if "could not select device driver" in text:
        return AtomBuildError("--gpus nvidia: Docker has no NVIDIA runtime here\n"
                              "  fix: install nvidia-container-toolkit, or --gpus none")  # fmt: skip
    return AtomBuildError(f"docker: {text}")


def start(client, kwargs: dict):
    """Create, then start: a start that fails leaves no `Created` container behind."""
    import docker.errors

    try:
        container = client.containers.create(**kwargs)
    except docker.errors.DockerException as e:
        raise explain_docker_error(e, kwargs["image"], _host_port(kwargs), kwargs.get("name")) from e
    try:
        container.start()
    except docker.errors.DockerException as e:
        container.remove(force=True)
        raise explain_docker_error(e, kwargs["image"], _host_port(kwargs), kwargs.get("name")) from e
    return container


def _host_port(kwargs: dict) -> int:
    return kwargs["ports"]["8000/tcp"][1]


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def wait_healthy(url: str, container, timeout_s: float = 300) -> None:
    """Until /health is 200; a container that exits or a model that failed to load ends it at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            raise AtomBuildError(
                "the container exited while starting; its log:\n" + container.logs().decode()[-3000:]
            )
        status, body = health(url)
        if status == 200:
            return
        if body.get("status") == "failed":
            raise AtomBuildError(f"the engine could not load the model: {body.get('error')}\n"
                                 "  fix: check the model folder (--model)")  # fmt: skip
        time.sleep(1)
    raise AtomBuildError(f"{url}/health did not answer 200 within {timeout_s:.0f} s\n"
                         f"  log tail:\n{container.logs().decode()[-2000:]}")  # fmt: skip


def serve_model(client, image: str, model: Path, port: int, gpus: str, name: str | None, timeout_s: float):
    """Checks, run, wait until healthy: (container, url). On any failure the container is removed."""
    check_model_dir(model)
    check_gpus(gpus)
    container = start(client, run_kwargs(image, model, port, gpus, name))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, container, timeout_s)
    except BaseException:
        container.remove(force=True)  # never leave an unhealthy container running
        raise
    return container, url
