"""Simulated "cluster Prometheus" federation endpoints for the benchmark, in a process of their own so
that neither measured collector pays for rendering them.

    python -m bench.sim_sources --port 19000 --clusters bench-a,bench-b --series 100000

serves `/<cluster>/federate` with every series of a realistic simulated cluster (kube-state-metrics,
node-exporter, cAdvisor, apiserver, Istio...), each line with the request time as its timestamp, as a
Prometheus that scrapes faster than the collectors pull would.
"""

from __future__ import annotations

import argparse
import sys
import time

from aiohttp import web

from observe.demo.fleet import SimulatedCluster


def build_app(clusters: dict[str, SimulatedCluster]) -> web.Application:
    async def federate(request: web.Request) -> web.Response:
        name = request.match_info["cluster"]
        cluster = clusters.get(name)
        if cluster is None:
            raise web.HTTPNotFound(text=f"no cluster {name}\n")
        now = time.time()
        body = cluster.federate(now, external_labels={"prometheus": f"{name}/k8s"}, job="federate", instance="sim")
        return web.Response(text=body, content_type="text/plain", headers={"X-Series": str(cluster.series_count(now))})

    app = web.Application()
    app.router.add_get("/{cluster}/federate", federate)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clusters", default="bench-a,bench-b")
    p.add_argument("--series", type=int, default=100_000, help="series per cluster")
    args = p.parse_args(argv)
    clusters = {
        name: SimulatedCluster.for_series_count(name, args.series, seed=i)
        for i, name in enumerate(args.clusters.split(","))
    }
    print("ready", flush=True)
    web.run_app(build_app(clusters), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
