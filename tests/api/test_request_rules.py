"""Every field of every request model is enforced as the model declares it.

The pydantic request models are the one declaration of each field's type, bounds, default and
nullability. These tests enumerate the models' fields and check each declared rule against
the running app, so a field added to a model without its reader (or a reader that drifts from
the model) fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.api.contract import route_contracts
from service.api.request_rules import FieldRule, rules_of
from service.config import Settings
from tests.api.conftest import LATENT_DIM

LIMITS = {"max_images": 3, "max_n": 5, "max_steps": 12}
IMG = [0.5] * 784
Z = [0.25] * LATENT_DIM
# A valid body of each route, and a valid value for every field of its model.
BASE: dict[str, dict[str, Any]] = {
    "encode": {"images": [IMG]},
    "score": {"images": [IMG]},
    "decode": {"z": [Z]},
    "sample": {"n": 2},
    "interpolate": {"start_z": Z, "end_z": Z},
}
VALID: dict[str, dict[str, Any]] = {
    "encode": {"images": [IMG, IMG], "seed": 3},
    "score": {"images": [IMG, IMG], "seed": 3, "samples": 2},
    "decode": {"z": [Z, Z]},
    "sample": {"n": 3, "seed": 4, "temperature": 0.5},
    "interpolate": {
        "start": IMG,
        "start_z": Z,
        "end": IMG,
        "end_z": Z,
        "steps": 3,
        "method": "slerp",
    },
}
# Fields that are one of a pair: setting one means dropping its partner from the base body.
PARTNER = {"start": "start_z", "end": "end_z", "start_z": "start", "end_z": "end"}
CONTRACTS = route_contracts(Settings(workers=1, **LIMITS))


@pytest.fixture(scope="module")
def limited(make_client) -> Iterator[Any]:
    with make_client(**LIMITS) as client:
        yield client


def _fields() -> list[tuple[str, FieldRule]]:
    return [(name, rule) for name, c in CONTRACTS.items() for rule in c.rules.fields.values()]


def _with(route: str, field: str, value: Any) -> dict[str, Any]:
    body = {k: v for k, v in BASE[route].items() if k != PARTNER.get(field)}
    body[field] = value
    return body


def _item(route: str, field: str) -> Any:
    return VALID[route][field][0]


def _post(client: Any, route: str, body: dict[str, Any]) -> Any:
    return client.post(f"/{route}", json=body)


def _assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_every_field_of_every_model_has_a_valid_value_here():
    for name, contract in CONTRACTS.items():
        assert set(VALID[name]) == set(contract.request.model_fields), name


@pytest.mark.parametrize(("route", "rule"), _fields(), ids=lambda v: getattr(v, "name", v))
def test_each_field_accepts_a_valid_value(limited, route, rule):
    response = _post(limited, route, _with(route, rule.name, VALID[route][rule.name]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("route", "rule"), _fields(), ids=lambda v: getattr(v, "name", v))
def test_each_field_is_held_to_its_declared_bounds(limited, route, rule):
    checked = 0
    for bound, step in ((rule.lo, -1), (rule.hi, 1)):
        if bound is None:
            continue
        at = _post(limited, route, _with(route, rule.name, bound))
        assert at.status_code == 200, (rule.name, bound, at.text)
        _assert_refused(_post(limited, route, _with(route, rule.name, bound + step)), rule.name)
        checked += 1
    if rule.max_items is not None:
        items = [_item(route, rule.name)] * rule.max_items
        assert _post(limited, route, _with(route, rule.name, items)).status_code == 200
        too_many = _post(limited, route, _with(route, rule.name, [*items, items[0]]))
        _assert_refused(too_many, rule.name)
        checked += 1
    if rule.min_items is not None:
        _assert_refused(_post(limited, route, _with(route, rule.name, [])), rule.name)
        checked += 1
    if rule.choices is not None:
        for choice in rule.choices:
            assert _post(limited, route, _with(route, rule.name, choice)).status_code == 200
        _assert_refused(_post(limited, route, _with(route, rule.name, "no-such")), rule.name)
        checked += 1
    for bound, step in ((rule.item_lo, -1), (rule.item_hi, 1)):
        if bound is None:
            continue
        value = VALID[route][rule.name]
        beyond = _replace_first_number(value, bound + step)
        response = _post(limited, route, _with(route, rule.name, beyond))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"].startswith(rule.name)
        at = _post(limited, route, _with(route, rule.name, _replace_first_number(value, bound)))
        assert at.status_code == 200, at.text
        checked += 1
    if not checked:
        pytest.skip(f"{rule.name} declares no bounds")


def _replace_first_number(value: Any, number: float) -> Any:
    """`value` (numbers in nested lists) with its first number replaced."""
    if isinstance(value, list):
        return [_replace_first_number(value[0], number), *value[1:]]
    return number


@pytest.mark.parametrize(("route", "rule"), _fields(), ids=lambda v: getattr(v, "name", v))
def test_null_means_absent_exactly_where_the_model_allows_it(limited, route, rule):
    body = _with(route, rule.name, None)
    partner = PARTNER.get(rule.name)
    if partner:  # `start: null` beside `start_z`: only the latent is given
        body[partner] = VALID[route][partner]
    response = _post(limited, route, body)
    if rule.nullable:
        assert response.status_code == 200, response.text
    else:
        _assert_refused(response, rule.name)


@pytest.mark.parametrize(
    ("route", "rule"),
    [(route, rule) for route, rule in _fields() if rule.name not in PARTNER],
    ids=lambda v: getattr(v, "name", v),
)
def test_required_fields_are_required_and_others_optional(limited, route, rule):
    body = {k: v for k, v in BASE[route].items() if k != rule.name}
    response = _post(limited, route, body)
    if rule.required:
        _assert_refused(response, rule.name)
    else:
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(("side", "given"), [("start", "both"), ("end", "neither")])
def test_interpolation_ends_need_exactly_one_of_image_or_latent(limited, side, given):
    body = {"start": IMG, "start_z": Z, "end_z": Z} if given == "both" else {"start_z": Z}
    response = _post(limited, "interpolate", body)
    _assert_refused(response, side)
    assert given in response.json()["error"]["message"]


@pytest.mark.parametrize("route", sorted(CONTRACTS))
def test_unknown_fields_are_refused_by_name(limited, route):
    _assert_refused(_post(limited, route, {**BASE[route], "colour": 1}), "colour")


def test_declared_defaults_are_used(limited):
    defaults = CONTRACTS["sample"].rules
    answer = limited.post("/sample", json={"seed": 1}).json()
    assert len(answer["images"]) == defaults["n"].default
    path = limited.post("/interpolate", json=BASE["interpolate"]).json()
    assert len(path["z"]) == CONTRACTS["interpolate"].rules["steps"].default


def test_rules_refuse_a_constraint_they_cannot_carry():
    from pydantic import BaseModel, Field

    class Strict(BaseModel):
        x: int = Field(1, gt=0)

    with pytest.raises(TypeError, match="x"):
        rules_of(Strict)
