"""An in-toto statement with a SLSA provenance v1 predicate for a wheel bundle.

Subjects: every wheel with its sha256. Resolved dependencies: every pin of the recipe (git commits,
wheel hashes, local source trees) and the base image's digest. It is written beside the manifest,
checked by `atom-build bundle verify`, and left unsigned: sign it with your own signer (docs/security.md).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from . import __version__
from .plan import BuildPlan

FILE = "provenance.intoto.json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/atom-build/atom-build/wheel-bundle/v1"


def statement(plan: BuildPlan, manifest: dict, inputs: dict[str, str], base_digest: str | None,
              started: datetime, finished: datetime) -> dict:  # fmt: skip
    return {
        "_type": STATEMENT,
        "subject": [{"name": w["file"], "digest": {"sha256": w["sha256"]}} for w in manifest["wheels"]],
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": plan.recipe.name,
                    "recipe_sha256": plan.recipe_hash,
                    "archs": list(plan.archs),
                    "enable_ck": plan.enable_ck,
                },
                "resolvedDependencies": dependencies(plan, inputs, base_digest),
            },
            "runDetails": {
                "builder": {"id": f"https://github.com/atom-build/atom-build@{__version__}"},
                "metadata": {
                    "invocationId": str(uuid.uuid4()),
                    "startedOn": started.astimezone(UTC).isoformat(timespec="seconds"),
                    "finishedOn": finished.astimezone(UTC).isoformat(timespec="seconds"),
                },
            },
        },
    }


def dependencies(plan: BuildPlan, inputs: dict[str, str], base_digest: str | None) -> list[dict]:
    deps = []
    for c in plan.components:
        if c.kind == "git":
            deps.append({"name": c.key, "uri": f"git+{c.repo}@{c.commit}", "digest": {"gitCommit": c.commit}})
        elif c.kind == "pypi":
            digest = {"sha256": c.sha256} if c.sha256 else {}
            deps.append(
                {
                    "name": c.key,
                    "uri": f"pkg:pypi/{c.dist_name}@{c.requirement.split('==')[1]}",
                    "digest": digest,
                }
            )
        else:
            tree = inputs[f"component.{c.key}"].rsplit("tree:", 1)[-1]
            deps.append({"name": c.key, "uri": f"local:{c.path}", "digest": {"sha256": tree}})
    base = {"name": "base-image", "uri": f"docker://{plan.base_ref}"}
    if base_digest:
        base["digest"] = {"sha256": base_digest.removeprefix("sha256:")}
    return [*deps, base]


def write(directory: Path, data: dict) -> None:
    (directory / FILE).write_text(json.dumps(data, indent=2) + "\n")


def check(directory: Path, manifest: dict) -> list[str]:
    """Problems with the bundle's provenance, if it has one: it must name exactly the manifest's wheels
    and every component the manifest records."""
    path = directory / FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        subjects = {(s["name"], s["digest"]["sha256"]) for s in data["subject"]}
        deps = {d["name"] for d in data["predicate"]["buildDefinition"]["resolvedDependencies"]}
    except (ValueError, KeyError, TypeError) as e:
        return [f"{FILE} is not a provenance statement ({e.__class__.__name__}: {e})"]
    problems = []
    if data.get("_type") != STATEMENT or data.get("predicateType") != PREDICATE:
        problems.append(f"{FILE}: not an in-toto v1 statement with a SLSA v1 predicate")
    wheels = {(w["file"], w["sha256"]) for w in manifest["wheels"]}
    problems += [
        f"{FILE}: subject {n} sha256 {h[:12]} is not in manifest.json" for n, h in sorted(subjects - wheels)
    ]
    problems += [f"{FILE}: lacks subject {n} (manifest.json lists it)" for n, h in sorted(wheels - subjects)]
    problems += [
        f"{FILE}: lacks the pin of component {k}" for k in sorted(set(manifest["components"]) - deps)
    ]
    return problems
