"""/docs works offline and every documented example works on the served model."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate


def test_docs_page_loads_only_local_assets(client):
    html = client.get("/docs").text
    assert not re.search(r"https?://", html)
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404


# Keywords of OpenAPI 3.1 / JSON Schema 2020-12 that OpenAPI 3.0 does not have.
ONLY_3_1 = frozenset(
    {
        "$defs", "$schema", "$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
        "$comment", "const", "prefixItems", "contains", "minContains", "maxContains",
        "dependentSchemas", "dependentRequired", "unevaluatedProperties", "unevaluatedItems",
        "if", "then", "else", "contentMediaType", "contentEncoding", "contentSchema",
        "patternProperties", "propertyNames", "webhooks", "jsonSchemaDialect", "pathItems",
    }
)  # fmt: skip
VALUES = frozenset({"example", "default", "enum"})  # data, whatever it looks like
EXCLUSIVE_BOUNDS = ("exclusiveMinimum", "exclusiveMaximum")  # numbers in 3.1, flags in 3.0


def only_3_1_constructs(node: Any, path: str = "#") -> list[str]:
    """Where `node` uses something 3.0 lacks: 3.1-only keys, `type` lists or "null",
    numeric exclusive bounds, `examples` lists (3.0 has a map of Example Objects there)."""
    if isinstance(node, list):
        return [f for i, item in enumerate(node) for f in only_3_1_constructs(item, f"{path}/{i}")]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        here = f"{path}/{key}"
        if key in VALUES or key.startswith("x-"):
            continue
        if (
            key in ONLY_3_1
            or (key == "type" and (not isinstance(value, str) or value == "null"))
            or (key in EXCLUSIVE_BOUNDS and not isinstance(value, bool))
            or (key == "examples" and not isinstance(value, dict))
        ):
            found.append(here)
        elif key == "examples":
            continue  # Example Objects: their values are data
        elif key == "properties":  # names, not keywords: walk only the schemas they name
            for name, schema in value.items():
                found += only_3_1_constructs(schema, f"{here}/{name}")
        else:
            found += only_3_1_constructs(value, here)
    return found


@pytest.mark.parametrize("api_key", [None, "k3y"])
def test_openapi_is_valid_3_0_for_the_bundled_swagger_ui(make_client, api_key):
    with make_client(api_key=api_key) as client:
        doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.0.3"
    validate(doc, cls=OpenAPIV30SpecValidator)
    assert only_3_1_constructs(doc) == []
    # every schema listed is used (FastAPI's own 422 models are not, since errors are ErrorBody)
    assert not {"HTTPValidationError", "ValidationError"} & set(doc["components"]["schemas"])


def test_the_3_1_walk_finds_what_it_looks_for():
    schema = {
        "type": ["string", "null"],
        "exclusiveMinimum": 0,
        "examples": [1],
        "properties": {"const": {"prefixItems": []}},
        "example": {"const": 1},
    }
    assert only_3_1_constructs(schema) == [
        "#/type",
        "#/exclusiveMinimum",
        "#/examples",
        "#/properties/const/prefixItems",
    ]


@pytest.mark.parametrize("route", ["/encode", "/decode", "/sample", "/interpolate"])
def test_every_request_example_works(client, route):
    op = client.get("/openapi.json").json()["paths"][route]["post"]
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    assert examples
    for name, example in examples.items():
        response = client.post(route, json=example["value"])
        assert response.status_code == 200, (name, response.text)


def test_limits_from_settings_appear_in_the_schema(make_client):
    with make_client(max_images=7, max_n=9, max_steps=11, max_body_bytes=4096) as client:
        doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["EncodeRequest"]["properties"]["images"]["maxItems"] == 7
    assert schemas["DecodeRequest"]["properties"]["z"]["maxItems"] == 7
    assert schemas["SampleRequest"]["properties"]["n"]["maximum"] == 9
    assert schemas["InterpolateRequest"]["properties"]["steps"]["maximum"] == 11
    assert "4096 bytes" in doc["paths"]["/encode"]["post"]["description"]


def test_binary_bodies_and_image_answers_are_documented(client):
    doc = client.get("/openapi.json").json()
    encode = doc["paths"]["/encode"]["post"]
    assert {"application/json", "application/x-npy", "application/octet-stream"} <= set(
        encode["requestBody"]["content"]
    )
    answers = doc["paths"]["/interpolate"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "image/png", "image/gif", "application/x-npy"} <= set(answers)


def test_every_request_example_works_on_the_default_model(default_model_dir):
    import warnings

    from service.app import create_app
    from service.config import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app(Settings(model_dir=default_model_dir, workers=1, access_log=False))
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
        assert client.get("/model").json()["latent_dim"] == doc["info"]["x-latent-dim"]
        for route in ("/encode", "/decode", "/sample", "/interpolate"):
            examples = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
            for name, example in examples["examples"].items():
                response = client.post(route, json=example["value"])
                assert response.status_code == 200, (route, name, response.text)
