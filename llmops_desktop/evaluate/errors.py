"""Errors of suites, runs and judges (registered through ``errors.ERROR_MODULES``)."""

from __future__ import annotations

from llmops_desktop.errors import InvalidInputError, LLMOpsError, NotFoundError


class SuiteNotFoundError(NotFoundError):
    """No suite (or version) by that name."""


class EvalRunNotFoundError(NotFoundError):
    """No finished evaluation run matches what was asked."""


class SuiteBadRowsError(InvalidInputError):
    """Some rows of a suite file are not items; nothing was imported."""

    def __init__(self, message: str, bad_rows: list | None = None) -> None:
        super().__init__(message)
        self.bad_rows = list(bad_rows or [])


class JudgeError(LLMOpsError, ConnectionError):
    """The judge deployment could not be asked (not running, refused, wrong address)."""

    exit_code = 10
