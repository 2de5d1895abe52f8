"""Build orchestration (step 5): pin check, wheel bundle, clean or full image, provenance and SBOM.

The CLI parses options into BuildOptions and prints; everything here raises AtomBuildError with a
reason and a next step, and reports progress through a Reporter.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from . import bundle, inputs, pins, provenance, render, sbom
from .context import CACHE_DIR, stage_context
from .docker_driver import BuildRequest, DockerClient, build_command, find_client, run_build, sdk
from .errors import AtomBuildError
from .plan import BuildPlan
from .validate import warnings

DOCKERFILE_OF = {"wheels": "Dockerfile.wheels", "clean": "Dockerfile.clean", "full": "Dockerfile"}


class Reporter(Protocol):
    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def log(self, line: str) -> None: ...  # a docker build log line
    def pins(self, results: list[pins.PinResult]) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    find_links: Path | None = None
    index_url: str | None = None
    ca_cert: Path | None = None
    docker: str | None = None
    dry_run: bool = False
    skip_pin_check: bool = False
    no_cache: bool = False


class PinCheckFailed(AtomBuildError):
    pass


def default_bundle_dir(plan: BuildPlan) -> Path:
    return (
        CACHE_DIR / "bundles" / f"{plan.recipe.name}-{'-'.join(plan.archs) or 'cpu'}-ck{plan.enable_ck_int}"
    )


def default_tag(plan: BuildPlan, full: bool) -> str:
    overridden = plan.enable_ck != plan.recipe.enable_ck
    return f"atom:{plan.recipe.name}{'-full' if full else ''}{'-nock' if overridden else ''}"


# ---- before a build ---------------------------------------------------------------------------------
def preflight(plan: BuildPlan, opts: BuildOptions, report: Reporter) -> None:
    """A pin that is wrong, or a source the build cannot do without, fails here in seconds."""
    for warning in warnings(plan.recipe):
        report.warn(f"{plan.recipe.name}: {warning}")
    if opts.dry_run or opts.skip_pin_check:
        return
    results = pins.check(pins.pins_of(plan.recipe, opts.index_url), opts.find_links)
    failed = [r for r in results if r.status in pins.FAILED]
    blocking = [r for r in results if r.status is pins.Status.UNREACHABLE and not _available_here(r.pin)]
    if failed or blocking:
        report.pins(results)
    if failed:
        raise PinCheckFailed(
            f"{len(failed)} pin(s) of {plan.recipe.name} do not resolve: "
            + ", ".join(r.pin.component for r in failed)
            + "\n  fix: correct them in the recipe (`atom-build pins check` shows each), or --skip-pin-check"
        )
    if blocking:
        raise PinCheckFailed(
            "the build needs sources this machine cannot reach:\n  "
            + "\n  ".join(f"{r.pin.component}: {r.detail}\n    {_advice(r.pin)}" for r in blocking)
            + "\n  (--skip-pin-check builds anyway, e.g. when the Docker daemon uses a registry mirror)"
        )


def _available_here(pin: pins.Pin) -> bool:
    """An unreachable image the daemon already has is no obstacle."""
    if pin.kind != "image":
        return False
    try:
        sdk().images.get(f"{pin.source}:{pin.ref}")
        return True
    except Exception:  # no daemon, or no such image
        return False


def _advice(pin: pins.Pin) -> str:
    return {
        "wheel": f"pass --find-links DIR holding {pin.name} {pin.ref}, or --index-url a mirror that has it",
        "git": "build on a machine that reaches the repository (or behind a proxy: --ca-cert)",
        "image": f"docker load / pull {pin.source}:{pin.ref} here first, or build where its registry is reachable",
    }.get(pin.kind, "")


# ---- the wheel bundle -------------------------------------------------------------------------------
def build_bundle(plan: BuildPlan, out: Path, opts: BuildOptions, report: Reporter) -> dict | None:
    """wheels + manifest.json + requirements.lock, then inputs.json and the provenance statement."""
    preflight(plan, opts, report)
    if not opts.dry_run:
        _clear_bundle_dir(out)
    started = datetime.now(UTC)
    request = {"target": "bundle", "output_dir": out, "ca_cert": opts.ca_cert, "no_cache": opts.no_cache}
    _docker_build(plan, "wheels", request, opts, report)
    if opts.dry_run:
        return None
    manifest = bundle.verify(out)
    recorded = inputs.bundle_inputs(plan)
    inputs.write(out, recorded)
    base = _image_digest(plan.base_ref) or plan.recipe.base.digest
    provenance.write(out, provenance.statement(plan, manifest, recorded, base, started, datetime.now(UTC)))
    return manifest


def _clear_bundle_dir(out: Path) -> None:
    """BuildKit's local export adds files but never removes them: a rebuilt bundle starts empty."""
    if out.is_symlink():
        raise AtomBuildError(
            f"{out} is a symlink; refusing to write through it\n  fix: pass a real directory"
        )
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").exists():
            raise AtomBuildError(f"{out} is not empty and holds no bundle\n  fix: pass an empty or new --out")
        shutil.rmtree(out)


