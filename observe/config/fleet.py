"""The fleet: `Config` (the whole file), each cluster and its sources (`prometheus` federation, `loki`
tailing), the central sinks (`remote_write`, `loki` push), and the `queue` and `logs` settings.

Each model checks what it can see on its own; rules that span sections (duplicate names, a timeout
against `interval`) are in `observe.config.loader`, where they can name their YAML path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from observe.config.alerts import AlertsConfig, GrafanaConfig
from observe.config.discovery import DiscoveryConfig
from observe.config.http_client import HTTPClientConfig, HTTPClientOptions
from observe.config.kubernetes import KubernetesConfig
from observe.config.types import LABEL_NAME, ConfigModel, Duration, HttpUrl, Size
from observe.kube.service_ref import Scheme, ServiceRef
from observe.protocol.series_selector import parse_selector
from observe.transform.relabel import RelabelConfig
from observe.units import format_duration, parse_duration

PullProtocol = Literal["auto", "remote_read", "federate"]


def _service_ref(value: str | None, scheme: Scheme) -> ServiceRef | None:
    return None if value is None else ServiceRef.parse(value, scheme=scheme)


def _check_target(src: HTTPClientOptions, url: str | None, service: str | None) -> None:
    """`url` xor `service`; a `service:` source takes no credentials or TLS of its own."""
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url or service")
    if service is None:
        # by value, not by what was written: a config dumped and validated again must pass as it did
        extra = [k for k, default in (("scheme", "http"), ("pin_pod", False)) if getattr(src, k, default) != default]
        if extra:
            raise ValueError(f"{', '.join(extra)}: only with service")
    elif src.has_own_auth():
        raise ValueError(
            "service: the API server proxy takes the cluster's kubernetes credentials; bearer_token_*, "
            "basic_auth and tls are not used (the backend never sees them): remove them"
        )


class RemoteReadConfig(ConfigModel):
    """How remote-read reads a cluster's raw samples: `remote_read:` for the fleet, and per cluster
    `prometheus.remote_read:` overriding any of its keys."""

    # A first start (no cursor yet) reads this far back: a few scrapes, not the source's whole retention.
    start_from: Duration = 300.0
    """How far back a first start (no cursor yet) reads."""
    # The longest gap filled after an outage. Thanos Receive, Mimir and a Prometheus receiver reject samples
    # about an hour older than the tenant's newest (no out-of-order window): older than that would be read,
    # shipped and refused. Raise it with a per-cluster tenant or an out-of-order window at the centre.
    backfill_limit: Duration = 3600.0
    """The longest gap filled after an outage; older samples would be refused by the centre."""
    # Behind the source's head: a sample carries its scrape's start time but is committed at the scrape's
    # end (at most scrape_timeout later, 10s by default) and rule results after their evaluation; a window
    # must not close on a time whose samples can still appear. 15s: the default scrape_timeout and a margin.
    safety_lag: Duration = 15.0
    """How far behind the source's newest data each read window closes."""
    # The largest window one request covers: 100k series x 5m at a 15s scrape interval is 2M samples,
    # ~3 MiB of XOR chunks, streamed in frames of at most 1 MiB.
    max_window: Duration = 300.0
    """The longest time range one remote-read request covers."""
    # Prometheus pays per series for every request, whatever the window holds (the index, the labels, its
    # open head chunk decoded and re-encoded, a frame written per series): ~0.3 s for 30k series on a
    # 2-core machine, more than a /federate pull (~0.2 s). Per sample against federation, at a 15s scrape
    # (`python -m bench.remote_read_source`): 30s windows ~0.7x, 60s ~0.37x, 90s ~0.28x, 2m ~0.21x. 2m is
    # the shortest window that keeps the source under 0.3x; the price is samples up to 2m later at the centre.
    min_window: Duration = 120.0
    """The shortest window a steady cycle reads: with less new data (give or take half an `interval`) the
    cycle only checks the source is up (`GET /-/ready`) and waits for the next one. A longer window costs
    the source less per sample; samples reach the centre up to this much later. `0s`: every cycle reads. At
    most half of `backfill_limit` takes effect."""

    @model_validator(mode="after")
    def _positive(self) -> RemoteReadConfig:
        for name in ("start_from", "backfill_limit", "max_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("safety_lag", "min_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if "min_window" in self.model_fields_set and self.min_window >= self.backfill_limit:
            raise ValueError(
                f"min_window ({format_duration(self.min_window)}) must be shorter than backfill_limit "
                f"({format_duration(self.backfill_limit)}): a gap is cut to backfill_limit, so a longer "
                "min_window would never be reached"
            )
        return self

    def overridden_by(self, override: RemoteReadConfig | None) -> RemoteReadConfig:
        """These settings with the keys `override` sets (a cluster's own) taking their place."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class PrometheusSourceConfig(HTTPClientOptions):
    """A cluster's Prometheus: raw samples through remote-read, or the newest ones through `/federate`."""

    url: HttpUrl | None = None
    """The Prometheus' base URL (http or https); a path prefix is kept. Give this or `service`."""
    service: str | None = None
    """`namespace/name[:port]` of the Prometheus' Service, reached through the API server's service proxy
    (needs the cluster's `kubernetes`), instead of `url`."""
    scheme: Scheme = "http"
    """With `service`: the scheme the API server uses towards the backend."""
    # The service proxy balances across endpoints on every request: an HA pair flaps between replicas.
    pin_pod: bool = False
    """With `service`: read one ready endpoint of the Service through the pod proxy (the first by name),
    failing over to the next on failure, instead of whichever the service proxy picks."""

    match: list[str] = Field(default_factory=lambda: ['{__name__=~".+"}'], min_length=1)
    """Series selectors to pull (`match[]`), the same for federation and remote-read."""
    max_response_bytes: Size = 512 * 2**20  # a 100k-series federate body is ~15 MiB; 512 MiB is a runaway
    """A bigger response fails that cluster's cycle."""
    # auto: remote-read, falling back to federation (loudly: logged, /status, observe check) when the
    # source refuses it (an old Prometheus, a proxy that only lets GET through).
    protocol: PullProtocol = "auto"
    """How to pull: `remote_read` (raw samples), `federate` (the newest sample of each series), or `auto`
    (remote-read, falling back to federation when the source refuses it)."""
    remote_read: RemoteReadConfig | None = None  # this cluster's overrides of the fleet's remote_read
    """This cluster's overrides of the top-level `remote_read` settings."""
    # An HA pair (or more) scraping the same targets: `url` first, then these in order on failure; every
    # replica has the same credentials and TLS settings.
    replica_urls: list[HttpUrl] = Field(default_factory=list)
    """More replicas of an HA pair scraping the same targets, tried in order after `url` fails; same
    credentials and TLS."""
    # The external label that tells the replicas apart (Thanos' `replica`, Prometheus Operator's
    # `prometheus_replica`): dropped, so the centre sees one series, not one per replica.
    replica_label: str | None = None
    """The external label that tells the replicas apart (`replica`, `prometheus_replica`): dropped, so the
    centre sees one series."""

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        _service_ref(value, "http")  # a ValueError saying what is wrong
        return value

    @model_validator(mode="after")
    def _target(self) -> PrometheusSourceConfig:
        _check_target(self, self.url, self.service)
        if self.service is not None and self.replica_urls:
            raise ValueError("replica_urls: only with url (with service, pin_pod fails over between its pods)")
        return self

    def service_ref(self) -> ServiceRef | None:
        """The `service` parsed, with its `scheme`; None with `url`."""
        return _service_ref(self.service, self.scheme)

    @field_validator("match")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        for sel in value:
            if not sel.strip():
                raise ValueError("a match[] selector must not be empty")
            parse_selector(sel)  # a ValueError naming the selector and the position (federation and remote-read)
        return value

    @field_validator("replica_label")
    @classmethod
    def _replica_label(cls, value: str | None) -> str | None:
        if value is not None and (not LABEL_NAME.match(value) or value.startswith("__")):
            raise ValueError(f"not a valid label name: {value!r}")
        return value

    def urls(self) -> list[str]:
        """Every replica's URL, in the order they are tried (none with `service`)."""
        return [] if self.url is None else [self.url, *self.replica_urls]


class LokiSourceConfig(HTTPClientOptions):
    """A cluster's Loki, tailed through `query_range`."""

    url: HttpUrl | None = None
    """Loki's base URL (http or https); a path prefix is kept. Give this or `service`."""
    service: str | None = None
    """`namespace/name[:port]` of Loki's Service (its query frontend), reached through the API server's
    service proxy (needs the cluster's `kubernetes`), instead of `url`."""
    scheme: Scheme = "http"
    """With `service`: the scheme the API server uses towards the backend."""

    selectors: list[str] = Field(min_length=1)
    """LogQL stream selectors to tail, e.g. `{namespace=~".+"}`."""
    tenant: str | None = None
    """The Loki tenant (`X-Scope-OrgID`) to read."""

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        _service_ref(value, "http")
        return value

    @model_validator(mode="after")
    def _target(self) -> LokiSourceConfig:
        _check_target(self, self.url, self.service)
        return self

    def service_ref(self) -> ServiceRef | None:
        """The `service` parsed, with its `scheme`; None with `url`."""
        return _service_ref(self.service, self.scheme)


def _cap_default_timeout(src: HTTPClientOptions, interval: float) -> HTTPClientOptions:
    """`src` with an unset timeout capped at `interval`, as Prometheus caps an unset scrape_timeout at the
    scrape_interval: a default must never be what refuses a config. The copy still has `timeout` unset
    (`model_fields_set`), so the loader refuses only a timeout the user wrote that is not shorter."""
    if "timeout" in src.model_fields_set or src.timeout <= interval:
        return src
    values = {**dict(src), "timeout": interval}  # min(default, interval): the default is the longer here
    return type(src).model_construct(_fields_set=set(src.model_fields_set), **values)  # already validated


class ClusterConfig(ConfigModel):
    name: str = Field(min_length=1, max_length=128)
    """The cluster's name: the value of `cluster_label` on everything it sends (letters, digits, `.`, `_`,
    `-`)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Static labels stamped on every series and stream of the cluster (`region`, `provider`, `env`, ...)."""
    kubernetes: KubernetesConfig | None = None
    """How to reach the cluster's API server, for sources given as `service`. Absent: every source has a
    `url`."""
    prometheus: PrometheusSourceConfig | None = None
    """The cluster's Prometheus: its metrics. Absent: no metrics from this cluster."""
    loki: LokiSourceConfig | None = None
    """The cluster's Loki: its logs. Absent: no logs from this cluster."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"cluster names are letters, digits, '.', '_' and '-': {value!r}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"not a valid label name: {name!r}")
            if val == "":
                raise ValueError(f"label {name!r} has an empty value")
        return value

    def with_default_timeouts_capped(self, interval: float) -> ClusterConfig:
        capped = {
            name: _cap_default_timeout(src, interval)
            for name in ("prometheus", "loki")
            if (src := getattr(self, name)) is not None
        }
        return self.model_copy(update=capped)


ReceiverKind = Literal["thanos", "prometheus", "mimir", "victoriametrics", "generic"]
_TENANT_HEADER: dict[str, str | None] = {
    "thanos": "THANOS-TENANT",
    "mimir": "X-Scope-OrgID",
    "prometheus": None,
    "victoriametrics": None,
    "generic": None,
}
_RESERVED_REMOTE_WRITE_HEADERS = frozenset(
    {"authorization", "content-encoding", "content-length", "content-type", "host", "user-agent",
     "x-prometheus-remote-write-version"}
)  # fmt: skip


class RemoteWriteConfig(HTTPClientConfig):
    """A central remote-write 1.0 receiver (Thanos Receive, Prometheus, Mimir, VictoriaMetrics)."""

    timeout: Duration = 30.0
    """Per request, connect to last byte."""
    kind: ReceiverKind | None = None  # guessed from the URL path when absent
    """The receiver: `thanos`, `mimir`, `prometheus`, `victoriametrics` or `generic`. Unset: from the URL
    path (`/api/v1/receive` Thanos, `/api/v1/push` Mimir, else generic)."""
    tenant: str | None = None
    """The tenant to write as, sent in `tenant_header`."""
    tenant_header: str | None = None  # defaults by kind: THANOS-TENANT, X-Scope-OrgID
    """The tenant header; by `kind`: `THANOS-TENANT` (Thanos), `X-Scope-OrgID` (Mimir and the rest)."""
    # 2,000 samples of ~100 B of labels is ~200 KiB raw, ~40 KiB snappy: far under Thanos' 8 MiB limit.
    max_samples_per_send: int = Field(default=2000, ge=1, le=100_000)
    """Samples per request."""
    max_in_flight: int = Field(default=4, ge=1, le=64)
    """Concurrent requests per queue."""
    # Retry backoff between sends of one batch (full jitter, doubling; Retry-After is a floor)
    min_backoff: Duration = 0.5
    """The first retry's backoff; doubled each retry with full jitter, `Retry-After` a floor."""
    max_backoff: Duration = 30.0
    """The longest backoff between retries."""

    @model_validator(mode="after")
    def _backoff(self) -> RemoteWriteConfig:
        _check_backoff(self.min_backoff, self.max_backoff)
        return self

    @field_validator("headers")
    @classmethod
    def _no_protocol_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # Prometheus' remote_write.headers rejects these too: overriding one breaks the protocol or auth.
        for name in value:
            if name.lower() in _RESERVED_REMOTE_WRITE_HEADERS:
                raise ValueError(f"header {name!r} is set by observe and cannot be overridden")
        return value

    def receiver_kind(self) -> ReceiverKind:
        if self.kind is not None:
            return self.kind
        path = urlsplit(self.url).path
        if path.endswith("/api/v1/receive"):
            return "thanos"
        if path.endswith("/api/v1/push"):
            return "mimir"
        return "generic"

    def tenant_header_name(self) -> str:
        return self.tenant_header or _TENANT_HEADER[self.receiver_kind()] or "X-Scope-OrgID"


class LokiPushConfig(HTTPClientConfig):
    """The central Loki's push API."""

    tenant: str | None = None
    """The Loki tenant (`X-Scope-OrgID`) to push as."""
    encoding: Literal["protobuf", "json"] = "protobuf"
    """Push body: `protobuf` (snappy) or `json`."""
    # Retry backoff between pushes of one record (full jitter, doubling; Retry-After is a floor)
    min_backoff: Duration = 0.5
    """The first retry's backoff; doubled each retry with full jitter, `Retry-After` a floor."""
    max_backoff: Duration = 30.0
    """The longest backoff between retries."""

    @model_validator(mode="after")
    def _backoff(self) -> LokiPushConfig:
        _check_backoff(self.min_backoff, self.max_backoff)
        return self


def _check_backoff(min_backoff: float, max_backoff: float) -> None:
    # Checked here, at load: the delivery layer asserts the same and would otherwise fail at start-up.
    if not 0 < min_backoff <= max_backoff:
        raise ValueError(
            f"need 0 < min_backoff <= max_backoff, got {format_duration(min_backoff)} and "
            f"{format_duration(max_backoff)}"
        )


class CentralConfig(ConfigModel):
    remote_write: RemoteWriteConfig | None = None
    """The central remote-write receiver. Absent: metrics go to the embedded Parquet store under
    `data_dir/store/`."""
    loki: LokiPushConfig | None = None
    """The central Loki. Absent: logs are not shipped."""


class QueueConfig(ConfigModel):
    """The durable on-disk queue between normalize and the sinks, one per cluster under `data_dir/queue/`."""

    max_bytes: Size = 2 * 2**30  # per cluster: 100k series x 30s ≈ 1.2 MiB/cycle snappy -> ~2 days
    """Per queue; past it the oldest segment is dropped (`reason="queue_full"`)."""
    segment_bytes: Size = 8 * 2**20
    """Size of one segment file of the queue (at least 64KiB)."""
    # Thanos Receive rejects samples ~1h older than the tenant's newest; older backlog is dropped as too_old.
    max_age: Duration = 6 * 3600.0
    """Older records are dropped (`reason="too_old"`): receivers reject them anyway."""
    fsync: Literal["segment", "always", "never"] = "segment"
    """When appends reach the disk: `always` (each batch), `segment` (on rotation and close), `never`."""

    @model_validator(mode="after")
    def _bounds(self) -> QueueConfig:
        if self.segment_bytes < 64 * 1024:
            raise ValueError("segment_bytes must be at least 64KiB")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("max_bytes must be at least twice segment_bytes")
        return self


class LogsConfig(ConfigModel):
    start_from: str = "now"  # "now" or a duration back in time, e.g. "1h"
    """Where a first start (no cursor yet) begins: `now`, or a duration back in time such as `1h`."""
    safety_lag: Duration = 30.0
    """How far behind now each log query window closes, so late entries are not skipped."""
    page_limit: int = Field(default=5000, ge=1)
    """Entries per Loki `query_range` request."""
    max_line_bytes: Size = 256 * 1024
    """Longer lines are truncated."""
    # Loki's default limits_config (max_label_names_per_series, max_label_name_length,
    # max_label_value_length): a stream over them is reported and dropped here, not half-rejected centrally.
    max_label_names: int = Field(default=15, ge=1)
    """A stream with more labels is reported and dropped (Loki's `max_label_names_per_series`)."""
    max_label_name_length: int = Field(default=1024, ge=1)
    """A stream with a longer label name is reported and dropped (Loki's `max_label_name_length`)."""
    max_label_value_length: int = Field(default=2048, ge=1)
    """A stream with a longer label value is reported and dropped (Loki's `max_label_value_length`)."""
    # Uncompressed push body: Promtail's default batch_size; ~200 KiB snappy, far under Loki's limits.
    push_batch_bytes: Size = 2**20
    """Uncompressed size of one push to the central Loki."""
    ship_own_logs: bool = True  # the collector's own logs to central.loki, labelled self_cluster
    """Ship the collector's own logs to `central.loki`, labelled `self_cluster`."""

    @field_validator("start_from")
    @classmethod
    def _start_from(cls, value: str) -> str:
        if value != "now":
            parse_duration(value)
        return value


class Config(ConfigModel):
    interval: Duration = 30.0
    """The pull cycle (at least 1s)."""
    cluster_label: str = "cluster"
    """The label every series and stream gets, valued with its cluster's `name`."""
    data_dir: Path = Path("./observe-data")
    """Where the queues (`queue/<cluster>/<signal>/`), cursors and the embedded store (`store/`) live."""
    listen: str = "127.0.0.1:9464"
    """`host:port` of `/metrics`, `/healthz`, `/readyz` and `/status`."""
    self_cluster: str = "management"
    """The management cluster's name, stamped as `self_cluster` on the collector's own metrics and logs."""
    self_metrics: bool = True
    """Ship the collector's own metrics to the centre too."""
    clusters: list[ClusterConfig] = Field(default_factory=list)
    """The clusters to pull, at least one."""
    relabel_configs: list[RelabelConfig] = Field(default_factory=list)
    """Prometheus `relabel_config` rules, applied after cluster stamping, with Prometheus' semantics."""
    central: CentralConfig = CentralConfig()
    """Where everything is shipped."""
    queue: QueueConfig = QueueConfig()
    """The durable on-disk queue between the pull and the sinks."""
    logs: LogsConfig = LogsConfig()
    """How logs are tailed and shipped."""
    remote_read: RemoteReadConfig = RemoteReadConfig()
    """How remote-read reads the clusters' raw samples; a cluster's `prometheus.remote_read` overrides any
    key."""
    grafana: GrafanaConfig = GrafanaConfig()
    """Where `observe dashboards` uploads, and what generated alerts link to."""
    alerts: AlertsConfig = AlertsConfig()
    """Thresholds and `for`s of the rules `observe rules` generates."""
    shutdown_timeout: Duration = 20.0
    """How long SIGTERM waits for the queues to drain."""
    discovery: DiscoveryConfig | None = None
    """Clusters found in the fleet's inventory (a kubeconfig, Argo CD, Cluster API), beside `clusters`."""
    removal_grace: Duration = 600.0
    """How long the queues of a cluster removed from the fleet (a reload, discovery) keep draining before
    they and its cursors are deleted."""

    @field_validator("cluster_label")
    @classmethod
    def _cluster_label(cls, value: str) -> str:
        if not LABEL_NAME.match(value) or value.startswith("__"):
            raise ValueError(f"not a valid label name: {value!r}")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"not host:port: {value!r}")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("interval must be at least 1s")
        return value

    @field_validator("clusters")
    @classmethod
    def _default_timeouts_within_interval(
        cls, value: list[ClusterConfig], info: ValidationInfo
    ) -> list[ClusterConfig]:
        interval = info.data.get("interval")  # absent when interval itself is invalid (reported as such)
        return value if interval is None else [c.with_default_timeouts_capped(interval) for c in value]

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def remote_read_for(self, cluster: ClusterConfig) -> RemoteReadConfig:
        """The fleet's remote_read settings with the cluster's own overrides."""
        own = cluster.prometheus.remote_read if cluster.prometheus is not None else None
        return self.remote_read.overridden_by(own)

    def cluster(self, name: str) -> ClusterConfig:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)
