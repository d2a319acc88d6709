"""The value types every config model shares: the strict base model, `Duration`, `Size`, `HttpUrl`, and the
label-name pattern. Human forms (`30s`, `2GiB`) are parsed here, once, so each model only declares a type."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from observe.units import format_duration, parse_duration, parse_size

LABEL_NAME: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigModel(BaseModel):
    """Every config section: unknown keys are errors (a typo must not silently become a default), and a
    loaded config is immutable (the service and the generators share one instance). A field's docstring
    is its description in `observe config schema` and the README's reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"not a duration: {value!r}")


def _size(value: Any) -> int:
    if isinstance(value, str | int):
        return parse_size(value)
    raise ValueError(f"not a size: {value!r}")


def _http_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a URL: {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a URL: {value!r}")
    return value.rstrip("/") if parts.path in ("", "/") else value


# What editors see in `observe config schema`: the human forms the validators accept, not the float/int
# they produce. Schema only; validation is the BeforeValidators'.
DURATION_SCHEMA: Final = {
    "anyOf": [
        {
            "type": "string",
            "pattern": r"^\s*((\d+(\.\d+)?(ms|s|m|h|d|w|y))+|\d+(\.\d+)?)\s*$",
            "patternErrorMessage": "a duration: 30s, 5m, 1h30m, 500ms, or a number of seconds",
        },
        {"type": "number", "minimum": 0},
    ]
}
SIZE_SCHEMA: Final = {
    "anyOf": [
        {
            "type": "string",
            "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTkmgt][iI]?[Bb]|[Bb])?\s*$",
            "patternErrorMessage": "a size: 512MiB, 2GiB, 10MB, or a number of bytes",
        },
        {"type": "integer", "minimum": 0},
    ]
}
URL_SCHEMA: Final = {"type": "string", "format": "uri", "pattern": "^https?://"}

Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(DURATION_SCHEMA),
]
"""Seconds; accepts `30s`, `5m`, `1h30m`, `500ms` or a number of seconds."""
Size = Annotated[int, BeforeValidator(_size), WithJsonSchema(SIZE_SCHEMA)]
"""Bytes; accepts `512MiB`, `2GiB`, `10MB` or a number of bytes."""
HttpUrl = Annotated[str, BeforeValidator(_http_url), WithJsonSchema(URL_SCHEMA)]
"""An http(s) URL with a host; a bare trailing `/` is dropped so paths join cleanly."""
