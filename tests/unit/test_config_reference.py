"""The README's configuration reference and `observe config schema` are generated from the config model:
the README's copy must equal a fresh render, every key must carry a description, and the schema must
accept what the loader accepts (durations and sizes as strings)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from observe.cli import main
from observe.config import Config, parse_config
from observe.config.reference import MARKERS, _kind, _models, markdown, readme_block, schema, write_readme

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "deploy" / "observe.example.yaml"


def test_the_readme_reference_is_what_the_model_renders() -> None:
    block = readme_block(README.read_text(encoding="utf-8"))
    assert block, f"README.md has no {MARKERS[0]} ... {MARKERS[1]} block"
    assert block == markdown(), (
        "README.md's configuration reference drifted from observe/config: run "
        "`observe config reference --write README.md`"
    )


def test_write_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{MARKERS[0]}\nstale\n{MARKERS[1]}\n\nafter\n", encoding="utf-8")
    assert write_readme(readme) is True
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert readme_block(text) == markdown()
    assert write_readme(readme) is False  # already current: not rewritten


def _documented_models() -> list[type[BaseModel]]:
    return [m for m in _models(Config) if m.__name__ != "RelabelConfig"]  # Prometheus' keys: linked


def test_every_key_has_a_description_and_appears_in_the_reference() -> None:
    text = markdown()
    missing = [
        f"{m.__name__}.{name}"
        for m in _documented_models()
        for name, f in m.model_fields.items()
        if not (f.description or "").strip()
    ]
    assert missing == [], f"add a docstring under each of these fields: {missing}"
    for m in _documented_models():
        for name in m.model_fields:
            assert re.search(rf"`([\w.\[\]]+\.)?{name}`", text), f"{m.__name__}.{name} not in the reference"


def test_the_reference_states_defaults_in_their_human_form() -> None:
    text = markdown()
    assert "| `interval` | duration | `30s` |" in text
    assert "| `max_bytes` | size | `2GiB` |" in text
    assert "| `remote_write.timeout` | duration | `30s` |" in text  # a default that differs is repeated
    assert "| `url` | URL | **required** |" in text


def _props(doc: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    node = doc if model is Config else doc["$defs"][model.__name__]
    return dict(node["properties"])


def test_schema_durations_and_sizes_accept_strings_and_show_string_defaults() -> None:
    doc = schema()
    assert doc["$schema"].endswith("2020-12/schema") and doc["title"] == "observe.yaml"
    assert doc["additionalProperties"] is False  # unknown keys are errors, in editors too
    seen = set()
    for model in _documented_models():
        for name, f in model.model_fields.items():
            kind = _kind(f)
            if kind not in ("duration", "size"):
                continue
            seen.add(kind)
            prop = _props(doc, model)[name]
            string = next(a for a in prop["anyOf"] if a["type"] == "string")
            assert prop["description"] == f.description
            if "default" in prop:
                assert isinstance(prop["default"], str) and re.match(string["pattern"], prop["default"])
    assert seen == {"duration", "size"}


def test_the_example_config_fits_the_schema_patterns() -> None:
    """Every duration and size the committed example writes matches the schema's pattern (no jsonschema
    library here: the patterns are the part we wrote; the rest is pydantic's)."""
    doc = schema()
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    parse_config(data)  # the loader accepts it
    checked = 0

    def walk(value: Any, model: type[BaseModel]) -> None:
        nonlocal checked
        if not isinstance(value, dict):
            return
        for key, v in value.items():
            f = model.model_fields[key]
            kind = _kind(f)
            if kind in ("duration", "size") and isinstance(v, str):
                prop = _props(doc, model)[key]
                pattern = next(a for a in prop["anyOf"] if a["type"] == "string")["pattern"]
                assert re.match(pattern, v), (model.__name__, key, v)
                checked += 1
            sub = next((m for m in _models(model) if m is not model and _holds(f, m)), None)
            if sub is not None:
                for item in v if isinstance(v, list) else [v]:
                    walk(item, sub)

    walk(data, Config)
    assert checked >= 3


def _holds(f: Any, model: type[BaseModel]) -> bool:
    from observe.config.reference import _model_of

    return _model_of(f.annotation) is model


def test_the_cli_prints_the_schema_and_the_reference(capsys: Any) -> None:
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(schema()))
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == markdown()
