"""The collector's own metrics, shipped to the centre like any cluster's, labelled `self_cluster`.

Why ship them and not only expose `/metrics`: the centre must learn that a cluster is unreachable
even when no Prometheus scrapes the collector; `observe_cluster_up{cluster="x"} == 0` arriving
centrally is what the generated alerts key on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from observe.protocol.remote_write import compress, encode_labels, encode_series, encode_write_request

_SKIP_SUFFIXES = ("_created",)  # client_python's *_created gauges carry no signal worth central storage


class SelfMetricsEncoder:
    """Registry -> remote-write payloads; encoded label sets are cached (they rarely change)."""

    def __init__(
        self, registry: CollectorRegistry, *, self_label: str, self_cluster: str, max_samples: int
    ) -> None:
        self._registry = registry
        self._extra = (self_label, self_cluster)
        self._max = max_samples
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def encode(self, now_ms: int) -> list[tuple[bytes, int]]:
        series: list[bytes] = []
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name.endswith(_SKIP_SUFFIXES):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                label_bytes = self._cache.get(key)
                if label_bytes is None:
                    labels = {k: v for k, v in sample.labels.items() if v != ""}
                    labels["__name__"] = sample.name
                    labels[self._extra[0]] = self._extra[1]
                    label_bytes = encode_labels(tuple(sorted(labels.items())))
                    self._cache[key] = label_bytes
                series.append(encode_series(label_bytes, float(sample.value), now_ms))
        return [
            (compress(encode_write_request(series[i : i + self._max])), len(series[i : i + self._max]))
            for i in range(0, len(series), self._max)
        ]
