"""The config model: one YAML file describes the fleet, read by the service and the generators alike.

Loading does, in order: YAML parse, `${VAR}` expansion (from the environment; `$$` is a literal `$`),
validation with pydantic (unknown keys rejected), then cross-field checks. Every problem is collected
and reported at once, each naming its YAML path, e.g. `clusters[1].prometheus.url: not a URL: 'htp://x'`.

Secrets are never inline: `bearer_token_file` / `bearer_token_env`, `basic_auth.password_file` /
`password_env`, `tls.*_file`. See `observe/secrets.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from observe.errors import ConfigError
from observe.secrets import Secret
from observe.transform.relabel import RelabelConfig
from observe.units import format_duration, parse_duration, parse_size

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"not a duration: {value!r}")


def _size(value: Any) -> int:
    if isinstance(value, str | int):
        return parse_size(value)
    raise ValueError(f"not a size: {value!r}")


Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
"""Seconds; accepts `30s`, `5m`, `1h30m`, `500ms` or a number of seconds."""
Size = Annotated[int, BeforeValidator(_size)]
"""Bytes; accepts `512MiB`, `2GiB`, `10MB` or a number of bytes."""


def _http_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a URL: {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a URL: {value!r}")
    return value.rstrip("/") if parts.path in ("", "/") else value


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Model):
    """TLS towards a server. Verification is on unless `insecure_skip_verify` says otherwise."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BasicAuth(_Model):
    username: str
    password_file: Path | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file or password_env")
        return self

    def password(self) -> Secret:
        return Secret(path=self.password_file, env=self.password_env)


