"""Backup readiness from Velero (`velero_backup_last_successful_timestamp`, `velero_backup_last_status`)
and GitOps drift from Argo CD (`argocd_app_info`, `argocd_cluster_connection_status`,
https://argo-cd.readthedocs.io/en/stable/operator-manual/metrics/), per cluster.
"""

from __future__ import annotations

from observe.generate.rules.catalogue.base import Fleet
from observe.generate.rules.catalogue.cases import Case, CaseBuilder, Check, Ctx, clock, gauge_cases, sel
from observe.generate.rules.model import Alert, Group, num
from observe.units import format_duration

# -- backup readiness (Velero) and GitOps drift (Argo CD) ----------------------------------------------


def platform(f: Fleet) -> Group:
    a = f.cfg.alerts
    return Group(
        "platform",
        (
            Alert(
                "VeleroBackupTooOld",
                "time() - max by (cluster, schedule) "
                f'(velero_backup_last_successful_timestamp{{schedule!=""}}) > {num(a.backup_max_age)}',
                "warning",
                "platform",
                "Cluster {{ $labels.cluster }} has no recent backup ({{ $labels.schedule }})",
                "The last successful Velero backup of schedule {{ $labels.schedule }} in cluster "
                "{{ $labels.cluster }} is older than "
                + format_duration(a.backup_max_age)
                + ": a restore would lose more "
                "than the schedule promises.",
                "cluster",
                for_=a.backup_failed_for,
            ),
            Alert(
                "VeleroBackupFailed",
                'max by (cluster, schedule) (velero_backup_last_status{schedule!=""}) == 0',
                "warning",
                "platform",
                "The last backup of {{ $labels.schedule }} in cluster {{ $labels.cluster }} failed",
                "Velero's last backup of schedule {{ $labels.schedule }} in cluster {{ "
                "$labels.cluster }} did "
                "not succeed (a failed or unavailable backup location is the usual cause).",
                "cluster",
                for_=a.backup_failed_for,
            ),
            Alert(
                "ArgoCDAppOutOfSync",
                'max by (cluster, namespace, name, project) (argocd_app_info{sync_status="OutOfSync"}) == 1',
                "warning",
                "workload",
                "Argo CD app {{ $labels.name }} in cluster {{ $labels.cluster }} drifted from Git",
                "Application {{ $labels.namespace }}/{{ $labels.name }} (project {{ "
                "$labels.project }}) managed by "
                "Argo CD in cluster {{ $labels.cluster }} has been OutOfSync for "
                + format_duration(a.argocd_out_of_sync_for)
                + ": the cluster does not run what Git says.",
                "cluster",
                for_=a.argocd_out_of_sync_for,
            ),
            Alert(
                "ArgoCDAppUnhealthy",
                "max by (cluster, namespace, name, project) "
                '(argocd_app_info{health_status=~"Degraded|Missing"})'
                " == 1",
                "warning",
                "workload",
                "Argo CD app {{ $labels.name }} in cluster {{ $labels.cluster }} is unhealthy",
                "Application {{ $labels.namespace }}/{{ $labels.name }} managed by Argo CD in cluster "
                "{{ $labels.cluster }} is Degraded or Missing.",
                "cluster",
                for_=a.argocd_unhealthy_for,
            ),
            Alert(
                "ArgoCDClusterConnectionLost",
                "max by (cluster, server) (argocd_cluster_connection_status) == 0",
                "warning",
                "platform",
                "Argo CD in cluster {{ $labels.cluster }} lost {{ $labels.server }}",
                "Argo CD running in cluster {{ $labels.cluster }} cannot connect to the cluster API "
                "{{ $labels.server }}: nothing is synced there until it can.",
                "cluster",
                for_=a.argocd_connection_for,
            ),
        ),
    )


# -- promtool cases ------------------------------------------------------------------------------------


def _velero_old(c: Ctx) -> list[Case]:
    # A last success at -max_age is already too old at t=0; one that follows time() never is.
    at = c.after(c.a.backup_failed_for)
    n = c.n(at)
    metric, lbl = "velero_backup_last_successful_timestamp", {"schedule": "daily"}
    healthy = [(sel(metric, {"cluster": o} | lbl), clock(n)) for o in c.healthy]
    tgt = sel(metric, {"cluster": c.target} | lbl)
    fires = ({"cluster": c.target, "schedule": "daily", "severity": "warning"},)
    return [
        Case(
            (*healthy, (tgt, f"-{c.a.backup_max_age:g}x{n}")),
            (Check(at, "VeleroBackupTooOld", fires),),
            "old",
        ),
        Case((*healthy, (tgt, clock(n))), (Check(at, "VeleroBackupTooOld", ()),), "silent"),
    ]


def _argocd(c: Ctx, alert: str) -> list[Case]:
    app = {
        "namespace": "argocd",
        "name": "shop",
        "project": "default",
        "dest_server": "https://kubernetes.default.svc",
    }
    expect = {"cluster": c.target, "namespace": "argocd", "name": "shop", "project": "default"}
    if alert == "ArgoCDAppOutOfSync":
        bad, good, for_ = {"sync_status": "OutOfSync"}, {"sync_status": "Synced"}, c.a.argocd_out_of_sync_for
        rest = {"health_status": "Healthy"}
    else:
        bad, good, for_ = (
            {"health_status": "Degraded"},
            {"health_status": "Healthy"},
            c.a.argocd_unhealthy_for,
        )
        rest = {"sync_status": "Synced"}
    at = c.after(for_)
    n = c.n(at)
    healthy = [(sel("argocd_app_info", {"cluster": o} | app | good | rest), f"1x{n}") for o in c.healthy]
    tgt = {"cluster": c.target} | app | rest
    return [
        Case((*healthy, (sel("argocd_app_info", tgt | bad), f"1x{n}")),
             (Check(at, alert, (expect | {"severity": "warning"},)),), "fires"),
        Case((*healthy, (sel("argocd_app_info", tgt | good), f"1x{n}")), (Check(at, alert, ()),), "silent"),
    ]  # fmt: skip


CASES: dict[str, CaseBuilder] = {
    "VeleroBackupTooOld": _velero_old,
    "VeleroBackupFailed": lambda c: gauge_cases(
        c, "VeleroBackupFailed", "velero_backup_last_status", {"schedule": "daily"}, "0", "1", "warning",
        c.a.backup_failed_for,
    ),
    "ArgoCDAppOutOfSync": lambda c: _argocd(c, "ArgoCDAppOutOfSync"),
    "ArgoCDAppUnhealthy": lambda c: _argocd(c, "ArgoCDAppUnhealthy"),
    "ArgoCDClusterConnectionLost": lambda c: gauge_cases(
        c, "ArgoCDClusterConnectionLost", "argocd_cluster_connection_status",
        {"server": "https://api.spoke.example:6443"}, "0", "1", "warning", c.a.argocd_connection_for,
    ),
}  # fmt: skip
