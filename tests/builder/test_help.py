"""Every command's --help fits 80 columns, shows flags without a value, and names the values options take."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from atom.cli import app as atom_app
from atom_build.cli import app as build_app


def commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer may carry its own click)
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("app", [build_app, atom_app], ids=["atom-build", "atom"])
def test_help_fits_80_columns_and_shows_no_bool_values(app):
    group = typer.main.get_command(app)
    runner = CliRunner()
    seen = 0
    for path in commands(group):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert not wide, f"{' '.join(path)}: lines over 80 columns: {wide}"
        assert "<bool>" not in result.output and "BOOLEAN" not in result.output, result.output
        seen += 1
    assert seen >= 9


def test_backend_options_list_their_values():
    result = CliRunner().invoke(atom_app, ["serve", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert "aiter, triton_kernels, triton or torch" in re.sub(r"\s+", " ", result.output)
