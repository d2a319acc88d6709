"""The config model described for people and editors: a JSON Schema (`observe config schema`) and the
README's configuration reference (`observe config reference --write README.md`), both generated from
the pydantic models, their field docstrings and defaults, so neither can drift from what is validated.

The reference sits in the README between the two MARKERS; tests/unit/test_config_reference.py renders
it again and fails when the README's copy differs.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from observe.config.fleet import Config, RemoteReadConfig
from observe.config.http_client import BasicAuth, HTTPClientConfig, HTTPClientOptions, TLSConfig
from observe.config.types import DURATION_SCHEMA, SIZE_SCHEMA, URL_SCHEMA
from observe.units import format_duration, format_size

__all__ = ["MARKERS", "markdown", "schema", "schema_json", "write_readme"]

MARKERS: Final = ("<!-- config-reference:start -->", "<!-- config-reference:end -->")
_RELABEL_DOC: Final = (
    "https://prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config"
)
_HTTP_SECTIONS: Final = "`clusters[].prometheus`, `clusters[].loki`, `central.remote_write`, `central.loki`"
# Documented once, where they are first explained; elsewhere a row points there.
_ELSEWHERE: Final[dict[type[BaseModel], str]] = {
    RemoteReadConfig: "the keys of `remote_read`",
    TLSConfig: "the `tls.*` keys of an HTTP client",
    BasicAuth: "the `basic_auth.*` keys of an HTTP client",
}


# -- JSON Schema -----------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of observe.yaml: pydantic's, with durations and sizes as the human forms
    they are written in (`30s`, `2GiB`) and their defaults shown that way."""
    doc = Config.model_json_schema()
    defs = doc.get("$defs", {})
    for model in _models(Config):
        node = doc if model is Config else defs.get(model.__name__)
        if node is None:
            continue
        for name, f in model.model_fields.items():
            prop = node.get("properties", {}).get(name)
            if prop is not None and "default" in prop and f.default is not PydanticUndefined:
                prop["default"] = _json_default(f)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **doc,
        "title": "observe.yaml",
        "description": "The configuration of observe (https://github.com/example-org/observe): "
        "`observe check -c observe.yaml` validates one.",
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _json_default(f: FieldInfo) -> Any:
    kind = _kind(f)
    if kind == "duration":
        return format_duration(float(f.default))
    if kind == "size":
        return format_size(int(f.default))
    return to_jsonable_python(f.default)  # a Path as a string, a section as its keys


# -- the Markdown reference ------------------------------------------------------------------------

_Row = tuple[str, str, str, str]  # key, type, default, description


def markdown() -> str:
    """The README's reference: one table per section, every key with its type, default and description."""
    out = [
        MARKERS[0],
        "<!-- Generated from observe/config by `observe config reference --write README.md`: edit the field "
        "docstrings, not this. -->",
        "",
    ]
    top: list[_Row] = []
    sections: list[tuple[str, type[BaseModel], str, list[_Row]]] = []
    for name, f in Config.model_fields.items():
        model = _model_of(f.annotation)
        if model is None or model.__name__ == "RelabelConfig":  # Prometheus' own keys: linked, not repeated
            top.append(_row(name, f))
            continue
        top.append((f"`{name}`", _type(f.annotation), _default(f), _desc(f) + " See below."))
        prefix = f"{name}[]" if get_origin(f.annotation) is list else name
        sections.append((prefix, model, _desc(f), list(_rows(model, ""))))
    out += ["#### Top level", "", *_table(top)]
    for prefix, model, desc, rows in sections:
        out += ["", f"#### `{prefix}`", "", _para(model, desc), "", *_table(rows)]
    fields = sorted(HTTPClientConfig.model_fields.items(), key=lambda kv: kv[0] != "url")  # url first
    http = [r for name, f in fields for r in _expand(name, f, "", own=True)]
    out += [
        "",
        "#### HTTP client keys",
        "",
        f"Every section marked *HTTP client* ({_HTTP_SECTIONS}) also takes these; secrets come only from "
        "files or the environment.",
        "",
        *_table(http),
        MARKERS[1],
    ]
    return "\n".join(out) + "\n"


