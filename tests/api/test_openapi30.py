"""The OpenAPI 3.1 -> 3.0 converter: each rewrite on small schemas (several straight from
pydantic), and a clear error for what 3.0 cannot say."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from service.api.openapi30 import (
    OPENAPI_30_VERSION,
    OpenAPI30Error,
    schema_to_openapi_30,
    to_openapi_30,
)

REF = "#/components/schemas/{model}"


class Inner(BaseModel):
    a: int


class Model(BaseModel):
    positive: float = Field(gt=0, lt=10)
    pair: tuple[int, str]
    twins: tuple[int, int]
    inner: Inner | None = None
    count: int | None = None
    either: int | str | None = None
    kind: Literal["x"] = "x"
    tagged: float = Field(1.0, examples=[1.5, 2.0])


def document(schemas: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A minimal OpenAPI 3.1 document holding `schemas` as components."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": schemas},
        **extra,
    }


@pytest.fixture(scope="module")
def model_30() -> dict[str, Any]:
    """`Model` and `Inner` as the served document holds them: converted components."""
    _, top = models_json_schema([(Model, "validation")], ref_template=REF)
    return to_openapi_30(document(top["$defs"]))["components"]["schemas"]


def test_real_pydantic_schemas_convert_to_a_valid_3_0_document() -> None:
    _, top = models_json_schema([(Model, "validation")], ref_template=REF)
    doc = to_openapi_30(document(top["$defs"]))
    assert doc["openapi"] == OPENAPI_30_VERSION
    validate(doc, cls=OpenAPIV30SpecValidator)


def test_numeric_exclusive_bounds_become_3_0_flags(model_30: dict[str, Any]) -> None:
    assert model_30["Model"]["properties"]["positive"] == {
        "exclusiveMaximum": True,
        "exclusiveMinimum": True,
        "title": "Positive",
        "type": "number",
        "maximum": 10,
        "minimum": 0,
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"exclusiveMinimum": 3, "minimum": 3}, {"minimum": 3, "exclusiveMinimum": True}),
        ({"exclusiveMinimum": 3, "minimum": 1}, {"minimum": 3, "exclusiveMinimum": True}),
        ({"exclusiveMinimum": 3, "minimum": 5}, {"minimum": 5}),  # inclusive 5 is stricter
        ({"exclusiveMaximum": 3, "maximum": 1}, {"maximum": 1}),
        ({"exclusiveMaximum": 3.5}, {"maximum": 3.5, "exclusiveMaximum": True}),
        ({"minimum": 0, "exclusiveMinimum": True}, {"minimum": 0, "exclusiveMinimum": True}),
    ],
)
def test_exclusive_bound_combinations(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert schema_to_openapi_30({"type": "number", **schema}) == {"type": "number", **expected}


def test_tuples_become_items_of_any_of_their_item_schemas(model_30: dict[str, Any]) -> None:
    properties = model_30["Model"]["properties"]
    assert properties["pair"] == {
        "maxItems": 2,
        "minItems": 2,
        "title": "Pair",
        "type": "array",
        "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    }
    assert properties["twins"]["items"] == {"type": "integer"}  # one schema, no anyOf


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # `items: false`: nothing after the prefix, so the length is capped.
        (
            {"prefixItems": [{"type": "integer"}], "items": False},
            {"items": {"type": "integer"}, "maxItems": 1},
        ),
        # `items` beside `prefixItems` is the schema of the items after the prefix.
        (
            {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
            {"items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
        ),
        # Neither `items` nor a length cap: further items may be anything.
        ({"prefixItems": [{"type": "integer"}]}, {"items": {}}),
        ({"prefixItems": [], "maxItems": 0}, {"maxItems": 0, "items": {}}),
    ],
)
def test_prefix_items_edge_cases(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert schema_to_openapi_30({"type": "array", **schema}) == {"type": "array", **expected}


def test_null_unions_become_nullable(model_30: dict[str, Any]) -> None:
    properties = model_30["Model"]["properties"]
    # 3.0 ignores siblings of a $ref, so a nullable reference is wrapped in allOf.
    assert properties["inner"] == {
        "default": None,
        "allOf": [{"$ref": "#/components/schemas/Inner"}],
        "nullable": True,
    }
    assert properties["count"] == {
        "default": None,
        "title": "Count",
        "type": "integer",
        "nullable": True,
    }
    assert properties["either"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert properties["either"]["nullable"] is True


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": ["integer"]}, {"type": "integer"}),
        (
            {"type": ["integer", "string"], "minLength": 1},
            {"minLength": 1, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        ),
        ({"type": "null"}, {"nullable": True, "enum": [None]}),
        ({"anyOf": [{"type": "null"}]}, {"nullable": True, "enum": [None]}),
        (
            {"$ref": "#/components/schemas/Inner", "description": "d"},
            {"description": "d", "allOf": [{"$ref": "#/components/schemas/Inner"}]},
        ),
        ({"const": None}, {"enum": [None], "nullable": True}),
        ({"examples": []}, {}),
        ({"example": 1, "examples": [2]}, {"example": 1}),
        (True, {}),
        (False, {"not": {}}),
        ({"not": True}, {"not": {}}),
        ({"additionalProperties": False, "$comment": "why"}, {"additionalProperties": False}),
    ],
)
def test_other_2020_12_spellings(schema: Any, expected: dict[str, Any]) -> None:
    assert schema_to_openapi_30(schema) == expected


def test_const_and_examples(model_30: dict[str, Any]) -> None:
    properties = model_30["Model"]["properties"]
    assert properties["kind"] == {
        "enum": ["x"],
        "default": "x",
        "title": "Kind",
        "type": "string",
    }
    assert properties["tagged"]["example"] == 1.5
    assert "examples" not in properties["tagged"]


def test_names_and_values_are_not_read_as_keywords() -> None:
    # Property names, examples, defaults and enum members may look like keywords.
    odd = {"const": 1, "prefixItems": [1], "type": ["null"], "$defs": {}}
    schema = {
        "type": "object",
        "properties": {name: {"type": "integer"} for name in ("if", "$defs", "const", "x-y")},
        "required": ["if", "const"],
        "default": odd,
        "example": odd,
        "enum": [odd],
        "x-extra": odd,
    }
    before = copy.deepcopy(schema)
    assert schema_to_openapi_30(schema) == schema
    assert schema == before  # the input is not modified


def test_document_level_conversion() -> None:
    media = {
        "schema": {"type": ["string", "null"]},
        # Example Objects, valid 3.0: values stay as they are, however schema-like.
        "examples": {"one": {"value": {"const": 1, "type": "null"}}},
    }
    doc = document(
        {"M": {"type": "integer", "examples": [3]}},
        paths={"/a/b": {"post": {"requestBody": {"content": {"application/json": media}}}}},
    )
    out = to_openapi_30(doc)
    assert out["openapi"] == "3.0.3"
    assert out["components"]["schemas"]["M"] == {"type": "integer", "example": 3}
    body = out["paths"]["/a/b"]["post"]["requestBody"]["content"]["application/json"]
    assert body == {"schema": {"type": "string", "nullable": True}, "examples": media["examples"]}
    assert doc["openapi"] == "3.1.0"


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("$defs", {"X": {"type": "integer"}}),
        ("dependentSchemas", {"a": {"required": ["b"]}}),
        ("dependentRequired", {"a": ["b"]}),
        ("unevaluatedProperties", False),
        ("if", {"required": ["a"]}),
        ("contentMediaType", "image/png"),
        ("patternProperties", {"^a": {"type": "integer"}}),  # not in 3.0 either
        ("propertyNames", {"pattern": "^a"}),
        ("contains", {"type": "integer"}),
        ("$schema", "https://json-schema.org/draft/2020-12/schema"),
        ("typo", 1),
    ],
)
def test_keywords_without_a_3_0_spelling_raise_with_their_path(keyword: str, value: Any) -> None:
    doc = document({"M": {"type": "object", "properties": {"a/b": {keyword: value}}}})
    with pytest.raises(OpenAPI30Error) as raised:
        to_openapi_30(doc)
    assert raised.value.keyword == keyword
    # RFC 6901: the "/" in the property name is escaped.
    assert raised.value.pointer == f"#/components/schemas/M/properties/a~1b/{keyword}"
    assert repr(keyword) in str(raised.value)


def test_nested_pydantic_model_schema_with_defs_raises() -> None:
    # model_json_schema() nests $defs, which 3.0 lacks: they belong in components.
    schema = Model.model_json_schema(ref_template=REF)
    with pytest.raises(OpenAPI30Error, match=r"'\$defs' at #/components/schemas/M/\$defs"):
        to_openapi_30(document({"M": schema}))


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"webhooks": {}}, "#/webhooks"),
        ({"jsonSchemaDialect": "x"}, "#/jsonSchemaDialect"),
        ({"info": {"title": "t", "version": "1", "summary": "s"}}, "#/info/summary"),
    ],
)
def test_document_constructs_of_3_1_raise(extra: dict[str, Any], pointer: str) -> None:
    with pytest.raises(OpenAPI30Error) as raised:
        to_openapi_30(document({}, **extra))
    assert raised.value.pointer == pointer


def test_refs_into_defs_raise() -> None:
    with pytest.raises(OpenAPI30Error, match="not under #/components/"):
        schema_to_openapi_30({"$ref": "#/$defs/Inner"})
