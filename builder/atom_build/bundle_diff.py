"""`atom-build bundle diff A B`: why two bundles differ, down to the members of a wheel.

Two builds of one recipe should give bit-identical wheels for what we build from source; when they do
not, this says whether it is content, a timestamp, permissions or only the zip container.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .bundle import load_manifest

MANIFEST_FIELDS = ("recipe", "recipe_sha256", "archs", "enable_ck", "python", "components")


def diff(a: Path, b: Path) -> list[str]:
    """Lines describing every difference ([] = identical wheels and build facts)."""
    ma, mb = load_manifest(a), load_manifest(b)
    lines = [
        f"manifest {field}: {ma.get(field)!r} -> {mb.get(field)!r}"
        for field in MANIFEST_FIELDS
        if ma.get(field) != mb.get(field)
    ]
    wa = {w["name"]: w for w in ma["wheels"]}
    wb = {w["name"]: w for w in mb["wheels"]}
    for name in sorted(set(wa) | set(wb)):
        x, y = wa.get(name), wb.get(name)
        if x is None or y is None:
            lines.append(f"{name}: only in {'B' if x is None else 'A'} ({(x or y)['file']})")
        elif x["version"] != y["version"]:
            lines.append(f"{name}: version {x['version']} -> {y['version']}")
        elif x["sha256"] != y["sha256"]:
            lines.append(f"{name} {x['version']}: sha256 {x['sha256'][:12]} -> {y['sha256'][:12]}")
            lines += [f"  {d}" for d in wheel_diff(a / x["file"], b / y["file"])]
    return lines


def wheel_diff(p: Path, q: Path) -> list[str]:
    with zipfile.ZipFile(p) as za, zipfile.ZipFile(q) as zb:
        ia, ib = za.infolist(), zb.infolist()
        na, nb = {i.filename: i for i in ia}, {i.filename: i for i in ib}
        lines = [f"only in A: {n}" for n in sorted(set(na) - set(nb))]
        lines += [f"only in B: {n}" for n in sorted(set(nb) - set(na))]
        for name in sorted(set(na) & set(nb)):
            x, y = na[name], nb[name]
            if x.CRC != y.CRC or x.file_size != y.file_size:
                lines.append(f"content differs: {name}")
            elif x.date_time != y.date_time:
                lines.append(f"timestamp differs: {name} ({_when(x)} vs {_when(y)}): set SOURCE_DATE_EPOCH")
            elif x.external_attr != y.external_attr:
                lines.append(
                    f"permissions differ: {name} ({x.external_attr >> 16:o} vs {y.external_attr >> 16:o})"
                )
        if not lines and [i.filename for i in ia] != [i.filename for i in ib]:
            lines.append("the same members in another order")
        if not lines:
            lines.append("same members and contents; the zip container differs (compression or padding)")
        return lines


def _when(info: zipfile.ZipInfo) -> str:
    y, mo, d, h, mi, s = info.date_time
    return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"
