"""`atom-build doctor`: what this machine can build and run, and what to do about what is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .docker_driver import CANDIDATES, probe_client

MIN_FREE_GB = 20


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks() -> list[Check]:
    checks = [_daemon(), _buildkit(), _disk()]
    checks += _gpus()
    return checks


def _daemon() -> Check:
    try:
        import docker

        info = docker.from_env().info()
        return Check(
            "docker daemon", True, f"server {info.get('ServerVersion')}, storage {info.get('Driver')}"
        )
    except Exception as e:
        return Check(
            "docker daemon",
            False,
            f"not reachable ({e.__class__.__name__})",
            "start dockerd (ci/start-dockerd.sh installs and starts Debian's docker.io) or set DOCKER_HOST",
        )


def _buildkit() -> Check:
    clients = [c for c in (probe_client(p) for p in CANDIDATES) if c]
    seen = ", ".join(f"{c.path} {c.version}{' +buildx' if c.buildx else ''}" for c in clients) or "none"
    usable = [c for c in clients if c.buildkit_capable]
    if usable:
        how = "buildx" if usable[0].buildx else "DOCKER_BUILDKIT=1 (client < 23)"
        return Check("buildkit", True, f"{usable[0].path} via {how}; clients: {seen}")
    return Check(
        "buildkit",
        False,
        f"no BuildKit-capable client; clients: {seen}",
        "install the docker-buildx plugin, or Debian's docker.io (20.10 client)",
    )


def _disk() -> Check:
    path = Path(os.environ.get("ATOM_BUILD_CACHE", Path.home()))
    path = path if path.exists() else Path.home()
    free_gb = shutil.disk_usage(path).free / 2**30
    ok = free_gb >= MIN_FREE_GB
    return Check(
        "disk",
        ok,
        f"{free_gb:.0f} GiB free at {path}",
        "" if ok else f"free at least {MIN_FREE_GB} GiB (docker builder prune / image prune)",
    )


def _gpus() -> list[Check]:
    kfd, dri = Path("/dev/kfd").exists(), Path("/dev/dri").exists()
    nvidia = shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()
    return [
        Check(
            "rocm devices",
            kfd and dri,
            f"/dev/kfd {'present' if kfd else 'absent'}, /dev/dri {'present' if dri else 'absent'}",
            "" if kfd else "no AMD GPU: use --gpus none or nvidia",
        ),
        Check(
            "nvidia devices",
            nvidia,
            "nvidia-smi / /dev/nvidia0 " + ("found" if nvidia else "absent"),
            "" if nvidia else "no NVIDIA GPU: use --gpus none or rocm",
        ),
    ]


def as_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
