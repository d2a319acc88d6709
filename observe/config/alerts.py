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


class AlertsConfig(ConfigModel):
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
