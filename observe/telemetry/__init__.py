"""The collector's own telemetry: what it counts and exports about itself.

    events.py       every self-metric, and one function per notable event (count + one structured line)
    own_metrics.py  the registry encoded as remote-write payloads, shipped to the centre like any cluster's
    own_logs.py     the collector's own log records, shipped to the central Loki
    log_format.py   text or JSON log lines on stderr

Reasons (`DROP_*`, `FAIL_*`) live in `observe.reasons`, so the layers that raise them need not import this.
"""

from observe.telemetry.events import Telemetry

__all__ = ["Telemetry"]