class HTTPClientConfig(_Model):
    """How to reach one HTTP server: shared by every source and sink (one model, not a copy per protocol)."""

    url: HttpUrl
    timeout: Duration = 20.0
    bearer_token_file: Path | None = None
    bearer_token_env: str | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSConfig = TLSConfig()
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPClientConfig:
        if self.bearer_token_file is not None and self.bearer_token_env is not None:
            raise ValueError("give at most one of bearer_token_file or bearer_token_env")
        has_bearer = self.bearer_token_file is not None or self.bearer_token_env is not None
        if has_bearer and self.basic_auth is not None:
            raise ValueError("give either a bearer token or basic_auth, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self

    def bearer_token(self) -> Secret | None:
        if self.bearer_token_file is None and self.bearer_token_env is None:
            return None
        return Secret(path=self.bearer_token_file, env=self.bearer_token_env)


class PrometheusSourceConfig(HTTPClientConfig):
    """A cluster's Prometheus, pulled through `/federate`."""

    match: list[str] = Field(default_factory=lambda: ['{__name__=~".+"}'], min_length=1)
    max_response_bytes: Size = 512 * 2**20  # a 100k-series federate body is ~15 MiB; 512 MiB is a runaway

    @field_validator("match")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        for sel in value:
            if not sel.strip():
                raise ValueError("a match[] selector must not be empty")
        return value


class LokiSourceConfig(HTTPClientConfig):
    """A cluster's Loki, tailed through `query_range`."""

    selectors: list[str] = Field(min_length=1)
    tenant: str | None = None


class ClusterConfig(_Model):
    name: str = Field(min_length=1, max_length=128)
    labels: dict[str, str] = Field(default_factory=dict)
    prometheus: PrometheusSourceConfig | None = None
    loki: LokiSourceConfig | None = None

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
    kind: ReceiverKind | None = None  # guessed from the URL path when absent
    tenant: str | None = None
    tenant_header: str | None = None  # defaults by kind: THANOS-TENANT, X-Scope-OrgID
    # 2,000 samples of ~100 B of labels is ~200 KiB raw, ~40 KiB snappy: far under Thanos' 8 MiB limit.
    max_samples_per_send: int = Field(default=2000, ge=1, le=100_000)
    max_in_flight: int = Field(default=4, ge=1, le=64)
    min_backoff: Duration = 0.5
    max_backoff: Duration = 30.0

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
    encoding: Literal["protobuf", "json"] = "protobuf"
    # Retry backoff between pushes of one record (full jitter, doubling; Retry-After is a floor)
    min_backoff: Duration = 0.5
    max_backoff: Duration = 30.0

    @model_validator(mode="after")
    def _backoff(self) -> LokiPushConfig:
        if not 0 < self.min_backoff <= self.max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        return self


class CentralConfig(_Model):
    remote_write: RemoteWriteConfig | None = None
    loki: LokiPushConfig | None = None


class QueueConfig(_Model):
    """The durable on-disk queue between normalize and the sinks, one per cluster under `data_dir/queue/`."""

    max_bytes: Size = 2 * 2**30  # per cluster: 100k series x 30s ≈ 1.2 MiB/cycle snappy -> ~2 days
    segment_bytes: Size = 8 * 2**20
    # Thanos Receive rejects samples ~1h older than the tenant's newest; older backlog is dropped as too_old.
    max_age: Duration = 6 * 3600.0
    fsync: Literal["segment", "always", "never"] = "segment"

    @model_validator(mode="after")
    def _bounds(self) -> QueueConfig:
        if self.segment_bytes < 64 * 1024:
            raise ValueError("segment_bytes must be at least 64KiB")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("max_bytes must be at least twice segment_bytes")
        return self


class LogsConfig(_Model):
    start_from: str = "now"  # "now" or a duration back in time, e.g. "1h"
    safety_lag: Duration = 30.0
    page_limit: int = Field(default=5000, ge=1)
    max_line_bytes: Size = 256 * 1024
    # Loki's default limits_config (max_label_names_per_series, max_label_name_length,
    # max_label_value_length): a stream over them is reported and dropped here, not half-rejected centrally.
    max_label_names: int = Field(default=15, ge=1)
    max_label_name_length: int = Field(default=1024, ge=1)
    max_label_value_length: int = Field(default=2048, ge=1)
    # Uncompressed push body: Promtail's default batch_size; ~200 KiB snappy, far under Loki's limits.
    push_batch_bytes: Size = 2**20
    ship_own_logs: bool = True  # the collector's own logs to central.loki, labelled self_cluster

    @field_validator("start_from")
    @classmethod
    def _start_from(cls, value: str) -> str:
        if value != "now":
            parse_duration(value)
        return value


class GrafanaConfig(_Model):
    """Where dashboards are uploaded and what generated alerts link to."""

    url: str = "http://grafana.example.com"  # also the base of every alert's dashboard_url
    token_file: Path | None = None
    token_env: str | None = None
    folder: str = "observe"
    prometheus_datasource_uid: str = "observe-prometheus"
    loki_datasource_uid: str = "observe-loki"
    timeout: Duration = 15.0
    tls: TLSConfig = TLSConfig()

    @model_validator(mode="after")
    def _one_token(self) -> GrafanaConfig:
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("give at most one of token_file or token_env")
        return self

    def token(self) -> Secret | None:
        if self.token_file is None and self.token_env is None:
            return None
        return Secret(path=self.token_file, env=self.token_env)


_RATIO_FIELDS = (
    "apiserver_availability_slo",
    "nodes_not_ready_warning",
    "nodes_not_ready_critical",
    "requests_ratio",
    "cross_cluster_traffic_share",
    "cross_cluster_error_ratio",
    "queue_usage_warning",
    "queue_usage_critical",
    "send_failure_ratio",
    "receive_error_ratio",
    "log_error_ratio",
)


class AlertsConfig(_Model):
    """Thresholds and `for`s of the generated alerts (`observe rules`); docs/runbooks.md explains each alert.

    Ratios are fractions (0.1 = 10%); a `*_for` is how long the condition must hold before the alert fires.
    """

    runbook_base_url: HttpUrl = "https://github.com/example-org/observe/blob/main/docs/runbooks.md"
    # Placeholder webhook base of the generated Alertmanager receivers (each appends /<receiver>): fill it in.
    receiver_url: HttpUrl = "http://alert-receiver.invalid"
    evaluation_interval: Duration = 60.0
    # A series every cluster's Prometheus federates; no such series centrally means no telemetry.
    presence_metric: str = "up"
    cluster_missing_for: Duration = 180.0
    cluster_unreachable_for: Duration = 120.0
    # Not longer than cluster_missing_for: a dead collector must be known before every cluster pages.
    collector_down_for: Duration = 120.0
    telemetry_delay: Duration = 300.0
    telemetry_delayed_for: Duration = 300.0
    logs_missing_for: Duration = 900.0
    apiserver_selector: str = 'job="apiserver"'
    apiserver_down_for: Duration = 300.0
    apiserver_availability_slo: float = 0.99
    # The multiwindow burn-rate pairs of the SRE workbook: 14.4x over 1h/5m pages, 6x over 6h/30m warns.
    apiserver_burn_critical_for: Duration = 120.0
    apiserver_burn_warning_for: Duration = 900.0
    nodes_not_ready_warning: float = 0.1
    nodes_not_ready_critical: float = 0.3
    nodes_not_ready_for: Duration = 900.0
    requests_ratio: float = 0.85
    requests_ratio_for: Duration = 1800.0
    # N-1: the free allocatable of a cluster's peers must cover its requests x headroom.
    failover_headroom: float = Field(default=1.0, ge=1.0, le=10.0)
    # Clusters back each other up only when these static labels match (e.g. [env]); [] = one pool.
    failover_pool_labels: list[str] = Field(default_factory=list)
    failover_for: Duration = 1800.0
    cross_cluster_traffic_share: float = 0.5
    cross_cluster_traffic_for: Duration = 900.0
    cross_cluster_error_ratio: float = 0.05
    cross_cluster_errors_for: Duration = 600.0
    cross_cluster_min_rps: float = Field(default=1.0, ge=0.0)
    # Our cluster name -> Istio's cluster ID (source_cluster/destination_cluster), when they differ.
    istio_cluster_ids: dict[str, str] = Field(default_factory=dict)
    gslb_for: Duration = 300.0
    backup_max_age: Duration = 26 * 3600.0  # a daily schedule plus two hours of slack
    backup_failed_for: Duration = 900.0
    argocd_out_of_sync_for: Duration = 1800.0
    argocd_unhealthy_for: Duration = 900.0
    argocd_connection_for: Duration = 600.0
    queue_usage_warning: float = 0.8
    queue_usage_critical: float = 0.95
    queue_usage_for: Duration = 300.0
    queue_lag: Duration = 600.0
    queue_lag_for: Duration = 600.0
    send_failure_ratio: float = 0.1
    send_failing_for: Duration = 600.0
    thanos_receive_selector: str = 'job=~".*thanos-receive.*"'
    receive_error_ratio: float = 0.05
    receive_errors_for: Duration = 300.0
    ruler_send_failing_for: Duration = 300.0
    log_error_ratio: float = 0.2
    log_errors_for: Duration = 900.0

    @field_validator(*_RATIO_FIELDS)
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"must be a fraction in (0, 1], got {value}")
        return value

    @field_validator("presence_metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", value):
            raise ValueError(f"not a metric name: {value!r}")
        return value

    @field_validator("apiserver_selector", "thanos_receive_selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        if not value.strip() or "{" in value or "}" in value:
            raise ValueError(f"give label matchers without braces, e.g. 'job=\"apiserver\"', got {value!r}")
        return value

    @field_validator("failover_pool_labels")
    @classmethod
    def _pool_labels(cls, value: list[str]) -> list[str]:
        for name in value:
            if not LABEL_NAME.match(name):
                raise ValueError(f"not a valid label name: {name!r}")
        return value

    @model_validator(mode="after")
    def _ladders(self) -> AlertsConfig:
        if self.nodes_not_ready_warning >= self.nodes_not_ready_critical:
            raise ValueError("nodes_not_ready_warning must be below nodes_not_ready_critical")
        if self.queue_usage_warning >= self.queue_usage_critical:
            raise ValueError("queue_usage_warning must be below queue_usage_critical")
        if self.collector_down_for > self.cluster_missing_for:
            raise ValueError(
                "collector_down_for must not exceed cluster_missing_for: a dead collector would page for "
                "every cluster before it is known dead"
            )
        return self


class Config(_Model):
    interval: Duration = 30.0
    cluster_label: str = "cluster"
    data_dir: Path = Path("./observe-data")
    listen: str = "127.0.0.1:9464"
    self_cluster: str = "management"
    self_metrics: bool = True
    clusters: list[ClusterConfig] = Field(min_length=1)
    relabel_configs: list[RelabelConfig] = Field(default_factory=list)
    central: CentralConfig = CentralConfig()
    queue: QueueConfig = QueueConfig()
    logs: LogsConfig = LogsConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    alerts: AlertsConfig = AlertsConfig()
    shutdown_timeout: Duration = 20.0

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

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def cluster(self, name: str) -> ClusterConfig:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)


