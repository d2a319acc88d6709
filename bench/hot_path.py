"""The collector's hot path alone: one simulated cluster's federation body through the series cache
(split, cache lookup, value and timestamp parse, protobuf encode, snappy), cold and warm.

    .venv/bin/python -m bench.hot_path [--series 100000]

Cold is the first cycle (every series parsed, stamped, relabelled and label-encoded once); warm is
every later cycle, which is what the collector spends its life doing. CPU time, so noise from other
processes matters less than wall time would.
"""

from __future__ import annotations

import argparse
import sys
import time

from observe.demo.fleet import SimulatedCluster
from observe.transform.normalize import Normalizer
from observe.transform.relabel import RelabelConfig, Relabeler
from observe.transform.series_cache import SeriesCache


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100_000)
    p.add_argument("--cycles", type=int, default=5)
    args = p.parse_args(argv)
    cluster = SimulatedCluster.for_series_count("bench-a", args.series)
    now = time.time()
    bodies = [
        # bytes, as the source hands them over (PrometheusFederateSource.pull_body)
        cluster.federate(now + 15 * i, external_labels={"prometheus": "k8s"}, job="federate", instance="sim").encode()
        for i in range(args.cycles + 1)
    ]
    relabel = Relabeler([RelabelConfig(source_labels=["__name__"], regex="go_gc_.*", action="drop")])
    cache = SeriesCache(
        Normalizer(cluster_label="cluster", cluster="bench-a", static_labels={"region": "eu"}, relabeler=relabel),
        max_samples_per_send=2000,
    )
    t = time.process_time()
    first = cache.process(bodies[0], int(now * 1000))
    cold = time.process_time() - t
    warm: list[float] = []
    for i, body in enumerate(bodies[1:], 1):
        t = time.process_time()
        cache.process(body, int((now + 15 * i) * 1000))
        warm.append(time.process_time() - t)
    best = min(warm)
    print(f"{first.series:,} series, {sum(len(p) for p, _ in first.payloads) / 2**20:.1f} MiB snappy per cycle")
    print(f"cold cycle: {cold:.3f} CPU-s ({cold / first.series * 1e6:.2f} µs/series)")
    print(f"warm cycle: {best:.3f} CPU-s best of {len(warm)} ({best / first.series * 1e6:.2f} µs/sample, "
          f"{best / first.series * 1e6:.2f} CPU-s per million samples)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
