"""The request models' rules, read off their pydantic declarations for the hand-written readers.

`service.api.schemas` states every field of a JSON request once: its type, default, bounds and
whether `null` is allowed. The readers (`codecs.json`, the `codecs.json_rows` fast path and the
binary codecs) parse straight into numpy instead of validating through pydantic (a 64-image
body would become 50,000 Python floats), so they take each rule from here rather than from a
copy of their own.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class FieldRule:
    """One field of a request body, as its model declares it."""

    name: str
    required: bool
    default: Any
    nullable: bool  # an explicit null means the same as leaving the field out
    lo: float | None = None  # ge
    hi: float | None = None  # le
    min_items: int | None = None
    max_items: int | None = None
    choices: tuple[str, ...] | None = None  # a Literal of strings
    item_lo: float | None = None  # bounds of every number inside a list field
    item_hi: float | None = None

    def given(self, body: dict[str, Any]) -> bool:
        """Whether the client set this field (a null counts only where null is not allowed)."""
        return self.name in body and not (self.nullable and body[self.name] is None)


@dataclass(frozen=True)
class RequestRules:
    """Every field of one request model, by name."""

    model: type[BaseModel]
    fields: dict[str, FieldRule]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.fields)

    def __getitem__(self, name: str) -> FieldRule:
        return self.fields[name]


def _nullable(annotation: Any) -> bool:
    origin = get_origin(annotation)
    return origin in (Union, types.UnionType) and type(None) in get_args(annotation)


def _choices(annotation: Any) -> tuple[str, ...] | None:
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is Literal:
            return tuple(str(value) for value in get_args(candidate))
    return None


def _bound(bounds: dict[str, Any], key: str, value: float, name: str) -> None:
    if bounds.setdefault(key, value) != value:
        raise TypeError(f"{name}: items declare two different bounds ({key})")


def _item_bounds(name: str, annotation: Any) -> dict[str, Any]:
    """The bounds an `Annotated[float, Ge(..), Le(..)]` inside a list type puts on its items."""
    bounds: dict[str, Any] = {}
    stack = [annotation]
    while stack:
        node = stack.pop()
        if get_origin(node) is Annotated:
            base, *metadata = get_args(node)
            for item in metadata:
                if isinstance(item, annotated_types.Ge):
                    _bound(bounds, "item_lo", item.ge, name)
                elif isinstance(item, annotated_types.Le):
                    _bound(bounds, "item_hi", item.le, name)
                else:
                    raise TypeError(f"{name}: item constraint {item!r} has no rule")
            stack.append(base)
        else:
            stack.extend(get_args(node))
    return bounds


def field_rule(name: str, info: FieldInfo) -> FieldRule:
    """The rule of one pydantic field; a constraint it cannot express is an error, so no
    declared bound is ever dropped on the way to the readers."""
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["lo"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["hi"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            bounds["min_items"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            bounds["max_items"] = item.max_length
        else:
            raise TypeError(f"{name}: constraint {item!r} has no rule; declare it with ge/le")
    required = info.is_required()
    return FieldRule(
        name=name,
        required=required,
        default=None if required or info.default is PydanticUndefined else info.default,
        nullable=_nullable(info.annotation),
        choices=_choices(info.annotation),
        **bounds,
        **_item_bounds(name, info.annotation),
    )


def rules_of(model: type[BaseModel]) -> RequestRules:
    return RequestRules(
        model, {name: field_rule(name, info) for name, info in model.model_fields.items()}
    )
