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
    return build_image("cpu", TAG, tmp_path_factory.mktemp("bundle"))


def build_image(recipe: str, tag: str, bundle: Path) -> Path:
    """The recipe's wheel bundle (verified) and its clean image, as a user makes them."""
    ca = ["--ca-cert", str(HOST_CA)] if HOST_CA.exists() else []
    sh("atom-build", "wheels", "--recipe", recipe, "--find-links", FIND_LINKS, *ca, "--out", str(bundle))
    sh("atom-build", "bundle", "verify", str(bundle))
    sh("atom-build", "image", "--recipe", recipe, "--bundle", str(bundle), "--tag", tag)
    return bundle


def asks_paris(client) -> None:
    """The demo model, greedy, knows the capital of France."""
    answer = client.chat.completions.create(
        model="smollm2-135m",
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in answer.choices[0].message.content


def run_in(engine, *cmd: str, image: str = TAG, user: str | None = None) -> tuple[int, str]:
    container = engine.containers.run(
        image, entrypoint=list(cmd[:1]), command=list(cmd[1:]), detach=True, user=user
    )
    code = container.wait()["StatusCode"]
    out = container.logs().decode()
    container.remove()
    return code, out
