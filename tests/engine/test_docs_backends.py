"""docs/backends.md shows `atom backends` output per simulated platform; it must match what selection does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atom.backends.report import backend_report
from atom.bench.shapes import write_shape

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"
SECTION = re.compile(r"### atom backends --model gpt-oss-20b (.+?)\n```\n(.*?)```", re.S)


def sections() -> list[tuple[str, list[str]]]:
    found = [(flags, re.findall(r"chosen: (\S+)", body)) for flags, body in SECTION.findall(DOC.read_text())]
    assert {f.split()[1] for f, _ in found} >= {"cpu", "sm90", "gfx942", "gfx950"}
    return found


@pytest.mark.parametrize("flags, chosen", sections(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_choices_match_selection(flags, chosen, tmp_path):
    args = flags.split()
    report = backend_report(
        write_shape("gpt-oss-20b", tmp_path / "m"),
        arch=args[1],
        ck="--ck" in args,
        triton_kernels="--triton-kernels" in args,
        moe_backend=None,
        attention_backend=None,
    )
    assert [layer["chosen"] for layer in report["layers"]] == chosen
