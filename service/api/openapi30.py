"""Down-convert an OpenAPI 3.1 document (JSON Schema 2020-12, as FastAPI and pydantic v2
emit it) to OpenAPI 3.0.3, for Swagger UI 4, which does not read 3.1.

What has a 3.0 spelling is rewritten; anything else raises `OpenAPI30Error` naming the
keyword and its JSON pointer, so nothing 3.1-only reaches the served document silently.

Conversions (schema objects):

- `anyOf`/`oneOf` with a `{"type": "null"}` branch: the branch goes, `nullable: true` comes;
  a single remaining `$ref` is wrapped as `allOf: [{$ref}]` (3.0 ignores `$ref` siblings).
- `type: [X, "null"]` -> `type: X, nullable: true`; several non-null types -> `anyOf` of
  `{"type": T}` (the other keywords stay beside it: in JSON Schema they only constrain the
  instances of the type they are about, so this is exact); `type: "null"` -> `nullable: true,
  enum: [null]`.
- `const: v` -> `enum: [v]`; `examples: [a, ...]` -> `example: a`.
- numeric `exclusiveMinimum`/`exclusiveMaximum` -> `minimum`/`maximum` plus the boolean flag.
- `prefixItems` (tuples) -> `items` that is the `anyOf` of the distinct item schemas (plus
  the 2020-12 `items`, which means the items after the prefix), with `maxItems` capped when
  no further items are allowed. This is an approximation: 3.0 cannot tie a schema to a
  position, so it accepts items in any order (looser, never stricter, than the original).
- `$ref` with sibling keywords -> `allOf: [{$ref}]` plus the siblings.
- boolean schemas -> `{}` (true) or `{"not": {}}` (false); `$comment` is dropped.

Document level: `openapi` becomes "3.0.3"; `webhooks`, `jsonSchemaDialect`,
`components.pathItems`, `info.summary` and `info.license.identifier` raise.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

OPENAPI_30_VERSION = "3.0.3"

Pointer = tuple[str | int, ...]

# Schema keywords that OpenAPI 3.0 has with the same meaning; their values are data (names,
# numbers, example values), never walked as schemas.
_DATA_KEYWORDS = frozenset(
    {
        "$ref",
        "title",
        "description",
        "default",
        "enum",
        "example",
        "format",
        "pattern",
        "multipleOf",
        "maximum",
        "minimum",
        "maxLength",
        "minLength",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "nullable",
        "readOnly",
        "writeOnly",
        "deprecated",
        "discriminator",
        "xml",
        "externalDocs",
    }
)
_SUBSCHEMA_KEYWORDS = frozenset({"not", "items", "additionalProperties"})
_SUBSCHEMA_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf"})
# 2020-12 spellings rewritten below, after the children are converted.
_REWRITTEN_KEYWORDS = frozenset(
    {"type", "const", "examples", "exclusiveMinimum", "exclusiveMaximum", "prefixItems"}
)
_DROPPED_KEYWORDS = frozenset({"$comment"})  # no effect on validation or display
_TYPES_30 = frozenset({"string", "number", "integer", "boolean", "array", "object"})
# Annotations that may sit beside `nullable`/`enum` in what is still only "null".
_ANNOTATIONS = frozenset({"title", "description", "default", "example", "deprecated"})

# Document keys whose values are data (example values, scope names, link expressions).
_DOC_DATA_KEYS = frozenset({"example", "examples", "security", "links", "enum", "default"})
# Document keys whose value maps names chosen by the author (paths, status codes, media
# types, header and component names) to objects: the names are never read as keys.
_DOC_NAMED_MAPS = frozenset(
    {"paths", "responses", "content", "headers", "callbacks", "encoding", "variables"}
)
_DOC_31_ONLY: tuple[tuple[str, ...], ...] = (
    ("webhooks",),
    ("jsonSchemaDialect",),
    ("components", "pathItems"),
    ("info", "summary"),
    ("info", "license", "identifier"),
)


class OpenAPI30Error(ValueError):
    """A construct of OpenAPI 3.1 / JSON Schema 2020-12 with no OpenAPI 3.0 spelling."""

    def __init__(self, keyword: str, path: Pointer, why: str = "") -> None:
        self.keyword = keyword
        self.pointer = pointer(path)
        super().__init__(
            f"cannot express {keyword!r} at {self.pointer} in OpenAPI 3.0"
            + (f": {why}" if why else "")
        )


def pointer(path: Pointer) -> str:
    """The RFC 6901 JSON pointer (URI fragment form) of `path`, e.g. `#/paths/~1encode`."""
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "#" + "".join("/" + p for p in parts)


def to_openapi_30(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A new OpenAPI 3.0.3 document equivalent to the 3.1 `doc` (which is not modified)."""
    for path in _DOC_31_ONLY:
        node: Any = doc
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and path[-1] in node:
            raise OpenAPI30Error(path[-1], path, "OpenAPI 3.1 only")
    out = _document(doc, (), named=False)
    out["openapi"] = OPENAPI_30_VERSION
    return out


