"""The config model: one YAML file describes the fleet, read by the service and the generators alike.

    types.py        the shared value types: ConfigModel (strict, frozen), Duration, Size, HttpUrl
    http_client.py  how to reach one HTTP server: HTTPClientConfig (HTTPClientOptions + url), BasicAuth, TLSConfig
    fleet.py        Config, the clusters and their sources, the central sinks, queue and logs
    alerts.py       the generators' settings: GrafanaConfig, AlertsConfig
    kubernetes.py   `clusters[].kubernetes`: a kubeconfig context, or an API server URL with its credentials
    discovery.py    `discovery:`: clusters from a kubeconfig, Argo CD, Cluster API, and their template
    loader.py       load_config / parse_config: YAML, `${VAR}`, validation, cross-field and service checks
    reference.py    the model described: `observe config schema` (JSON Schema), the README's reference

Importers use this package, never a module in it, so the split can change without touching them.
"""

from observe.config.alerts import AlertsConfig, GrafanaConfig
from observe.config.discovery import (
    ArgoCDDiscovery,
    ClusterAPIDiscovery,
    ClusterTemplate,
    DiscoveryConfig,
    KubeconfigDiscovery,
)
from observe.config.fleet import (
    CentralConfig,
    ClusterConfig,
    Config,
    LogsConfig,
    LokiPushConfig,
    LokiSourceConfig,
    PrometheusSourceConfig,
    PullProtocol,
    QueueConfig,
    ReceiverKind,
    RemoteReadConfig,
    RemoteWriteConfig,
)
from observe.config.http_client import BasicAuth, HTTPClientConfig, HTTPClientOptions, TLSConfig
from observe.config.kubernetes import KubernetesConfig
from observe.config.loader import load_config, parse_config, require_service_config, service_problems
from observe.config.types import LABEL_NAME, Duration, HttpUrl, Size

__all__ = [
    "LABEL_NAME",
    "AlertsConfig",
    "ArgoCDDiscovery",
    "BasicAuth",
    "CentralConfig",
    "ClusterAPIDiscovery",
    "ClusterConfig",
    "ClusterTemplate",
    "Config",
    "DiscoveryConfig",
    "Duration",
    "GrafanaConfig",
    "HTTPClientConfig",
    "HTTPClientOptions",
    "HttpUrl",
    "KubeconfigDiscovery",
    "KubernetesConfig",
    "LogsConfig",
    "LokiPushConfig",
    "LokiSourceConfig",
    "PrometheusSourceConfig",
    "PullProtocol",
    "QueueConfig",
    "ReceiverKind",
    "RemoteReadConfig",
    "RemoteWriteConfig",
    "Size",
    "TLSConfig",
    "load_config",
    "parse_config",
    "require_service_config",
    "service_problems",
]