def write_readme(path: Path) -> bool:
    """Replace the reference between the MARKERS in `path`; True when that changed the file."""
    text = path.read_text(encoding="utf-8")
    start, end = (text.find(m) for m in MARKERS)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no {MARKERS[0]} ... {MARKERS[1]} block to replace")
    new = text[:start] + markdown().rstrip("\n") + text[end + len(MARKERS[1]) :]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def readme_block(text: str) -> str:
    """The reference block of a README's text, markers included ("" when absent)."""
    start, end = (text.find(m) for m in MARKERS)
    return text[start : end + len(MARKERS[1])] + "\n" if 0 <= start < end else ""


def _rows(model: type[BaseModel], prefix: str) -> typing.Iterator[_Row]:
    inherited = HTTPClientOptions.model_fields if issubclass(model, HTTPClientOptions) else {}
    for name, f in model.model_fields.items():
        base = inherited.get(name)
        # An HTTP client's shared keys are in their own table; only a different default is repeated here.
        if base is not None and (name != "timeout" or f.default == base.default):
            continue
        yield from _expand(name, f, prefix, own=False)


def _expand(name: str, f: FieldInfo, prefix: str, *, own: bool) -> typing.Iterator[_Row]:
    model = _model_of(f.annotation)
    key = f"{prefix}{name}"
    if model is None:
        yield _row(key, f)
    elif model in _ELSEWHERE and not own:
        yield (f"`{key}`", "section", _default(f), f"{_desc(f)} Takes {_ELSEWHERE[model]}.")
    else:
        kind = "section, *HTTP client*" if issubclass(model, HTTPClientOptions) else "section"
        yield (f"`{key}`", kind, _default(f), _desc(f))
        yield from _rows(model, f"{key}.")


def _row(key: str, f: FieldInfo) -> _Row:
    return (f"`{key}`", _type(f.annotation, _kind(f)), _default(f), _desc(f))


def _table(rows: list[_Row]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]


def _para(model: type[BaseModel], desc: str) -> str:
    doc = inspect.cleandoc(model.__doc__) if model.__doc__ else ""
    return " ".join((doc or desc).split())


def _desc(f: FieldInfo) -> str:
    return " ".join((f.description or "").split())


def _kind(f: FieldInfo) -> str | None:
    """duration, size or URL for the config's human-form types (by their schema marker), else None."""
    return _kind_of(f.metadata)


def _kind_of(metadata: typing.Iterable[Any]) -> str | None:
    for m in metadata:
        if isinstance(m, WithJsonSchema):
            if m.json_schema == DURATION_SCHEMA:
                return "duration"
            if m.json_schema == SIZE_SCHEMA:
                return "size"
            if m.json_schema == URL_SCHEMA:
                return "URL"
    return None


def _type(annotation: Any, kind: str | None = None) -> str:
    if kind is not None:
        return kind
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _kind_of(annotation.__metadata__) or _type(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in rest)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is list:
        if getattr(_model_of(args[0]), "__name__", "") == "RelabelConfig":  # Prometheus' own, linked
            return f"list of [relabel_config]({_RELABEL_DOC})"
        return "list of sections" if _model_of(args[0]) is not None else f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
        annotation, str(annotation)
    )


def _default(f: FieldInfo) -> str:
    if f.default is PydanticUndefined and f.default_factory is None:
        return "**required**"
    value = f.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return ""  # a section: its keys have the defaults
    kind = _kind(f)
    if kind == "duration":
        return f"`{format_duration(float(value))}`"
    if kind == "size":
        return f"`{format_size(int(value))}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict):
        return f"`{yaml.safe_dump(value, default_flow_style=True, width=1000).strip()}`"  # as written in YAML
    return f"`{value}`"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (itself, optional, or a list of them), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        todo.extend(m for f in model.model_fields.values() if (m := _model_of(f.annotation)) is not None)
    return seen
