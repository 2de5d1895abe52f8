"""Wheel-bundle helper that runs inside the build container (standard library only).

bundle.py check-hash DIR NAME SHA256     the wheel NAME in DIR has this sha256
bundle.py collect DIR [--extra NAME:EXTRA ...]
                                         download every dependency of the wheels in DIR into DIR
bundle.py finalize DIR --recipe R ...    write DIR/manifest.json and DIR/requirements.lock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel(path: Path) -> tuple[str, str]:
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise SystemExit(f"bundle: {path.name} is not a valid wheel file name")
    return canonical(parts[0]), parts[1]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheels(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.whl"))


def check_hash(directory: Path, name: str, expected: str) -> None:
    matches = [w for w in wheels(directory) if parse_wheel(w)[0] == canonical(name)]
    if len(matches) != 1:
        raise SystemExit(f"bundle: expected one wheel for {name} in {directory}, found {len(matches)}")
    actual = sha256(matches[0])
    if actual != expected:
        raise SystemExit(f"bundle: {matches[0].name} has sha256 {actual}, the recipe pins {expected}")
    print(f"bundle: {matches[0].name} sha256 ok")


def collect(directory: Path, extras: list[str]) -> None:
    extra_of = dict(e.split(":", 1) for e in extras)
    requirements = []
    for wheel in wheels(directory):
        name, _ = parse_wheel(wheel)
        suffix = f"[{extra_of[name]}]" if name in extra_of else ""
        requirements.append(f"{name}{suffix} @ {wheel.resolve().as_uri()}")
    command = [sys.executable, "-m", "pip", "download", "--dest", str(directory)]
    command += ["--find-links", str(directory), "--only-binary=:all:", *requirements]
    subprocess.run(command, check=True)


def component_owners(directory: Path) -> dict[str, str]:
    """wheel file -> component key, from the `.component-KEY` lists each component stage wrote (then removed)."""
    owners = {}
    for marker in sorted(directory.glob(".component-*")):
        key = marker.name[len(".component-") :]
        owners.update(dict.fromkeys(marker.read_text().split(), key))
        marker.unlink()
    return owners


def finalize(directory: Path, args: argparse.Namespace) -> None:
    pins = dict(p.split("=", 1) for p in args.pin)
    owners = component_owners(directory)
    entries = []
    for wheel in wheels(directory):
        name, version = parse_wheel(wheel)
        component = owners.get(wheel.name)
        entries.append(
            {
                "name": name,
                "version": version,
                "file": wheel.name,
                "sha256": sha256(wheel),
                "component": component,
                "source": pins[component] if component else "pypi (dependency)",
            }
        )
    manifest = {
        "recipe": args.recipe,
        "recipe_sha256": args.recipe_sha256,
        "archs": [a for a in args.archs.split(",") if a],
        "enable_ck": bool(int(args.enable_ck)),
        "python": ".".join(map(str, sys.version_info[:3])),
        "components": pins,
        "wheels": entries,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    lock = [f"{e['name']}=={e['version']} --hash=sha256:{e['sha256']}" for e in entries]
    (directory / "requirements.lock").write_text("\n".join(lock) + "\n")
    print(f"bundle: {len(entries)} wheels, manifest.json and requirements.lock written")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bundle.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-hash")
    p.add_argument("directory", type=Path)
    p.add_argument("name")
    p.add_argument("sha256")
    p = sub.add_parser("collect")
    p.add_argument("directory", type=Path)
    p.add_argument("--extra", action="append", default=[])
    p = sub.add_parser("finalize")
    p.add_argument("directory", type=Path)
    p.add_argument("--recipe", required=True)
    p.add_argument("--recipe-sha256", required=True)
    p.add_argument("--archs", default="")
    p.add_argument("--enable-ck", default="0")
    p.add_argument("--pin", action="append", default=[])
    args = parser.parse_args()
    if args.command == "check-hash":
        check_hash(args.directory, args.name, args.sha256)
    elif args.command == "collect":
        collect(args.directory, args.extra)
    else:
        finalize(args.directory, args)


if __name__ == "__main__":
    main()
