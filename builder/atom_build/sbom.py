"""A CycloneDX SBOM of a clean image: its Python environment and its OS packages.

The Python part is made by CycloneDX's own generator (`cyclonedx-py requirements`) from the bundle's
hashed lock, which is exactly what the clean image installs; what the venv seeds itself (pip) and the
OS packages are read from the built image (`pip list`, `dpkg-query`). Each wheel a recipe component
built carries its pin as a property. The document is validated against the CycloneDX 1.6 schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from .bundle import load_manifest
from .errors import AtomBuildError
from .plan import canonical_name

FILE = "sbom.cdx.json"
IN_IMAGE = "/etc/atom/sbom.cdx.json"
SPEC = "1.6"
DPKG_FORMAT = r"${Package}\t${Version}\t${Architecture}\n"  # dpkg-query expands the escapes


class SbomError(AtomBuildError):
    pass


def python_part(lock: Path) -> dict:
    """cyclonedx-py over the lock: one component per wheel, with its sha256."""
    with tempfile.TemporaryDirectory(prefix="atom-sbom-") as tmp:
        out = Path(tmp) / "python.cdx.json"
        result = subprocess.run(
            [sys.executable, "-m", "cyclonedx_py", "requirements", str(lock), "--of", "JSON", "--sv", SPEC,
             "--output-reproducible", "-o", str(out)],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise SbomError(f"cyclonedx-py failed: {result.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def run_in_image(client, image: str, *command: str) -> str:
    """stdout of a command in a throwaway container of the image (as root: dpkg's database is root's)."""
    output = client.containers.run(image, entrypoint=list(command[:1]), command=list(command[1:]), user="root",
                                   remove=True, stdout=True, stderr=False)  # fmt: skip
    return output.decode()


def os_packages(client, image: str) -> list[tuple[str, str, str]]:
    text = run_in_image(client, image, "dpkg-query", "-W", "-f", DPKG_FORMAT)
    return [tuple(line.split("\t")) for line in text.splitlines() if line.count("\t") == 2]  # type: ignore[misc]


def venv_packages(client, image: str, venv: str) -> dict[str, str]:
    text = run_in_image(client, image, f"{venv}/bin/python", "-m", "pip", "list", "--format", "json")
    return {canonical_name(p["name"]): p["version"] for p in json.loads(text)}


def assemble(python: dict, manifest: dict, os_pkgs: list[tuple[str, str, str]], venv: dict[str, str],
             image: str, distro: str) -> dict:  # fmt: skip
    """The generator's Python SBOM, plus provenance properties, venv-seeded packages and OS packages."""
    doc = json.loads(json.dumps(python))
    by_name = {canonical_name(w["name"]): w for w in manifest["wheels"]}
    for component in doc.get("components", []):
        wheel = by_name.get(canonical_name(component["name"]))
        if wheel:
            component["properties"] = [
                {"name": "atom:wheel", "value": wheel["file"]},
                {"name": "atom:source", "value": wheel["source"]},
            ]
    locked = set(by_name)
    for name, version in sorted(venv.items()):
        if name not in locked:  # seeded by `python -m venv` (pip), not from the bundle
            doc["components"].append(
                _library(name, version, f"pkg:pypi/{name}@{quote(version)}", "venv seed")
            )
    for name, version, arch in sorted(os_pkgs):
        purl = f"pkg:deb/{distro}/{name}@{quote(version)}?arch={arch}"
        doc["components"].append(_library(name, version, purl, "OS package (dpkg)"))
    doc.setdefault("metadata", {})["component"] = {
        "type": "container",
        "name": image.rsplit(":", 1)[0],
        "version": image.rsplit(":", 1)[1] if ":" in image else "latest",
        "bom-ref": "image",
    }
    return doc


def _library(name: str, version: str, purl: str, origin: str) -> dict:
    return {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
        "properties": [{"name": "atom:origin", "value": origin}],
    }


def validate(doc: dict) -> list[str]:
    """Problems against the CycloneDX 1.6 JSON schema (the schema ships with cyclonedx-python-lib)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    return [str(error)] if error else []


def distro_of(client, image: str) -> str:
    text = run_in_image(client, image, "cat", "/etc/os-release")
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("ID", "debian").strip('"')


def make(client, image: str, bundle: Path, venv: str) -> dict:
    """The SBOM of a built clean image whose Python environment came from `bundle`."""
    manifest = load_manifest(bundle)
    doc = assemble(
        python_part(bundle / "requirements.lock"),
        manifest,
        os_packages(client, image),
        venv_packages(client, image, venv),
        image,
        distro_of(client, image),
    )
    problems = validate(doc)
    if problems:
        raise SbomError("the SBOM does not validate against CycloneDX 1.6:\n  " + "\n  ".join(problems))
    return doc
