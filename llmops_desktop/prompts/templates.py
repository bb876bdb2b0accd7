"""``{{variable}}`` templates: which variables a text names, and the text filled in.

Only ``{{ name }}`` (letters, digits, underscore) is a variable; everything else is kept as
written, so a template may hold JSON or code with single braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmops_desktop.errors import InvalidInputError

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MissingVariablesError(InvalidInputError):
    """A template names variables the request did not give."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


def variables(*texts: str) -> list[str]:
    """The variables the texts name, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in VARIABLE.finditer(text or ""):
            seen.setdefault(match[1])
    return list(seen)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)) or value is None:
        import json

        return json.dumps(value)
    raise InvalidInputError(f"A template variable must be text or a number, not "
                            f"{type(value).__name__}.")


def fill(text: str, values: Mapping[str, Any], *, what: str = "template") -> str:
    """``text`` with every ``{{name}}`` replaced by ``values[name]`` (refused when one is
    missing, naming them all)."""
    missing = [v for v in variables(text) if v not in values]
    if missing:
        wanted = ", ".join(f'"{m}": …' for m in missing)
        raise MissingVariablesError(
            f"The {what} needs the variable(s) {', '.join(missing)}: send them as "
            f'"variables": {{{wanted}}}.', missing)
    return VARIABLE.sub(lambda m: _text(values[m[1]]), text)
