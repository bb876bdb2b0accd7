"""Structured output: ``response_format`` and JSON schemas turned into a GBNF grammar.

The grammar goes to the engine's sampler (llama.cpp: ``llama_sampler_init_grammar``),
so every token the model may pick keeps the output on a path to JSON that matches the
schema; a small model returns valid JSON as surely as a large one (unless ``max_tokens``
cuts it, which ``finish_reason: "length"`` says). The schema is converted by
llama-cpp-python's own converter (``llama_cpp.llama_grammar``), which silently ignores
what it cannot express; :func:`check_schema` therefore refuses, with a 400 that names the
keyword and where it is, any schema feature the grammar would not enforce, so "strict"
means what it says.
"""

from __future__ import annotations

import json
from typing import Any

from llmops_desktop.serving.protocol import APIError

# Keywords the grammar enforces, and annotations that constrain nothing.
_ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "pattern", "format", "minLength", "maxLength"})
_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "$anchor", "nullable"})
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
                      "uuid5"})
MAX_SCHEMA_NODES = 5000
MAX_SCHEMA_DEPTH = 48


class UnsupportedSchema(APIError):
    """A JSON schema feature the grammar cannot enforce (400, naming it)."""


def check_schema(schema: Any, param: str) -> None:
    """Raise :class:`UnsupportedSchema` for anything the grammar would not enforce."""
    count = [0]

    def fail(where: str, what: str) -> None:
        raise UnsupportedSchema(400, f"'{param}': {what} (at {where or '/'}); the output "
                                     "grammar cannot enforce it. Leave it out or check the "
                                     "value after generation.", param=param,
                                code="unsupported_schema")

    def visit(node: Any, where: str, depth: int) -> None:
        count[0] += 1
        if count[0] > MAX_SCHEMA_NODES or depth > MAX_SCHEMA_DEPTH:
            fail(where, f"the schema is larger than {MAX_SCHEMA_NODES} nodes or deeper than "
                        f"{MAX_SCHEMA_DEPTH} levels")
        if node is True or node == {}:
            return
        if not isinstance(node, dict):
            fail(where, f"a schema must be an object, not {json.dumps(node)[:40]}")
        for key in node:
            if key not in _ENFORCED and key not in _ANNOTATIONS:
                fail(where, f"the keyword {key!r} is not supported")
        types = node.get("type")
        for t in types if isinstance(types, list) else [types] if types is not None else []:
            if t not in _TYPES:
                fail(where, f"unknown type {t!r}")
        if isinstance(types, list) and set(node) & (_ENFORCED - {"type"}):
            extra = sorted(set(node) & (_ENFORCED - {"type"}))[0]
            fail(where, f"a list of types together with {extra!r} is not supported (use "
                        "anyOf)")
        if "format" in node and node["format"] not in _FORMATS:
            fail(where, f"the format {node['format']!r} is not supported (only "
                        f"{', '.join(sorted(_FORMATS - {'uuid1', 'uuid2', 'uuid3', 'uuid5'}))})")
        if ("minLength" in node or "maxLength" in node) and types != "string":
            fail(where, "'minLength'/'maxLength' need \"type\": \"string\"")
        if ("minLength" in node or "maxLength" in node) and ("pattern" in node
                                                              or "format" in node):
            fail(where, "'minLength'/'maxLength' together with 'pattern' or 'format'")
        if ("minItems" in node or "maxItems" in node) and not isinstance(node.get("items"),
                                                                          dict):
            fail(where, "'minItems'/'maxItems' need 'items' (one schema for every item)")
        for key in ("minLength", "maxLength", "minItems", "maxItems"):
            if key in node and (type(node[key]) is not int or node[key] < 0):
                fail(where, f"{key!r} must be a non-negative integer")
        if "pattern" in node:
            pattern = node["pattern"]
            if not isinstance(pattern, str) or not pattern.startswith("^") \
                    or not pattern.endswith("$"):
                fail(where, "a 'pattern' must be a string anchored with ^ and $")
        ref = node.get("$ref")
        if ref is not None and (not isinstance(ref, str) or not ref.startswith("#/")):
            fail(where, f"only local references ('#/$defs/...') are supported, not {ref!r}")
        if "allOf" in node:
            for i, part in enumerate(_as_list(node["allOf"], where, "allOf", fail)):
                if not isinstance(part, dict) or set(part) - {"$ref", "properties", "required",
                                                              "type", "anyOf"} - _ANNOTATIONS:
                    fail(f"{where}/allOf/{i}", "an allOf part other than properties, "
                                               "required or a $ref")
        if "required" in node and not (isinstance(node["required"], list) and all(
                isinstance(r, str) for r in node["required"])):
            fail(where, "'required' must be a list of property names")
        if "enum" in node and not isinstance(node["enum"], list):
            fail(where, "'enum' must be a list")
        for key in ("properties", "$defs", "definitions"):
            if key in node:
                if not isinstance(node[key], dict):
                    fail(where, f"{key!r} must be an object")
                for name, sub in node[key].items():
                    visit(sub, f"{where}/{key}/{name}", depth + 1)
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if key in node:
                for i, sub in enumerate(_as_list(node[key], where, key, fail)):
                    visit(sub, f"{where}/{key}/{i}", depth + 1)
        for key in ("items", "additionalProperties"):
            sub = node.get(key)
            if isinstance(sub, dict):
                visit(sub, f"{where}/{key}", depth + 1)
            elif key in node and not isinstance(sub, bool):
                fail(where, f"{key!r} must be a schema or a boolean")
            elif key == "items" and sub is False:
                fail(where, "'items': false is not supported")

    visit(schema, "", 0)


def _as_list(value: Any, where: str, key: str, fail: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        fail(where, f"{key!r} must be a non-empty list of schemas")
    return value


def schema_grammar(schema: Any, param: str, prop_order: list[str] | None = None) -> str:
    """The GBNF for JSON matching ``schema`` (checked first)."""
    check_schema(schema, param)
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(json.dumps(schema), prop_order)
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UnsupportedSchema(400, f"'{param}': this schema cannot be turned into a grammar "
                                     f"({exc or type(exc).__name__}).", param=param,
                                code="unsupported_schema") from None
    # JSON strings hold no raw control characters (llama.cpp's own converter says so too),
    # and no code point that is not Unicode text: llama.cpp's grammar decodes UTF-8
    # leniently, so a byte-level model could otherwise write surrogates or F5..F7 leads.
    return grammar.replace('char ::= [^"\\\\]', STRING_CHAR)


STRING_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F\\uD800-\\uDFFF\\U00110000-\\U001FFFFF]'


ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


def response_format_grammar(value: Any) -> str | None:
    """The grammar ``response_format`` asks for (None: free text), or a 400."""
    if value is None:
        return None
    param = "response_format"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise APIError(400, "'response_format' must be an object with a 'type' (text, "
                            "json_object or json_schema).", param=param, code="invalid_value")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return schema_grammar(ANY_JSON_OBJECT, param)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise APIError(400, "'response_format' of type json_schema needs 'json_schema': "
                                "{\"name\": ..., \"schema\": {...}}.", param=param,
                           code="invalid_value")
        schema = spec.get("schema", ANY_JSON_OBJECT)
        return schema_grammar(schema, param)
    raise APIError(400, f"'response_format' type {kind!r} is not one of text, json_object, "
                        "json_schema.", param=param, code="invalid_value")
