"""Errors a user can act on: where, what is wrong, how to fix it."""

from __future__ import annotations


class AtomBuildError(Exception):
    """Base class; the CLI prints the message and exits non-zero."""


class RecipeError(AtomBuildError):
    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: {key}: {problem}\n  fix: {fix}")


class RecipeErrors(AtomBuildError):
    """All validation failures of one recipe, reported together."""

    def __init__(self, errors: list[RecipeError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class DockerError(AtomBuildError):
    pass
