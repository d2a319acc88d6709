"""Simulated clusters for `observe demo`, the tests and the benchmark.

fleet.py       SimulatedCluster: one cluster's series, healthy or in an outage (the public face)
topology.py    its nodes, namespaces, deployments and pods, and the seeded source of its constants
kubernetes.py  kube-state-metrics, node-exporter, cAdvisor and kube-apiserver series
addons.py      Istio, Velero, Argo CD and k8gb series
series.py      the series table and its renderings (`/metrics` text format, `/federate`)
serve.py       SimulatedPrometheus / SimulatedFleet: those clusters over HTTP on loopback
run.py         `observe demo`: the real collector against them, into the embedded Parquet store
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from observe.demo.run import run_demo

__all__ = ["run_demo"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import observe.demo.fleet` (tests, benchmark) does not load the collector's CLI side,
    # and `python -m observe.demo.fleet` runs without the package having imported it first.
    if name == "run_demo":
        from observe.demo.run import run_demo

        return run_demo
    raise AttributeError(f"module 'observe.demo' has no attribute {name!r}")