def schema_to_openapi_30(schema: Any, path: Pointer = ()) -> Any:
    """One JSON Schema 2020-12 schema as an OpenAPI 3.0 Schema Object; `path` (where it sits
    in its document) only makes error messages precise."""
    if isinstance(schema, bool):  # 2020-12 boolean schemas: 3.0 only has object ones
        return {} if schema else {"not": {}}
    if not isinstance(schema, Mapping):
        raise OpenAPI30Error(type(schema).__name__, path, "a schema must be an object")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        here = (*path, key)
        if key.startswith("x-") or key in _DATA_KEYWORDS:
            out[key] = value
        elif key in _SUBSCHEMA_KEYWORDS:
            # `additionalProperties: false` stays (3.0 has it); a boolean `items` is read
            # by _rewrite_items; `not: true` is a boolean schema like any other.
            keep = isinstance(value, bool) and key != "not"
            out[key] = value if keep else schema_to_openapi_30(value, here)
        elif key in _SUBSCHEMA_LIST_KEYWORDS or key == "prefixItems":
            if not isinstance(value, list):
                raise OpenAPI30Error(key, here, "expected a list of schemas")
            out[key] = [schema_to_openapi_30(s, (*here, i)) for i, s in enumerate(value)]
        elif key == "properties":
            if not isinstance(value, Mapping):
                raise OpenAPI30Error(key, here, "expected a map of property schemas")
            # Keys here are property names, not keywords.
            out[key] = {name: schema_to_openapi_30(s, (*here, name)) for name, s in value.items()}
        elif key in _REWRITTEN_KEYWORDS:
            out[key] = value
        elif key in _DROPPED_KEYWORDS:
            continue
        else:
            raise OpenAPI30Error(key, here, "not an OpenAPI 3.0 schema keyword")
    _rewrite_type(out, path)
    _rewrite_const(out, path)
    _rewrite_examples(out, path)
    _rewrite_exclusive_bounds(out, path)
    _rewrite_items(out, path)
    _rewrite_null_unions(out)
    _rewrite_ref(out, path)
    # The rewrites pop and re-add keys; keep the original order for readers of the document.
    return {**{k: out[k] for k in schema if k in out}, **out}


