"""One pipeline per (cluster, signal): source -> normalize/relabel -> encode -> durable queue -> delivery -> sink.

    base.py         the `Pipeline` protocol, `Outcome`, and the one way to open a queue, build a normalizer
                    and append a cycle
    centre.py       the central sinks, shared, and the one way a pipeline's queue gets its `Delivery`
    remote_read.py  a cluster's Prometheus through remote-read (raw samples, durable cursor, backfill), with
                    federation as its fallback
    metrics.py      a cluster's Prometheus through /federate (`protocol: federate`)
    logs.py         a cluster's Loki through query_range, with durable cursors
    own_metrics.py  the collector's own metrics, shipped like a cluster's

The collector (`observe/service.py`) holds a flat list of pipelines and supervises them alike. A new
source kind or signal is one new module here with `wanted(cluster)`, `open(...)` and the protocol's
methods, and one entry in `KINDS`.
"""

from observe.pipeline.base import Key, Outcome, Pipeline
from observe.pipeline.logs import LogsPipeline
from observe.pipeline.metrics import MetricsPipeline
from observe.pipeline.remote_read import RemoteReadPipeline

KINDS = (RemoteReadPipeline, MetricsPipeline, LogsPipeline)
"""The pipeline kinds a configured cluster may have; each says whether it `wanted` the cluster."""

__all__ = ["KINDS", "Key", "LogsPipeline", "MetricsPipeline", "Outcome", "Pipeline", "RemoteReadPipeline"]
