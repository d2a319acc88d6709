"""Backup readiness from Velero (`velero_backup_last_successful_timestamp`, `velero_backup_last_status`)
and GitOps drift from Argo CD (`argocd_app_info`, `argocd_cluster_connection_status`,
https://argo-cd.readthedocs.io/en/stable/operator-manual/metrics/), per cluster.
"""

from __future__ import annotations

from observe.generate.rules.catalogue.base import Fleet
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