def _document(node: Any, path: Pointer, *, named: bool) -> Any:
    if isinstance(node, list):
        return [_document(item, (*path, i), named=False) for i, item in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        here = (*path, key)
        if named:
            out[key] = _document(value, here, named=False)
        elif key.startswith("x-") or key in _DOC_DATA_KEYS:
            out[key] = value
        elif key == "schema":
            out[key] = schema_to_openapi_30(value, here)
        elif path == ("components",) and key == "schemas":
            out[key] = {name: schema_to_openapi_30(s, (*here, name)) for name, s in value.items()}
        else:
            # Every map under `components` (parameters, responses, ...) is keyed by names.
            is_named = key in _DOC_NAMED_MAPS or path == ("components",)
            out[key] = _document(value, here, named=is_named)
    return out


def _null_schema(out: dict[str, Any]) -> None:
    out["nullable"] = True
    out["enum"] = [None]


def _is_null(schema: Any) -> bool:
    """Whether `schema` is (converted) "only null": `nullable` with `enum: [null]`."""
    return (
        isinstance(schema, dict)
        and schema.get("nullable") is True
        and schema.get("enum") == [None]
        and set(schema) <= {"nullable", "enum"} | _ANNOTATIONS
    )


def _rewrite_type(out: dict[str, Any], path: Pointer) -> None:
    kind = out.get("type")
    if kind is None:
        return
    kinds = list(dict.fromkeys(kind)) if isinstance(kind, list) else [kind]
    bad = [k for k in kinds if k != "null" and k not in _TYPES_30]
    if bad:
        raise OpenAPI30Error("type", (*path, "type"), f"unknown type {bad[0]!r}")
    rest = [k for k in kinds if k != "null"]
    del out["type"]
    if not rest:
        _null_schema(out)
        return
    if len(rest) == 1:
        out["type"] = rest[0]
    else:
        choice = [{"type": k} for k in rest]
        if "anyOf" in out:  # keep both disjunctions: the instance must satisfy each
            out.setdefault("allOf", []).append({"anyOf": choice})
        else:
            out["anyOf"] = choice
    if "null" in kinds:
        out["nullable"] = True


def _rewrite_const(out: dict[str, Any], path: Pointer) -> None:
    if "const" not in out:
        return
    value = out.pop("const")
    if "enum" in out and value not in out["enum"]:
        raise OpenAPI30Error("const", (*path, "const"), "not among the schema's `enum`")
    out["enum"] = [value]
    if value is None:  # 3.0 allows a null enum member only in a nullable schema
        out["nullable"] = True


def _rewrite_examples(out: dict[str, Any], path: Pointer) -> None:
    if "examples" not in out:
        return
    examples = out.pop("examples")
    if not isinstance(examples, list):
        raise OpenAPI30Error("examples", (*path, "examples"), "expected a list of values")
    if examples and "example" not in out:  # 3.0 has room for one
        out["example"] = examples[0]


def _rewrite_exclusive_bounds(out: dict[str, Any], path: Pointer) -> None:
    for exclusive, inclusive, tighter in (
        ("exclusiveMinimum", "minimum", operator.ge),
        ("exclusiveMaximum", "maximum", operator.le),
    ):
        value = out.get(exclusive)
        if value is None or isinstance(value, bool):  # absent, or already the 3.0 flag
            continue
        if not isinstance(value, int | float):
            raise OpenAPI30Error(exclusive, (*path, exclusive), "expected a number")
        bound = out.get(inclusive)
        if bound is None or tighter(value, bound):
            out[inclusive] = value
            out[exclusive] = True
        else:  # the inclusive bound already excludes everything the exclusive one does
            del out[exclusive]


def _rewrite_items(out: dict[str, Any], path: Pointer) -> None:
    prefix: list[Any] | None = out.pop("prefixItems", None)
    extra = out.pop("items", None)
    if prefix is None:
        if extra is True:
            out["items"] = {}
        elif extra is False:  # no items at all: only the empty array
            out["items"] = {}
            out["maxItems"] = 0
        elif extra is not None:
            out["items"] = extra
        return
    max_items = out.get("maxItems")
    # In 2020-12 a missing `items` beside `prefixItems` lets further items be anything.
    if extra is False:
        out["maxItems"] = len(prefix) if max_items is None else min(max_items, len(prefix))
    closed = "maxItems" in out and out["maxItems"] <= len(prefix)
    further = {} if extra is None or extra is True else extra
    options: list[Any] = []
    for schema in [*prefix, *([] if closed or extra is False else [further])]:
        if schema not in options:
            options.append(schema)
    if {} in options or not options:
        out["items"] = {}
    elif len(options) == 1:
        out["items"] = options[0]
    else:
        out["items"] = {"anyOf": options}


def _rewrite_null_unions(out: dict[str, Any]) -> None:
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if not isinstance(options, list) or not any(_is_null(o) for o in options):
            continue
        rest = [o for o in options if not _is_null(o)]
        if len(rest) > 1:
            out[key] = rest
            out["nullable"] = True
            continue
        del out[key]
        if not rest:
            _null_schema(out)
            continue
        (only,) = rest
        clash = any(k in out and out[k] != v for k, v in only.items())
        if "$ref" in only or clash:
            out.setdefault("allOf", []).append(only)
        else:
            out.update(only)
        out["nullable"] = True


def _rewrite_ref(out: dict[str, Any], path: Pointer) -> None:
    ref = out.get("$ref")
    if ref is None:
        return
    if not isinstance(ref, str):
        raise OpenAPI30Error("$ref", (*path, "$ref"), "expected a string")
    if ref.startswith("#/") and not ref.startswith("#/components/"):
        raise OpenAPI30Error("$ref", (*path, "$ref"), f"{ref} is not under #/components/")
    if len(out) > 1:  # 3.0 ignores everything beside a $ref
        del out["$ref"]
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
