"""Resolve every pin of a recipe against its source, in seconds, before an hour-long build.

git commits: fetched shallowly by SHA from the repository the recipe names, into a scratch repository.
wheels: the index's simple API (PEP 691 JSON, or PEP 503 HTML with #sha256= fragments) lists each file's
hash; a local wheelhouse (--find-links) is hashed on disk. Images: the registry's manifest digest.
A source that cannot be reached is reported as such, never as "ok".
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path

from .bundle import sha256_file
from .plan import canonical_name
from .recipe import Recipe

PYPI = "https://pypi.org/simple"
TIMEOUT_S = 30.0
UNREACHABLE_GIT = (
    "could not resolve host",
    "unable to access",
    "connection refused",
    "connection timed out",
    "network is unreachable",
    "could not read from remote repository",
    "does not appear to be a git repository",
    "failed to connect",
)


class Status(StrEnum):
    OK = "ok"  # resolved, and every hash the recipe pins matches
    UNHASHED = "unhashed"  # resolved, but the recipe pins no hash to compare (a warning)
    LOCAL = "local"  # built from this repository or made on this machine: nothing to resolve
    MISSING = "missing"  # the source answered: no such commit / version / tag
    MISMATCH = "mismatch"  # found, but the hash differs from the pin
    UNREACHABLE = "unreachable"  # the source could not be asked


FAILED = (Status.MISSING, Status.MISMATCH)


@dataclass(frozen=True)
class Pin:
    component: str  # component key, or "base" / "runtime" for images
    kind: str  # git | wheel | image | local
    source: str  # repository URL, index URL, image name
    ref: str  # commit, version, tag
    name: str = ""  # distribution name (wheels)
    sha256: str | None = None  # wheel hash or image digest (sha256:...)


@dataclass(frozen=True)
class PinResult:
    pin: Pin
    status: Status
    detail: str


def pins_of(recipe: Recipe, index_url: str | None = None) -> list[Pin]:
    """Every pin of a recipe. index_url (--index-url) replaces each component's own index, as in a build."""
    pins = [_image_pin("base", recipe, recipe.base.tag, recipe.base.digest)]
    if recipe.base.runtime_tag:
        pins.append(_image_pin("runtime", recipe, recipe.base.runtime_tag, recipe.base.runtime_digest))
    for c in recipe.components:
        if c.kind == "git":
            pins.append(Pin(c.key, "git", c.repo or "", c.commit or ""))
        elif c.kind == "pypi":
            index = index_url or c.index_url or PYPI
            pins.append(Pin(c.key, "wheel", index, c.version or "", c.name or c.key, c.sha256))
        else:
            pins.append(Pin(c.key, "local", c.path or "", "working tree"))
    return pins


def _image_pin(role: str, recipe: Recipe, tag: str, digest: str | None) -> Pin:
    kind = "local" if recipe.base.bootstrap else "image"
    return Pin(role, kind, recipe.base.image, tag, sha256=digest)


def check(pins: list[Pin], find_links: Path | None = None, timeout: float = TIMEOUT_S) -> list[PinResult]:
    checkers: dict[str, Callable[[Pin], PinResult]] = {
        "git": lambda p: check_git(p, timeout),
        "wheel": lambda p: check_wheel(p, find_links, timeout),
        "image": lambda p: check_image(p, timeout),
        "local": lambda p: PinResult(p, Status.LOCAL, _local_detail(p)),
    }
    return [checkers[p.kind](p) for p in pins]


def _local_detail(pin: Pin) -> str:
    if pin.component in ("base", "runtime"):
        return "made on this machine (atom-build base bootstrap)"
    return f"built from ./{pin.source}"


# ---- git ------------------------------------------------------------------------------------------
def check_git(pin: Pin, timeout: float = TIMEOUT_S) -> PinResult:
    with tempfile.TemporaryDirectory(prefix="atom-pin-") as scratch:
        git = ["git", "-C", scratch, "-c", "protocol.file.allow=always"]
        subprocess.run(["git", "init", "-q", "--bare", scratch], check=True, capture_output=True)
        try:
            fetched = subprocess.run(
                [*git, "fetch", "-q", "--depth", "1", "--filter=blob:none", pin.source, pin.ref],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
            )
        except subprocess.TimeoutExpired:
            return PinResult(pin, Status.UNREACHABLE, f"git fetch took over {timeout:.0f} s")
        if fetched.returncode == 0:
            kind = subprocess.run(
                [*git, "cat-file", "-t", pin.ref], capture_output=True, text=True
            ).stdout.strip()
            if kind == "commit":
                return PinResult(pin, Status.OK, "commit fetched by SHA")
            return PinResult(pin, Status.MISSING, f"{pin.ref} is a {kind or 'missing object'}, not a commit")
        error = (fetched.stderr.strip().splitlines() or ["git fetch failed"])[-1]
        if any(marker in error.lower() for marker in UNREACHABLE_GIT):
            return PinResult(pin, Status.UNREACHABLE, error)
        return PinResult(pin, Status.MISSING, f"the repository has no commit {pin.ref[:12]} ({error})")


# ---- wheels ---------------------------------------------------------------------------------------
def file_version(filename: str, name: str) -> str | None:
    """The version in a wheel or sdist file name of distribution `name`, else None."""
    stem = re.sub(r"(\.tar\.gz|\.zip|\.whl)$", "", filename)
    parts = stem.split("-")
    if len(parts) < 2 or canonical_name(parts[0]) != canonical_name(name):
        return None
    return parts[1]


