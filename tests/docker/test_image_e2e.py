"""End to end with a real Docker engine: base image -> wheel bundle -> clean image -> serve -> OpenAI chat.

In CI (CI=true) this must run: a missing daemon is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest
from openai import OpenAI

from atom_build.docker_driver import find_client

from ..server.conftest import free_port
from .conftest import BASE, FIND_LINKS, HOST_CA, TAG, asks_paris, run_in, sh


def test_bundle_verify_catches_tampering(built, tmp_path):
    from atom_build.bundle import BundleError, verify

    copy = tmp_path / "copy"
    sh("cp", "-r", str(built), str(copy))
    wheel = next(copy.glob("atom_engine-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"x")
    (copy / "stray.whl").write_bytes(b"")
    with pytest.raises(BundleError, match=r"hash mismatch: atom_engine.*\n.*|extra: stray.whl"):
        verify(copy)


def test_image_is_clean(engine, built):
    assert_clean_image(engine, TAG, built, "cpu")


def assert_clean_image(engine, tag: str, bundle: Path, recipe: str) -> None:
    """Non-root, no compiler, consistent packages, no wheel or pip cache, the bundle's manifest inside."""
    code, uid = run_in(engine, "id", "-u", image=tag)
    assert code == 0 and uid.strip() != "0", "image must run as a non-root user"
    code, _ = run_in(engine, "sh", "-c", "command -v gcc || command -v cc", image=tag)
    assert code != 0, "a compiler is in the runtime image"
    code, out = run_in(engine, "pip", "check", image=tag)
    assert code == 0, out
    find = ("sh", "-c", "find / -xdev \\( -name '*.whl' -o -path '*/.cache/pip' \\) -print 2>/dev/null")
    ours = set(run_in(engine, *find, image=tag, user="root")[1].split())
    from_base = set(run_in(engine, *find, image=BASE, user="root")[1].split())  # Debian's ensurepip wheels
    assert ours - from_base == set(), f"wheels or pip cache left in the image: {ours - from_base}"
    code, out = run_in(engine, "cat", "/etc/atom/build.json", image=tag)
    assert json.loads(out) == json.loads((bundle / "manifest.json").read_text())
    labels = engine.images.get(tag).labels
    assert labels["ai.atom.recipe"] == recipe and "org.opencontainers.image.source" in labels


def secret_certs(engine) -> list[bytes]:
    """Certificates of the host bundle that the image's own CA store lacks: the proxy's (the secret)."""
    _, image_bundle = run_in(engine, "cat", "/etc/ssl/certs/ca-certificates.crt")
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", HOST_CA.read_bytes(), re.S
    )
    return [b for b in blocks if b.decode() not in image_bundle]


def test_ca_bundle_in_no_layer(engine, built, tmp_path):
    """Scan every file of every layer we added (not the base's) for the CA file and the proxy's certs."""
    import hashlib
    import io

    if not HOST_CA.exists():
        pytest.fail("the host CA bundle is missing; the secret-leak check needs it")
    saved = tmp_path / "image.tar"
    with saved.open("wb") as f:
        for chunk in engine.images.get(TAG).save(named=True):
            f.write(chunk)
    base_layers = set(engine.images.get(BASE).attrs["RootFS"]["Layers"])
    host_digest = hashlib.sha256(HOST_CA.read_bytes()).hexdigest()
    secrets = [b[40:400] for b in secret_certs(engine)]
    scanned = 0
    with tarfile.open(saved) as outer:
        for member in outer.getmembers():
            if not (member.isfile() and member.name.endswith("layer.tar")):
                continue
            data = outer.extractfile(member).read()
            if "sha256:" + hashlib.sha256(data).hexdigest() in base_layers:
                continue
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                for f in layer.getmembers():
                    if not f.isfile():
                        continue
                    content = layer.extractfile(f).read()
                    scanned += 1
                    assert hashlib.sha256(content).hexdigest() != host_digest, f"CA bundle at {f.name}"
                    for needle in secrets:
                        assert needle not in content, f"proxy CA certificate bytes in {f.name}"
    assert scanned > 1000, "too few files scanned: did the image save work?"
    print(f"scanned {scanned} files in our layers for {len(secrets)} proxy certificates + the bundle")


