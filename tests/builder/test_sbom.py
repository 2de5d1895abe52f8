"""The SBOM without Docker: CycloneDX's generator over a real bundle's lock, merged with OS and venv
packages, validates against the CycloneDX 1.6 schema (the Docker tier checks the one in the image)."""

from __future__ import annotations

import json

from atom_build.sbom import assemble, python_part, validate

from .test_bundle_staging import make_bundle


def test_sbom_from_a_bundle_validates_and_names_every_wheel(tmp_path):
    bundle = make_bundle(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    document = assemble(
        python_part(bundle / "requirements.lock"),
        manifest,
        [("python3", "3.11.2-1+b1", "amd64"), ("libc6", "2.36-9+deb12u9", "amd64")],
        {"pip": "23.0.1", "torch": "2.13.0+cpu"},
        "atom:cpu",
        "debian",
    )
    assert validate(document) == []
    names = {c["name"]: c for c in document["components"]}
    for wheel in manifest["wheels"]:
        assert names[wheel["name"]]["version"] == wheel["version"]
    torch = {p["name"]: p["value"] for p in names["torch"]["properties"]}
    assert torch["atom:source"] == "pypi:torch==2.13.0+cpu"
    assert names["pip"]["properties"] == [{"name": "atom:origin", "value": "venv seed"}]
    assert names["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64"
    assert document["metadata"]["component"]["type"] == "container"

    document["components"][0]["type"] = "not-a-type"
    assert validate(document), "a broken SBOM must not validate"
