"""A dataset policy as an HTML form, built from the policy model's JSON schema.

The form knows nothing about particular policy fields: each property of
``Policy.model_json_schema()`` becomes an input of the matching kind (checkbox, number,
text, choice, list, or JSON for anything nested), and the posted form is turned back
into a document the model validates. Validation errors come back per field, so the page
shows each one next to its input.

>>> from pydantic import BaseModel, Field
>>> class Demo(BaseModel):
...     max_epsilon: float = Field(default=1.0, gt=0, description="Per request")
...     auto_approve: bool = False
>>> fields = form_fields(Demo, Demo().model_dump(mode="json"))
>>> [(f.name, f.kind, f.value) for f in fields]
[('max_epsilon', 'number', '1.0'), ('auto_approve', 'checkbox', 'true')]
>>> parse_form(Demo, {"max_epsilon": "-2"})[1]
{'max_epsilon': 'Input should be greater than 0'}
>>> class Outer(BaseModel):
...     audit: Demo = Demo()
>>> _ = Outer.model_rebuild()
>>> [f.name for f in form_fields(Outer, {})]
['audit.max_epsilon', 'audit.auto_approve']
>>> parse_form(Outer, {"audit.max_epsilon": "2", "audit.auto_approve": "true"})
({'audit': {'max_epsilon': 2.0, 'auto_approve': True}}, {})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError


@dataclass
class FormField:
    """One input of the policy form."""

    name: str
    label: str
    kind: str  # checkbox | number | integer | text | select | lines | json
    value: str
    checked: bool = False
    help: str = ""
    options: list[str] = field(default_factory=list)
    nullable: bool = False
    error: str = ""
    group: str = ""  # the title of the nested settings object this field belongs to

    @property
    def input_id(self) -> str:
        return "policy-" + self.name.replace(".", "-")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.split("/")[-1], node)
    return node


def _shape(schema: dict[str, Any], prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The non-null alternative of ``prop`` and whether null is allowed."""
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        concrete = [_resolve(schema, o) for o in options if o.get("type") != "null"]
        nullable = len(concrete) < len(options)
        if len(concrete) == 1:
            return {**prop, **concrete[0]}, nullable
        return {**prop, "type": "json"}, nullable
    return _resolve(schema, prop), False


def _kind(shape: dict[str, Any]) -> str:
    if "enum" in shape:
        return "select"
    kind = shape.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("number", "integer"):
        return kind
    if kind == "string":
        return "text"
    if kind == "array" and shape.get("items", {}).get("type") == "string":
        return "lines"
    return "json"


def _display(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(str(v) for v in value)
    if kind == "json":
        return json.dumps(value, indent=2, sort_keys=True)
    if kind == "checkbox":
        return "true"
    return str(value)


def _fields_of(
    schema: dict[str, Any],
    node: dict[str, Any],
    current: Mapping[str, Any],
    prefix: str,
    group: str,
) -> list[FormField]:
    fields = []
    for name, prop in node.get("properties", {}).items():
        if prop.get("readOnly"):
            continue
        shape, nullable = _shape(schema, prop)
        value = current.get(name, prop.get("default"))
        if shape.get("type") == "object" and shape.get("properties") and not prefix:
            # One level of nested settings becomes a group of plain inputs.
            title = _label(name, prop.get("title"))
            nested = value if isinstance(value, Mapping) else {}
            fields += _fields_of(schema, shape, nested, f"{name}.", title)
            continue
        kind = _kind(shape)
        fields.append(
            FormField(
                name=prefix + name,
                label=_label(name, prop.get("title")),
                kind=kind,
                value=_display(kind, value),
                checked=bool(value) if kind == "checkbox" else False,
                help=prop.get("description", ""),
                options=[str(o) for o in shape.get("enum", [])],
                nullable=nullable,
                group=group,
            )
        )
    return fields


def _label(name: str, title: str | None = None) -> str:
    """An explicit title, else the name as a sentence ("Max epsilon per request")."""
    if title and title != name.replace("_", " ").title():
        return title
    return name.replace("_", " ").capitalize()


def form_intro(model: type[BaseModel]) -> str:
    """The model's own description, shown above the form."""
    return model.model_json_schema().get("description", "")


def form_fields(model: type[BaseModel], current: Mapping[str, Any]) -> list[FormField]:
    """The inputs for ``model``, filled with the ``current`` document.

    Nested settings objects (one level) become groups of fields named ``outer.inner``.
    """
    schema = model.model_json_schema()
    return _fields_of(schema, schema, current, "", "")


def _parse_value(f: FormField, raw: str | None) -> Any:
    """The typed value of one posted input; raises ValueError with a readable message."""
    if f.kind == "checkbox":
        return raw is not None
    text = (raw or "").strip()
    if not text:
        if f.nullable:
            return None
        if f.kind == "lines":
            return []
        raise ValueError("This field needs a value.")
    if f.kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number.") from None
    if f.kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number.") from None
    if f.kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if f.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"This is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    return text


def parse_form(
    model: type[BaseModel], posted: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy document from a posted form, and the errors per field name.

    An error that no single field owns is reported under the key ``""``.
    """
    document: dict[str, Any] = {}
    errors: dict[str, str] = {}
    names = set()
    for f in form_fields(model, {}):
        names.add(f.name)
        try:
            value = _parse_value(f, posted.get(f.name))
        except ValueError as exc:
            errors[f.name] = str(exc)
            continue
        outer, _, inner = f.name.partition(".")
        if inner:
            document.setdefault(outer, {})[inner] = value
        else:
            document[outer] = value
    try:
        model.model_validate(document)  # fields that failed to parse are left out above
    except ValidationError as exc:
        for problem in exc.errors():
            loc = [str(p) for p in problem.get("loc", ())]
            key, rest = _field_of(loc, names)
            if key and key in errors and not rest:
                continue
            message = problem.get("msg", "invalid").removeprefix("Value error, ")
            if rest:
                message = f"{'.'.join(rest)}: {message}"
            errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return document, errors


def _field_of(loc: list[str], names: set[str]) -> tuple[str, list[str]]:
    """The form field an error location points into, and the rest of the location."""
    for size in (2, 1):
        if len(loc) >= size and ".".join(loc[:size]) in names:
            return ".".join(loc[:size]), loc[size:]
    return "", loc


def with_values(
    fields: list[FormField], posted: Mapping[str, str], errors: Mapping[str, str]
) -> list[FormField]:
    """The fields refilled with what was posted, each with its error, for a re-render."""
    for f in fields:
        if f.kind == "checkbox":
            f.checked = f.name in posted
        else:
            f.value = posted.get(f.name, "")
        f.error = errors.get(f.name, "")
    return fields
