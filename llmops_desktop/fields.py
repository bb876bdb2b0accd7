"""One field specification for every typed record a person fills in.

Settings, a deployment's serve options, fine-tune options and every job request
declare their fields with :func:`spec`: default, a description (the CLI's help, the
form's tooltip), a label as a person would write it, choices, bounds and a group.
:func:`add_arguments` makes argparse flags from them and ``llmops_desktop.qt.forms``
makes form editors from the same list, so a flag and its form field cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

from llmops_desktop.errors import InvalidInputError

_KEYS = ("description", "label", "choices", "minimum", "maximum", "group", "metavar",
         "restart", "exposed", "flag")


def spec(default: Any = MISSING, description: str = "", *, label: str,
         choices: tuple[str, ...] = (), minimum: float | None = None,
         maximum: float | None = None, group: str = "General", metavar: str | None = None,
         restart: bool = False, exposed: bool = True, flag: str | None = None,
         default_factory: Any = MISSING) -> Any:
    """A dataclass field with what a flag or a form needs to show it.

    ``exposed=False`` keeps a field out of generated flags and forms (it is set by code,
    such as a job's artifact id). ``flag`` overrides the generated ``--field-name``.
    """
    metadata = {"description": description, "label": label, "choices": tuple(choices),
                "minimum": minimum, "maximum": maximum, "group": group, "metavar": metavar,
                "restart": restart, "exposed": exposed, "flag": flag, "spec": True}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldSpec:
    """One field as flags, forms and checks see it."""

    name: str
    type: type  # bool, int, float, str, or tuple (a list of str)
    optional: bool  # None is a valid value ("not set": the default decides)
    default: Any
    label: str
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    group: str = "General"
    metavar: str | None = None
    restart: bool = False
    exposed: bool = True
    flag: str | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def option(self) -> str:
        """The command-line flag: ``--max-len`` for ``max_len``."""
        return self.flag or "--" + self.name.replace("_", "-")

    def info(self) -> dict[str, Any]:
        """The field as a plain dict (the older ``field_info()`` shape)."""
        out = {k: getattr(self, k) for k in ("name", "type", "default", *_KEYS[:-2])}
        out["default"] = None if self.default is MISSING else self.default
        return out

    def coerce(self, value: Any) -> Any:
        """``value`` as this field's type, checked against choices and bounds.

        Raises InvalidInputError (a ValueError) naming the field by its label.
        """
        if value is None or (value == "" and self.optional and self.type is not str):
            if self.optional:
                return None
            raise InvalidInputError(f"{self.label}: a value is needed.")
        typ = self.type
        if typ is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise InvalidInputError(f"{self.label}: expected on/off, got {value!r}")
            return bool(value)
        if typ is tuple:  # "a,b", ["a", "b"] or ["a,b"] (a repeated flag, or a list in it)
            items = [value] if isinstance(value, str) else value
            return tuple(x.strip() for item in items for x in str(item).split(",") if x.strip())
        if typ in (int, float):
            try:
                number = typ(value)
                if typ is int and isinstance(value, float) and value != int(value):
                    raise ValueError
            except (TypeError, ValueError):
                what = "a whole number" if typ is int else "a number"
                raise InvalidInputError(f"{self.label}: expected {what}, got {value!r}") from None
            if self.minimum is not None and number < self.minimum:
                raise InvalidInputError(f"{self.label}: at least {_num(self.minimum)}")
            if self.maximum is not None and number > self.maximum:
                raise InvalidInputError(f"{self.label}: at most {_num(self.maximum)}")
            return number
        text = str(value)
        if self.choices and text not in self.choices:
            raise InvalidInputError(f"{self.label}: one of {', '.join(self.choices)}, "
                                    f"got {text!r}")
        return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _resolve(annotation: Any) -> tuple[type, bool]:
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin in (tuple, list) or annotation in (tuple, list):
        return tuple, optional
    return (annotation if isinstance(annotation, type) else str), optional


_CACHE: dict[type, list[FieldSpec]] = {}


def field_specs(cls: type) -> list[FieldSpec]:
    """The specified fields of dataclass ``cls``, in declaration order."""
    cached = _CACHE.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("spec"):
            continue
        typ, optional = _resolve(hints[f.name])
        default = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = f.default_factory()
        out.append(FieldSpec(name=f.name, type=typ, optional=optional, default=default,
                             **{k: f.metadata[k] for k in _KEYS}))
    _CACHE[cls] = out
    return out


def spec_of(cls: type, name: str) -> FieldSpec:
    for s in field_specs(cls):
        if s.name == name:
            return s
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def check_values(obj: Any) -> None:
    """Raise InvalidInputError for the first field of ``obj`` out of its choices or bounds."""
    for s in field_specs(type(obj)):
        value = getattr(obj, s.name)
        if value is None and s.optional:
            continue
        s.coerce(value)


def add_arguments(parser: argparse.ArgumentParser, cls: type, *,
                  skip: tuple[str, ...] = (), help_suffix: Any = None) -> list[FieldSpec]:
    """Add a flag per exposed field of ``cls``; every flag defaults to None (not given).

    bool fields get ``--x/--no-x``; tuple fields may be repeated. ``help_suffix(spec)``
    may add to each help text. Returns the specs that got a flag.
    """
    added = []
    for s in field_specs(cls):
        if not s.exposed or s.name in skip:
            continue
        help_text = s.description + (help_suffix(s) if help_suffix else "")
        kwargs: dict[str, Any] = {"dest": s.name, "default": None,
                                  "help": help_text.replace("%", "%%")}
        if s.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if s.type is tuple:
                kwargs["action"] = "append"
            elif s.type in (int, float):
                kwargs["type"] = s.type
            if s.choices:
                kwargs["choices"] = s.choices
            if s.metavar:
                kwargs["metavar"] = s.metavar
        parser.add_argument(s.option, **kwargs)
        added.append(s)
    return added


def values_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags :func:`add_arguments` added that the user gave, as field values."""
    out = {}
    for s in field_specs(cls):
        value = getattr(args, s.name, None)
        if s.exposed and value is not None:
            out[s.name] = s.coerce(value)
    return out