def _cross_checks(cfg: Config) -> list[str]:
    """Rules that span fields; each message names its YAML path."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(cfg.clusters):
        if c.name in seen:
            problems.append(
                f"clusters[{i}].name: duplicate cluster name {c.name!r} (also clusters[{seen[c.name]}])"
            )
        seen.setdefault(c.name, i)
        if cfg.cluster_label in c.labels:
            problems.append(
                f"clusters[{i}].labels.{cfg.cluster_label}: clashes with cluster_label; the cluster name is its value"
            )
        if c.prometheus is None and c.loki is None:
            problems.append(f"clusters[{i}]: give at least one of prometheus or loki")
        for src_name in ("prometheus", "loki"):
            src = getattr(c, src_name)
            if src is not None and src.timeout >= cfg.interval:
                problems.append(
                    f"clusters[{i}].{src_name}.timeout: {format_duration(src.timeout)} must be shorter than "
                    f"interval ({format_duration(cfg.interval)}) so one slow cluster cannot overlap its next cycle"
                )
    if cfg.self_cluster in seen:
        problems.append(
            f"self_cluster: {cfg.self_cluster!r} is also a name in clusters; pick a distinct name"
        )
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("function-after", "function-before"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        if name in ("bearer_token", "password"):
            return f"inline secrets are not accepted: use {name}_file or {name}_env"
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _expand_env(node: Any, path: str, problems: list[str]) -> Any:
    """Expand `${VAR}` in every string of the YAML tree; `$$` is a literal `$`."""
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in os.environ:
                problems.append(f"{path or '(top level)'}: environment variable ${{{name}}} is not set")
                return ""
            return os.environ[name]

        return _ENV_REF.sub(repl, node)
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {
            # relabel_configs keep Prometheus' own `$1`/`${name}` templates: Prometheus expands no env there.
            k: v
            if (not path and k == "relabel_configs")
            else _expand_env(v, f"{path}.{k}" if path else str(k), problems)
            for k, v in node.items()
        }
    return node


def parse_config(data: Any, *, source: str = "config") -> Config:
    """Validate an already-parsed YAML tree; raises ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    problems: list[str] = []
    data = _expand_env(data, "", problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(f"{_path(tuple(e['loc']))}: {_message(e)}" for e in exc.errors())
        raise ConfigError(problems) from None
    problems.extend(_cross_checks(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read, expand and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    return parse_config(data, source=str(p))
