"""`atom-build serve`: run an image with the model mounted read-only and the right device flags."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from .errors import AtomBuildError

GPU_MODES = ("rocm", "nvidia", "none")


def run_kwargs(image: str, model: Path, port: int, gpus: str, name: str | None) -> dict:
    """docker SDK containers.run() arguments (pure: tested without Docker)."""
    if gpus not in GPU_MODES:
        raise AtomBuildError(f"--gpus {gpus!r} is not one of {GPU_MODES}")
    kwargs: dict = {
        "image": image,
        "command": ["--model", "/model"],
        "volumes": {str(model.resolve()): {"bind": "/model", "mode": "ro"}},
        "ports": {"8000/tcp": ("127.0.0.1", port)},
        "detach": True,
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


def wait_healthy(url: str, container, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AtomBuildError(
                "the container exited while starting; its log:\n" + container.logs().decode()[-3000:]
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AtomBuildError(f"{url}/health did not answer 200 within {timeout_s:.0f} s")