def stale_reasons(plan: BuildPlan, directory: Path, explicit: bool) -> list[str]:
    """Why the bundle in `directory` cannot be used as is ([] = use it). An explicit --bundle that does
    not match is refused (it was made from other sources than this image would claim)."""
    if not (directory / "manifest.json").exists():
        if explicit:
            raise bundle.BundleError(
                f"{directory}: no manifest.json\n  fix: `atom-build wheels --out {directory}`"
            )
        return ["no bundle yet"]
    changed = inputs.changes(directory, inputs.bundle_inputs(plan))
    if changed and explicit:
        raise bundle.BundleError(
            f"{directory} was built from other inputs than this image:\n  " + "\n  ".join(changed)
            + f"\n  fix: rebuild it (`atom-build wheels --out {directory} ...`) or leave out --bundle"
        )  # fmt: skip
    return changed


# ---- images -----------------------------------------------------------------------------------------
def build_image(
    plan: BuildPlan, tag: str, bundle_dir: Path | None, full: bool, opts: BuildOptions, report: Reporter
) -> None:
    if full:
        preflight(plan, opts, report)
        _docker_build(plan, "full", {"tags": (tag,), "ca_cert": opts.ca_cert}, opts, report)
        return
    directory = bundle_dir or default_bundle_dir(plan)
    reasons = stale_reasons(plan, directory, explicit=bundle_dir is not None)
    if reasons == ["no bundle yet"]:
        report.info(f"wheel bundle {directory}: none yet, building it first")
    elif reasons:
        report.warn(f"wheel bundle {directory} is stale, rebuilding:\n  " + "\n  ".join(reasons))
    if reasons:
        build_bundle(plan, directory, opts, report)
    if not opts.dry_run:
        bundle.verify(directory)
    _docker_build(plan, "clean", {"tags": (tag,)}, opts, report, bundle_dir=directory)
    if not opts.dry_run:
        add_sbom(plan, tag, directory, opts, report)


def add_sbom(plan: BuildPlan, tag: str, bundle_dir: Path, opts: BuildOptions, report: Reporter) -> None:
    """Generate the SBOM from the built image, keep it in the bundle, add it as the image's last layer.
    Kept per clean-image id, so a rebuild that changed nothing generates nothing."""
    client = sdk()
    cached = CACHE_DIR / "sbom" / f"{client.images.get(tag).id.removeprefix('sha256:')}.cdx.json"
    if cached.is_file():
        text = cached.read_text()
        document = json.loads(text)
    else:
        document = sbom.make(client, tag, bundle_dir, plan.venv)
        text = json.dumps(document, indent=2) + "\n"
        cached.parent.mkdir(parents=True, exist_ok=True)
        render.write_file(cached, text)
    render.write_file(bundle_dir / sbom.FILE, text)
    context = CACHE_DIR / "context" / f"{plan.recipe.name}-sbom"
    context.mkdir(parents=True, exist_ok=True)
    render.write_file(context / sbom.FILE, text)
    template = render.environment().get_template("sbom.Dockerfile.j2")
    dockerfile = render.write_file(context / "Dockerfile", template.render(image=tag))
    request = BuildRequest(dockerfile=dockerfile, context=context, tags=(tag,))
    run_build(*build_command(find_client(opts.docker), request), lambda line: None)
    report.info(
        f"sbom: {len(document['components'])} components at {sbom.IN_IMAGE} and {bundle_dir / sbom.FILE}"
    )


def _image_digest(ref: str) -> str | None:
    """The base image as this machine has it: its registry digest, else its image id (made locally)."""
    try:
        attrs = sdk().images.get(ref).attrs
    except Exception:  # no daemon or no such image: the provenance then carries the recipe's digest
        return None
    repo_digests = [d.split("@", 1)[1] for d in attrs.get("RepoDigests", []) if "@" in d]
    return repo_digests[0] if repo_digests else attrs.get("Id")


def _docker_build(
    plan: BuildPlan,
    kind: str,
    request: dict,
    opts: BuildOptions,
    report: Reporter,
    bundle_dir: Path | None = None,
) -> None:
    filename = DOCKERFILE_OF[kind]
    text = render.render(plan)[filename]
    args = plan.build_args(kind)
    render.check_build_args(text, args, filename)
    context_name = f"{plan.recipe.name}-{kind}"
    context = CACHE_DIR / "context" / context_name
    req = BuildRequest(dockerfile=context / filename, context=context, build_args=args, **request)
    if opts.dry_run:
        try:
            client = find_client(opts.docker)
        except AtomBuildError:
            client = DockerClient("docker", "0", True)
        argv, env = build_command(client, req)
        print(f"# ---- {filename} ({kind})")
        print(text)
        print("# " + " ".join(f"{k}={v}" for k, v in env.items()) + (" " if env else "") + shlex.join(argv))
        return
    client = find_client(opts.docker)
    apps = frozenset(c.key for c in plan.components if c.kind == "local")  # built from this repo
    context = stage_context(context_name, wheelhouse=opts.find_links, bundle=bundle_dir, app_components=apps)
    render.write_file(context / filename, text)
    argv, env = build_command(client, req)
    report.info(f"$ {' '.join(f'{k}={v}' for k, v in env.items())} {shlex.join(argv)}")
    try:
        run_build(argv, env, report.log)
    except AtomBuildError as e:
        raise AtomBuildError(f"{e}{_build_advice(str(e), plan)}") from e


def _build_advice(log: str, plan: BuildPlan) -> str:
    pulls = (
        "failed to resolve source metadata",
        "pull access denied",
        "no such host",
        "failed to do request",
    )
    if any(p in log for p in pulls):
        return (
            f"\n  fix: the base image {plan.base_ref} could not be pulled from its registry here; "
            "`docker load` it, build where the registry is reachable, or use a local base (the cpu recipe: "
            "`atom-build base bootstrap`)"
        )
    return ""
