"""Loki ruler rules: LogQL recording rules (per-cluster log rates) and LogQL alerts.

Format: https://grafana.com/docs/loki/latest/alert/ (Prometheus' rule-file format with LogQL in `expr`).
The recording rules reach the central Prometheus through the Loki ruler's `remote_write`; the
Prometheus alert FleetClusterLogsMissing reads `fleet:cluster_log_lines:rate5m` there. Loki rules can
not be unit-tested with promtool: the tests parse every expression with Grafana's LogQL grammar.
"""

from __future__ import annotations

from observe.config import Config
from observe.generate.rules import recording as R
from observe.generate.rules.model import Alert, Group, Record, RuleFile, num
from observe.units import format_duration

# Every stream the collector shipped carries the cluster label; `=~".+"` selects them all (Loki needs a
# non-empty matcher). The error filter is a case-insensitive line match: cheap, and format-agnostic.
ALL_STREAMS = '{cluster=~".+"}'
ERROR_LINES = '|~ "(?i)(error|fatal|panic)"'


def loki_file(cfg: Config) -> RuleFile:
    a = cfg.alerts
    records = (
        Record(R.CLUSTER_LOG_LINES_RATE, f"sum by (cluster) (rate({ALL_STREAMS}[5m]))"),
        Record(R.CLUSTER_LOG_BYTES_RATE, f"sum by (cluster) (bytes_rate({ALL_STREAMS}[5m]))"),
        Record(R.CLUSTER_LOG_ERROR_LINES_RATE, f"sum by (cluster) (rate({ALL_STREAMS} {ERROR_LINES} [5m]))"),
    )
    alerts = (
        Alert(
            "FleetClusterLogErrorRatioHigh",
            f"sum by (cluster) (rate({ALL_STREAMS} {ERROR_LINES} [5m]))\n/\n"
            f"sum by (cluster) (rate({ALL_STREAMS}[5m]))\n> {num(a.log_error_ratio)}",
            "warning",
            "workload",
            "Many log lines of cluster {{ $labels.cluster }} are errors",
            "More than "
            + f"{a.log_error_ratio:.0%}"
            + " of the log lines from cluster {{ $labels.cluster }} mention error, fatal or panic, for "
            + format_duration(a.log_errors_for)
            + ".",
            "logs",
            for_=a.log_errors_for,
        ),
        Alert(
            "FleetWorkloadPanicking",
            f'sum by (cluster, namespace) (count_over_time({ALL_STREAMS} |= "panic: " [5m])) > 0',
            "warning",
            "workload",
            "Workloads in {{ $labels.cluster }}/{{ $labels.namespace }} panic",
            "Containers in namespace {{ $labels.namespace }} of cluster {{ $labels.cluster }} logged a Go "
            "`panic:` in the last 5 minutes: a process crashed and restarted.",
            "logs",
        ),
    )
    return RuleFile("fleet-logs", (Group("fleet-logs-recording", records), Group("fleet-logs", alerts)))
