"""`atom-build base bootstrap`: make a base image locally (debootstrap + docker import) without a registry."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import AtomBuildError

DEFAULT_PACKAGES = ("python3", "python3-venv", "ca-certificates")
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def host_mirror() -> str:
    """The Debian mirror this machine's apt already uses (never a hard-coded host)."""
    for path in SOURCES:
        if path.exists():
            for match in re.finditer(r"(?:URIs:|deb)\s+(\S+/debian)\b", path.read_text()):
                return match.group(1)
    raise AtomBuildError(
        "no Debian mirror found in /etc/apt/sources*\n  fix: pass --mirror http://.../debian"
    )


def bootstrap_command(rootfs: Path, suite: str, mirror: str, packages: tuple[str, ...]) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs), mirror]


def bootstrap(
    tag: str,
    suite: str = "bookworm",
    mirror: str | None = None,
    packages: tuple[str, ...] = DEFAULT_PACKAGES,
    docker: str = "docker",
) -> str:
    if not shutil.which("debootstrap"):
        raise AtomBuildError("debootstrap is not installed\n  fix: apt-get install -y debootstrap")
    _daemon_answers(docker)  # before a minute of debootstrap, not after
    mirror = mirror or host_mirror()
    with tempfile.TemporaryDirectory(prefix="atom-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(bootstrap_command(rootfs, suite, mirror, packages), check=True)
        # Keep the image lean: no apt lists or package cache in the base layer.
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for f in (rootfs / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            result = subprocess.run(
                [docker, "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True
            )
        finally:
            tar.stdout.close()  # if import died, tar gets SIGPIPE instead of blocking on a full pipe
            tar.wait()
        if result.returncode != 0:
            raise AtomBuildError(f"docker import failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _daemon_answers(docker: str) -> None:
    try:
        probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                               text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AtomBuildError(f"{docker} info failed ({e})\n  fix: check the docker client (--docker)") from e
    if probe.returncode != 0:
        raise AtomBuildError(
            f"the Docker daemon does not answer ({probe.stderr.strip()[-300:]})\n"
            "  fix: start dockerd (bash ci/start-dockerd.sh) or set DOCKER_HOST"
        )
