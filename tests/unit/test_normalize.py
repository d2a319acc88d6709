"""Cluster stamping: our labels win collisions the way Prometheus' target labels do (the series' value
moves to exported_<name>, prefixing again while taken), each collision is reported, and relabel_configs
run after stamping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from observe.transform.normalize import Normalizer
from observe.transform.relabel import RelabelConfig, Relabeler


def normalizer(
    static: Mapping[str, str] | None = None, rules: list[dict[str, Any]] | None = None
) -> tuple[Normalizer, list[str]]:
    collisions: list[str] = []
    relabeler = Relabeler([RelabelConfig.model_validate(r) for r in rules]) if rules else None
    n = Normalizer(
        cluster_label="cluster",
        cluster="prod-eu-1",
        static_labels=static or {},
        relabeler=relabeler,
        on_collision=collisions.append,
    )
    return n, collisions


def test_stamps_cluster_and_static_labels() -> None:
    n, collisions = normalizer({"region": "eu-west-1", "env": "prod"})
    assert n.apply({"__name__": "up", "job": "node"}) == {
        "__name__": "up",
        "job": "node",
        "cluster": "prod-eu-1",
        "region": "eu-west-1",
        "env": "prod",
    }
    assert collisions == []


def test_their_cluster_moves_to_exported_cluster() -> None:
    n, collisions = normalizer()
    given = {"__name__": "up", "cluster": "theirs"}
    assert n.apply(given) == {"__name__": "up", "cluster": "prod-eu-1", "exported_cluster": "theirs"}
    assert given == {"__name__": "up", "cluster": "theirs"}  # the input is not mutated
    assert collisions == ["cluster"]


def test_same_value_still_moves() -> None:
    # Prometheus moves any non-empty exposed value, equal to the target label or not.
    n, collisions = normalizer()
    assert n.apply({"cluster": "prod-eu-1"}) == {"cluster": "prod-eu-1", "exported_cluster": "prod-eu-1"}
    assert collisions == ["cluster"]


def test_empty_value_is_no_collision() -> None:
    n, collisions = normalizer()
    assert n.apply({"cluster": "", "a": "1"}) == {"cluster": "prod-eu-1", "a": "1"}
    assert collisions == []


def test_exported_name_already_taken_prefixes_again() -> None:
    n, collisions = normalizer()
    assert n.apply({"cluster": "c1", "exported_cluster": "c0"}) == {
        "cluster": "prod-eu-1",
        "exported_cluster": "c0",
        "exported_exported_cluster": "c1",
    }
    assert collisions == ["cluster"]


def test_static_label_collision() -> None:
    n, collisions = normalizer({"region": "eu-west-1"})
    assert n.apply({"region": "us", "cluster": "x"}) == {
        "cluster": "prod-eu-1",
        "exported_cluster": "x",
        "region": "eu-west-1",
        "exported_region": "us",
    }
    assert sorted(collisions) == ["cluster", "region"]


def test_exported_name_never_takes_one_of_ours() -> None:
    # Shorter names claim first (Prometheus sorts conflicts by name length), and a new name may not be
    # one of the series' labels, one of ours, or one already claimed.
    n, collisions = normalizer({"exported_cluster": "ours"})
    assert n.apply({"cluster": "a", "exported_cluster": "b"}) == {
        "cluster": "prod-eu-1",
        "exported_cluster": "ours",
        "exported_exported_cluster": "a",
        "exported_exported_exported_cluster": "b",
    }
    assert collisions == ["cluster", "exported_cluster"]


def test_relabel_runs_after_stamping() -> None:
    n, _ = normalizer(
        {"region": "eu"},
        rules=[
            {"source_labels": ["cluster", "region"], "separator": "/", "target_label": "site"},
            {"source_labels": ["exported_cluster"], "target_label": "source_cluster"},
            {"regex": "exported_cluster", "action": "labeldrop"},
        ],
    )
    assert n.apply({"__name__": "up", "cluster": "theirs"}) == {
        "__name__": "up",
        "cluster": "prod-eu-1",
        "region": "eu",
        "site": "prod-eu-1/eu",
        "source_cluster": "theirs",
    }


def test_relabel_can_drop_by_cluster() -> None:
    n, _ = normalizer(rules=[{"source_labels": ["cluster"], "regex": "prod-.*", "action": "drop"}])
    assert n.apply({"__name__": "up"}) is None


def test_static_label_may_not_be_the_cluster_label() -> None:
    with pytest.raises(ValueError, match="clashes with cluster_label"):
        normalizer({"cluster": "x"})


def test_without_a_collision_callback() -> None:
    n = Normalizer(cluster_label="k8s_cluster", cluster="a", static_labels={}, relabeler=None)
    assert n.apply({"k8s_cluster": "b"}) == {"k8s_cluster": "a", "exported_k8s_cluster": "b"}


def test_empty_values_are_removed_without_relabel() -> None:
    n, _ = normalizer()
    assert n.apply({"__name__": "up", "path": ""}) == {"__name__": "up", "cluster": "prod-eu-1"}
