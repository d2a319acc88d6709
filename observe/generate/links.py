"""Stable identities shared by the dashboard and rule generators, so links can never disagree.

Dashboard uids are fixed: links and bookmarks survive regeneration, and alerts deep-link to them.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

DASHBOARD_UIDS: Final[dict[str, str]] = {
    "fleet": "observe-fleet",
    "cluster": "observe-cluster",
    "failover": "observe-failover",
    "logs": "observe-logs",
    "collector": "observe-collector",
}


def dashboard_url(grafana_url: str, dashboard: str, *, cluster: str | None = None) -> str:
    """URL of a generated dashboard; `cluster` may be a template such as `{{ $labels.cluster }}`."""
    uid = DASHBOARD_UIDS[dashboard]
    url = f"{grafana_url.rstrip('/')}/d/{uid}/{uid}"
    if cluster is not None:
        # Alert templates are left unescaped so Alertmanager/Grafana expand them; plain names are quoted.
        value = cluster if "{{" in cluster else quote(cluster, safe="")
        url += f"?var-cluster={value}"
    return url
