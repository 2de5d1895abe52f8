"""Run docker (step 5): the CLI for BuildKit builds, the SDK for inspect / run / logs / cleanup.

The docker SDK cannot drive BuildKit (docker/docker-py#2230), so builds go through a docker client that
can: one with the buildx plugin, or a pre-23 client where DOCKER_BUILDKIT=1 selects BuildKit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DockerError

CANDIDATES = ("docker", "/usr/bin/docker", "/usr/local/bin/docker")


@dataclass(frozen=True)
class DockerClient:
    path: str
    version: str
    buildx: bool

    @property
    def buildkit_capable(self) -> bool:
        return self.buildx or _major(self.version) < 23


@dataclass(frozen=True)
class BuildRequest:
    dockerfile: Path
    context: Path
    target: str | None = None
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    ca_cert: Path | None = None
    output_dir: Path | None = None  # export the target's filesystem instead of making an image
    no_cache: bool = False  # a cold build: no BuildKit layer cache (cache mounts still apply)


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def probe_client(path: str) -> DockerClient | None:
    exe = shutil.which(path)
    if not exe:
        return None
    try:
        version = subprocess.run(
            [exe, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
        buildx = subprocess.run([exe, "buildx", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return DockerClient(exe, version or "0", buildx)


def find_client(override: str | None = None) -> DockerClient:
    """First BuildKit-capable client: $ATOM_DOCKER / --docker, then docker on PATH, then Debian's."""
    candidates = [override] if override else [os.environ.get("ATOM_DOCKER"), *CANDIDATES]
    seen = []
    for candidate in filter(None, candidates):
        client = probe_client(candidate)
        if client:
            seen.append(f"{client.path} {client.version} buildx={client.buildx}")
            if client.buildkit_capable:
                return client
    raise DockerError(
        "no docker client that can use BuildKit was found"
        + (f" (seen: {'; '.join(seen)})" if seen else "")
        + "\n  fix: install the buildx plugin, or Debian's docker.io (its 20.10 client builds with"
        " DOCKER_BUILDKIT=1); `atom-build doctor` explains what is missing"
    )


def build_command(client: DockerClient, req: BuildRequest) -> tuple[list[str], dict[str, str]]:
    """The exact argv and extra environment for one build (pure, printed by --dry-run)."""
    argv = [client.path, *(["buildx", "build", "--load"] if client.buildx and not req.output_dir else [])]
    if client.buildx and req.output_dir:
        argv += ["buildx", "build"]
    if not client.buildx:
        argv += ["build"]
    argv += ["--progress", "plain", "-f", str(req.dockerfile)]
    if req.target:
        argv += ["--target", req.target]
    for tag in req.tags:
        argv += ["--tag", tag]
    for name, value in req.build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    if req.ca_cert:
        argv += ["--secret", f"id=ca_cert,src={req.ca_cert}"]
    if req.output_dir:
        argv += ["--output", f"type=local,dest={req.output_dir}"]
    if req.no_cache:
        argv += ["--no-cache"]
    argv.append(str(req.context))
    env = {} if client.buildx else {"DOCKER_BUILDKIT": "1"}
    return argv, env


def run_build(argv: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> None:
    """Stream the build log line by line; raise with the log tail on failure."""
    tail: list[str] = []
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-40:]
        on_line(line)
    if proc.wait() != 0:
        raise DockerError(f"docker build failed (exit {proc.returncode}); last lines:\n" + "\n".join(tail))


def sdk():
    """A docker SDK client, or a clear error when no daemon answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as e:  # the SDK raises several types for "no daemon"
        raise DockerError(
            f"cannot reach the Docker daemon ({e.__class__.__name__}: {e})\n"
            "  fix: start dockerd (ci/start-dockerd.sh does it on Debian) or set DOCKER_HOST"
        ) from e