def check_wheel(pin: Pin, find_links: Path | None = None, timeout: float = TIMEOUT_S) -> PinResult:
    local = _local_files(pin, find_links)
    if local:
        return _compare(pin, local, f"in {find_links}")
    try:
        files = index_files(pin.source, pin.name, timeout)
    except IndexUnreachable as e:
        return PinResult(pin, Status.UNREACHABLE, str(e))
    if files is None:
        return PinResult(pin, Status.MISSING, f"{pin.source} has no project {pin.name!r}")
    matching = {f: h for f, h in files.items() if file_version(f, pin.name) == pin.ref}
    if not matching:
        return PinResult(pin, Status.MISSING, f"{pin.source} has no {pin.name} {pin.ref}")
    return _compare(pin, matching, f"on {pin.source}")


def _local_files(pin: Pin, find_links: Path | None) -> dict[str, str]:
    if not find_links or not find_links.is_dir():
        return {}
    return {
        f.name: sha256_file(f)
        for f in sorted(find_links.iterdir())
        if f.is_file() and file_version(f.name, pin.name) == pin.ref
    }


def _compare(pin: Pin, files: dict[str, str], where: str) -> PinResult:
    if pin.sha256 is None:
        return PinResult(pin, Status.UNHASHED, f"{len(files)} files {where}; the recipe pins no sha256")
    hit = next((f for f, h in files.items() if h == pin.sha256), None)
    if hit:
        return PinResult(pin, Status.OK, f"{hit} {where}, sha256 matches")
    return PinResult(
        pin, Status.MISMATCH, f"no file of {pin.name} {pin.ref} {where} has sha256 {pin.sha256[:16]}..."
    )


class IndexUnreachable(Exception):
    pass


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        href = dict(attrs).get("href") or ""
        m = re.search(r"([^/#?]+)(?:\?[^#]*)?#sha256=([0-9a-f]{64})$", href)
        if tag == "a" and m:
            self.files[urllib.parse.unquote(m[1])] = m[2]


def index_files(index: str, name: str, timeout: float = TIMEOUT_S) -> dict[str, str] | None:
    """file name -> sha256 from a simple index page (JSON or HTML); None if the project does not exist."""
    url = f"{index.rstrip('/')}/{canonical_name(name)}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "atom-build pins check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body, kind = response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise IndexUnreachable(f"{url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        raise IndexUnreachable(f"{url}: {getattr(e, 'reason', e)}") from e
    if "json" in kind:
        data = json.loads(body)
        return {f["filename"]: f.get("hashes", {}).get("sha256", "") for f in data.get("files", [])}
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    return parser.files


# ---- images ---------------------------------------------------------------------------------------
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def registry_of(image: str) -> tuple[str, str]:
    """(registry host, repository) for an image name, Docker Hub's rules included."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "registry-1.docker.io", image if "/" in image else f"library/{image}"


def check_image(pin: Pin, timeout: float = TIMEOUT_S) -> PinResult:
    host, repo = registry_of(pin.source)
    url = f"https://{host}/v2/{repo}/manifests/{pin.ref}"
    try:
        digest = _manifest_digest(url, host, repo, timeout)
    except IndexUnreachable as e:
        return PinResult(pin, Status.UNREACHABLE, str(e))
    if digest is None:
        return PinResult(pin, Status.MISSING, f"{host} has no {repo}:{pin.ref}")
    if pin.sha256 is None:
        return PinResult(pin, Status.UNHASHED, f"tag resolves to {digest}; the recipe pins no digest")
    if digest == pin.sha256:
        return PinResult(pin, Status.OK, f"{pin.ref} -> {digest}")
    return PinResult(
        pin, Status.MISMATCH, f"{pin.ref} now resolves to {digest}, the recipe pins {pin.sha256}"
    )


def _manifest_digest(url: str, host: str, repo: str, timeout: float) -> str | None:
    headers = {"Accept": MANIFEST_TYPES}
    for attempt in range(2):
        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            challenge = e.headers.get("WWW-Authenticate", "")
            if e.code == 401 and attempt == 0 and challenge.startswith("Bearer"):
                headers["Authorization"] = f"Bearer {_anonymous_token(challenge, repo, timeout)}"
                continue
            raise IndexUnreachable(f"{url}: HTTP {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise IndexUnreachable(f"{host}: {getattr(e, 'reason', e)}") from e
    raise IndexUnreachable(f"{url}: the registry refused an anonymous token")


def _anonymous_token(challenge: str, repo: str, timeout: float) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    query = urllib.parse.urlencode({"service": fields.get("service", ""), "scope": f"repository:{repo}:pull"})
    try:
        with urllib.request.urlopen(f"{fields['realm']}?{query}", timeout=timeout) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        raise IndexUnreachable(f"token service: {e}") from e
    return data.get("token") or data.get("access_token", "")


def exit_code(results: list[PinResult], allow_unreachable: bool = False) -> int:
    if any(r.status in FAILED for r in results):
        return 1
    if not allow_unreachable and any(r.status is Status.UNREACHABLE for r in results):
        return 1
    return 0


def table_rows(results: list[PinResult]) -> list[tuple[str, str, str, str]]:
    """(component, pin, status, detail) per result, for the CLI's table and its --json."""
    return [(r.pin.component, f"{r.pin.source} @ {r.pin.ref}", r.status.value, r.detail) for r in results]


def summary(results: list[PinResult]) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())
