"""The image with Ray (recipes/cpu-ray.toml), built for real: it passes the same clean-image checks as the
plain one, and inside it `atom serve --distributed-executor-backend ray -dp 2` starts a local Ray cluster,
runs both replicas as actors and answers the official openai client."""

from __future__ import annotations

import time

import docker
import httpx
import pytest
from openai import OpenAI

from ..server.conftest import free_port
from .conftest import asks_paris, build_image, run_in
from .test_image_e2e import assert_clean_image

TAG = "atom-e2e:cpu-ray"


@pytest.fixture(scope="module")
def built_ray(engine, built, tmp_path_factory):
    """After the plain image (`built`): the base exists, and the torch and engine stages are cached."""
    return build_image("cpu-ray", TAG, tmp_path_factory.mktemp("bundle-ray"))


def test_the_ray_image_is_clean(engine, built_ray):
    assert_clean_image(engine, TAG, built_ray, "cpu-ray")
    code, out = run_in(engine, "python", "-c", "import ray; print(ray.__version__)", image=TAG)
    assert code == 0 and out.strip() == "2.60.0", out  # the recipe's pin, nothing else


def test_ray_replicas_serve_inside_the_image(engine, built_ray, smollm2):
    port = free_port()
    container = engine.containers.run(
        TAG,
        command=[
            "--model",
            "/model",
            "--max-model-len",
            "512",
            "-dp",
            "2",
            "--distributed-executor-backend",
            "ray",
        ],
        volumes={str(smollm2): {"bind": "/model", "mode": "ro"}},
        ports={"8000/tcp": ("127.0.0.1", port)},
        shm_size="256m",
        detach=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(1)
        assert health.json() == {"status": "ok", "replicas": 2, "down": {}}
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        asks_paris(client)
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
