"""The Docker tier's shared pieces: the engine, the plain cpu image built once per session, helpers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker
import pytest

from atom_build.docker_driver import find_client

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
FIND_LINKS = os.environ.get("ATOM_FIND_LINKS", "/opt/wheels")
BASE = "atom-base:bookworm"
TAG = "atom-e2e:cpu"


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def engine():
    try:
        client = docker.from_env()
        client.ping()
        find_client()
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Docker tier, but: {e}")
        pytest.skip(f"no Docker engine with BuildKit here ({e}); run ci/start-dockerd.sh")
    return client


@pytest.fixture(scope="session")
def built(engine, tmp_path_factory):
    images = {t for i in engine.images.list() for t in i.tags}
    if BASE not in images:
        sh("atom-build", "base", "bootstrap", "--tag", BASE, "--docker", find_client().path)
    bundle = tmp_path_factory.mktemp("bundle")
    ca = ["--ca-cert", str(HOST_CA)] if HOST_CA.exists() else []
    sh("atom-build", "wheels", "--recipe", "cpu", "--find-links", FIND_LINKS, *ca, "--out", str(bundle))
    sh("atom-build", "bundle", "verify", str(bundle))
    sh("atom-build", "image", "--recipe", "cpu", "--bundle", str(bundle), "--tag", TAG)
    return bundle


def run_in(engine, *cmd: str, image: str = TAG, user: str | None = None) -> tuple[int, str]:
    container = engine.containers.run(
        image, entrypoint=list(cmd[:1]), command=list(cmd[1:]), detach=True, user=user
    )
    code = container.wait()["StatusCode"]
    out = container.logs().decode()
    container.remove()
    return code, out