def test_serve_answers_chat_over_http(engine, built, smollm2):
    port = free_port()
    name = f"atom-e2e-{port}"
    try:
        out = sh(
            "atom-build",
            "serve",
            "--image",
            TAG,
            "--model",
            str(smollm2),
            "--port",
            str(port),
            "--name",
            name,
            "--timeout",
            "240",
        )
        url = out.stdout.strip().splitlines()[-1]
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == [smollm2.name]  # as `atom serve` on the host says
        asks_paris(client)
        stream = client.chat.completions.create(
            model="smollm2-135m",
            temperature=0,
            max_tokens=24,
            stream=True,
            messages=[{"role": "user", "content": "What is the capital of Germany?"}],
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.strip()
    finally:
        try:
            engine.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass


def test_report_image_overhead(engine, built):
    """overhead = (image - base - installed site-packages) / image; printed for docs/performance.md."""
    image = engine.images.get(TAG).attrs["Size"]
    base = engine.images.get(BASE).attrs["Size"]
    _, out = run_in(engine, "sh", "-c", "du -sb /opt/atom/lib/python3*/site-packages | cut -f1")
    site = int(out.strip())
    overhead = (image - base - site) / image
    print(
        json.dumps(
            {
                "image_bytes": image,
                "base_bytes": base,
                "site_packages_bytes": site,
                "overhead": round(overhead, 4),
            }
        )
    )
    assert abs(overhead) < 0.02  # target: under 2 % (du counts apparent bytes, so it can dip below 0)


def ours(engine, name: str) -> list:
    return [c for c in engine.containers.list(all=True) if c.name == name]


def serve_fails(*args: str, name: str) -> str:
    result = subprocess.run(["atom-build", "serve", "--name", name, "--timeout", "120", *args],
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_serve_failures_end_fast_with_a_reason_and_leave_no_container(engine, built, smollm2, tmp_path):
    import socket
    import time

    port = free_port()
    name = f"atom-e2e-fail-{port}"
    missing = tmp_path / "no-such-model"
    assert "no such folder" in serve_fails("--image", TAG, "--model", str(missing), name=name)
    assert not missing.exists(), "a missing model folder must not be created"
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((smollm2 / "config.json").read_text())
    assert "has no tokenizer.json" in serve_fails("--image", TAG, "--model", str(half), name=name)
    assert "does not exist here" in serve_fails(
        "--image", "atom-e2e:never-built", "--model", str(smollm2), name=name
    )
    assert "no /dev/kfd" in serve_fails("--image", TAG, "--model", str(smollm2), "--gpus", "rocm", name=name)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        message = serve_fails("--image", TAG, "--model", str(smollm2), "--port", str(port), name=name)
        assert f"port {port} is already in use" in message
    assert ours(engine, name) == [], "a container was left behind"
    blocker = engine.containers.create(TAG, name=name, entrypoint=["true"])
    try:
        assert "already exists" in serve_fails("--image", TAG, "--model", str(smollm2), name=name)
    finally:
        blocker.remove(force=True)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / f).write_bytes((smollm2 / f).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    start = time.monotonic()
    message = serve_fails("--image", TAG, "--model", str(broken), "--port", str(free_port()), name=name)
    assert "could not load the model" in message or "exited while starting" in message, message
    assert time.monotonic() - start < 120
    assert ours(engine, name) == [], "the unhealthy container was left behind"


def test_an_engine_edit_reaches_the_next_image(engine, built, tmp_path):
    """The cached bundle records its inputs: an engine change makes `atom-build image` rebuild it."""
    import uuid

    marker = Path(__file__).resolve().parents[2] / "engine" / "atom" / "_stale_check.py"
    token = uuid.uuid4().hex
    env = {**os.environ, "ATOM_BUILD_CACHE": str(tmp_path / "cache")}
    tag = "atom-e2e:stale-check"
    image = ["atom-build", "image", "--recipe", "cpu", "--find-links", FIND_LINKS, "--tag", tag]
    image += ["--ca-cert", str(HOST_CA)] if HOST_CA.exists() else []
    try:
        sh(*image, env=env)
        marker.write_text(f"TOKEN = {token!r}\n")
        rebuilt = sh(*image, env=env)
        assert "is stale, rebuilding" in rebuilt.stderr and "component.engine" in rebuilt.stderr
        code, out = run_in(engine, "python", "-c", "import atom._stale_check as m; print(m.TOKEN)", image=tag)
        assert code == 0 and out.strip() == token, out
        unchanged = sh(*image, env=env)
        assert "is stale, rebuilding" not in unchanged.stderr
    finally:
        marker.unlink(missing_ok=True)
        try:
            engine.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_the_image_carries_a_valid_cyclonedx_sbom(engine, built):
    from atom_build.sbom import validate

    code, out = run_in(engine, "cat", "/etc/atom/sbom.cdx.json")
    assert code == 0, out
    document = json.loads(out)
    assert validate(document) == []
    assert json.loads((built / "sbom.cdx.json").read_text()) == document  # the bundle keeps the same file
    versions = {(c["name"], c["version"]) for c in document["components"]}
    manifest = json.loads((built / "manifest.json").read_text())
    for wheel in manifest["wheels"]:
        assert (wheel["name"], wheel["version"]) in versions, wheel["name"]
    assert any(n == "torch" for n, _ in versions) and any(n == "atom-engine" for n, _ in versions)
    origins = {
        p["value"]
        for c in document["components"]
        for p in c.get("properties", [])
        if p["name"] == "atom:origin"
    }
    assert {"OS package (dpkg)", "venv seed"} <= origins
    assert any(
        c["name"] == "python3" and c["purl"].startswith("pkg:deb/debian/") for c in document["components"]
    )


def test_a_cold_rebuild_gives_bit_identical_wheels_for_what_we_build(built, tmp_path):
    """--no-cache: every stage runs again; the engine wheel (built from source here) must not change."""
    again = tmp_path / "again"
    ca = ["--ca-cert", str(HOST_CA)] if HOST_CA.exists() else []
    sh(
        "atom-build",
        "wheels",
        "--recipe",
        "cpu",
        "--find-links",
        FIND_LINKS,
        *ca,
        "--no-cache",
        "--out",
        str(again),
    )
    first = {w["name"]: w for w in json.loads((built / "manifest.json").read_text())["wheels"]}
    second = {w["name"]: w for w in json.loads((again / "manifest.json").read_text())["wheels"]}
    built_here = [n for n, w in first.items() if w["component"] == "engine"]
    assert built_here == ["atom-engine"]
    for name in built_here:
        assert first[name]["sha256"] == second[name]["sha256"], sh(
            "atom-build", "bundle", "diff", str(built), str(again)
        ).stdout
    assert first["torch"]["sha256"] == second["torch"]["sha256"]  # pinned by hash
    diff = subprocess.run(
        ["atom-build", "bundle", "diff", str(built), str(again)], capture_output=True, text=True
    )
    print(diff.stdout or "bundles identical")  # dependencies resolved from an index may move between builds


def test_base_bootstrap_without_a_daemon_fails_fast(engine, tmp_path):
    """It used to run debootstrap for a minute, then hang on the pipe into `docker import`."""
    import time

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    start = time.monotonic()
    result = subprocess.run(
        ["atom-build", "base", "bootstrap", "--tag", "atom-e2e:never", "--docker", find_client().path],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "does not answer" in result.stderr, result.stderr
    assert "start dockerd" in result.stderr and time.monotonic() - start < 30
