"""Prometheus `relabel_configs`, with Prometheus' semantics (model/relabel/relabel.go). STUB: being written."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal[
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
]  # fmt: skip


class RelabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_labels: list[str] = Field(default_factory=list)
    separator: str = ";"
    target_label: str = ""
    regex: str = "(.*)"
    modulus: int = 0
    replacement: str = "$1"
    action: Action = "replace"
