"""The generators' settings: `grafana` (where `observe dashboards` uploads, what alerts link to) and
`alerts` (thresholds and `for`s of what `observe rules` writes). The collector reads neither."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from observe.config.http_client import TLSConfig
from observe.config.types import LABEL_NAME, ConfigModel, Duration, HttpUrl
from observe.secrets import Secret


class GrafanaConfig(ConfigModel):
    """Where dashboards are uploaded and what generated alerts link to."""

    url: str = "http://grafana.example.com"  # also the base of every alert's dashboard_url
    """Grafana's base URL: where `observe dashboards --upload` uploads, and the base of every alert's
    `dashboard_url`."""
    token_file: Path | None = None
    """A file holding a Grafana service account token (for `--upload`)."""
    token_env: str | None = None
    """An environment variable holding a Grafana service account token."""
    folder: str = "observe"
    """The Grafana folder the dashboards go in."""
    prometheus_datasource_uid: str = "observe-prometheus"
    """UID of the Grafana data source of the central Prometheus/Thanos/Mimir."""
    loki_datasource_uid: str = "observe-loki"
    """UID of the Grafana data source of the central Loki."""
    timeout: Duration = 15.0
    """Per request to Grafana."""
    tls: TLSConfig = TLSConfig()
    """TLS towards Grafana."""

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


class AlertsConfig(ConfigModel):
    """Thresholds and `for`s of the generated alerts (`observe rules`); docs/runbooks.md explains each alert.

    Ratios are fractions (0.1 = 10%); a `*_for` is how long the condition must hold before the alert fires.
    """

    runbook_base_url: HttpUrl = "https://github.com/example-org/observe/blob/main/docs/runbooks.md"
    """Base of every alert's `runbook_url` (an anchor per alert is appended)."""
    # Placeholder webhook base of the generated Alertmanager receivers (each appends /<receiver>): fill it in.
    receiver_url: HttpUrl = "http://alert-receiver.invalid"
    """Placeholder webhook base of the generated Alertmanager receivers (each appends `/<receiver>`): fill
    it in."""
    evaluation_interval: Duration = 60.0
    """The rule groups' evaluation interval."""
    # A series every cluster's Prometheus federates; no such series centrally means no telemetry.
    presence_metric: str = "up"
    """A series every cluster's Prometheus sends; its absence centrally means no telemetry from the
    cluster."""
    cluster_missing_for: Duration = 180.0
    """How long a cluster's telemetry is absent before FleetClusterTelemetryMissing fires."""
    cluster_unreachable_for: Duration = 120.0
    """How long the collector fails to pull a cluster before FleetClusterUnreachable fires."""
    # Not longer than cluster_missing_for: a dead collector must be known before every cluster pages.
    collector_down_for: Duration = 120.0
    """How long the collector's own metrics are absent before its alert fires; not longer than
    `cluster_missing_for`."""
    telemetry_delay: Duration = 300.0
    """Samples older than this at the centre count as delayed."""
    telemetry_delayed_for: Duration = 300.0
    """How long telemetry is delayed before FleetClusterTelemetryDelayed fires."""
    logs_missing_for: Duration = 900.0
    """How long a cluster's logs are absent before their alert fires."""
    apiserver_selector: str = 'job="apiserver"'
    """Label matchers (no braces) of the kube-apiserver's series, e.g. `job="apiserver"`."""
    apiserver_down_for: Duration = 300.0
    """How long the apiserver's target is down before KubeAPIServerDown fires."""
    apiserver_availability_slo: float = 0.99
    """The apiserver's availability objective (a fraction), for the burn-rate alerts."""
    # The multiwindow burn-rate pairs of the SRE workbook: 14.4x over 1h/5m pages, 6x over 6h/30m warns.
    apiserver_burn_critical_for: Duration = 120.0
    """`for` of the fast (1h/5m, 14.4x) burn-rate alert."""
    apiserver_burn_warning_for: Duration = 900.0
    """`for` of the slow (6h/30m, 6x) burn-rate alert."""
    nodes_not_ready_warning: float = 0.1
    """Share of a cluster's nodes NotReady that warns."""
    nodes_not_ready_critical: float = 0.3
    """Share of a cluster's nodes NotReady that pages; above the warning."""
    nodes_not_ready_for: Duration = 900.0
    """`for` of the NotReady-nodes alerts."""
    requests_ratio: float = 0.85
    """Requests over allocatable (cpu or memory) above which a cluster warns."""
    requests_ratio_for: Duration = 1800.0
    """`for` of the requests-ratio alert."""
    # N-1: the free allocatable of a cluster's peers must cover its requests x headroom.
    failover_headroom: float = Field(default=1.0, ge=1.0, le=10.0)
    """N-1: a cluster's peers must have free allocatable of at least its requests times this (1 to 10)."""
    # Clusters back each other up only when these static labels match (e.g. [env]); [] = one pool.
    failover_pool_labels: list[str] = Field(default_factory=list)
    """Clusters back each other up only when these static labels match (e.g. `[env]`); `[]`: the whole
    fleet is one pool."""
    failover_for: Duration = 1800.0
    """`for` of FleetFailoverCapacityInsufficient."""
    cross_cluster_traffic_share: float = 0.5
    """Share of a cluster's Istio requests going to other clusters above which it warns."""
    cross_cluster_traffic_for: Duration = 900.0
    """`for` of the cross-cluster traffic alert."""
    cross_cluster_error_ratio: float = 0.05
    """Share of 5xx among cross-cluster requests above which a cluster warns."""
    cross_cluster_errors_for: Duration = 600.0
    """`for` of the cross-cluster error alert."""
    cross_cluster_min_rps: float = Field(default=1.0, ge=0.0)
    """Below this many requests/s the cross-cluster alerts stay silent (too little traffic to judge)."""
    # Our cluster name -> Istio's cluster ID (source_cluster/destination_cluster), when they differ.
    istio_cluster_ids: dict[str, str] = Field(default_factory=dict)
    """Our cluster name to Istio's cluster ID (`source_cluster`/`destination_cluster`), where they differ."""
    gslb_for: Duration = 300.0
    """`for` of the k8gb GSLB alerts."""
    backup_max_age: Duration = 26 * 3600.0  # a daily schedule plus two hours of slack
    """A Velero schedule whose last successful backup is older than this alerts."""
    backup_failed_for: Duration = 900.0
    """`for` of the failed-backup alert."""
    argocd_out_of_sync_for: Duration = 1800.0
    """`for` of the Argo CD out-of-sync alert."""
    argocd_unhealthy_for: Duration = 900.0
    """`for` of the Argo CD unhealthy-application alert."""
    argocd_connection_for: Duration = 600.0
    """`for` of the Argo CD cluster-connection alert."""
    queue_usage_warning: float = 0.8
    """Share of `queue.max_bytes` used that warns."""
    queue_usage_critical: float = 0.95
    """Share of `queue.max_bytes` used that pages; above the warning."""
    queue_usage_for: Duration = 300.0
    """`for` of the queue-usage alerts."""
    queue_lag: Duration = 600.0
    """A queue whose oldest record is older than this alerts."""
    queue_lag_for: Duration = 600.0
    """`for` of the queue-lag alert."""
    remote_read_lag: Duration = 600.0
    """A cluster whose remote-read cursor is further behind than this, and still falling behind, alerts."""
    remote_read_lag_for: Duration = 600.0
    """`for` of the remote-read lag alert."""
    send_failure_ratio: float = 0.1
    """Share of failed sends to the centre above which the collector alerts."""
    send_failing_for: Duration = 600.0
    """`for` of the send-failure alert."""
    thanos_receive_selector: str = 'job=~".*thanos-receive.*"'
    """Label matchers (no braces) of Thanos Receive's own series."""
    receive_error_ratio: float = 0.05
    """Share of failed writes at Thanos Receive above which it alerts."""
    receive_errors_for: Duration = 300.0
    """`for` of the Thanos Receive error alert."""
    ruler_send_failing_for: Duration = 300.0
    """`for` of the ruler's failing-notifications alert."""
    log_error_ratio: float = 0.2
    """Share of a cluster's log lines mentioning error, fatal or panic above which it warns."""
    log_errors_for: Duration = 900.0
    """`for` of the log error alert."""

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
