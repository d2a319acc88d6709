"""The collector's own logs, shipped to the central Loki with `loki-logger-handler`.

Library: https://pypi.org/project/loki-logger-handler/ (pushes JSON to `/loki/api/v1/push`).
Every record of the `observe` logger becomes one JSON line in the stream
`{self_cluster="<self_cluster>", app="observe"}`, next to the fleet's logs but never mixed into a
cluster's streams (those carry `cluster`). Opt out with `logs.ship_own_logs: false`.

Never blocking: `emit` only appends to an in-memory buffer; a daemon thread posts the buffer every
`FLUSH_INTERVAL` seconds. The library leaves two things unbounded, bounded here:
- its requests session has no timeout, so a central Loki that accepts connections and never answers
  would stall the flush thread for ever while the buffer grows: every request gets `REQUEST_TIMEOUT`;
- its buffer has no cap: past `MAX_BUFFERED` records, new ones are dropped (and counted in `dropped`).
A batch that fails to send is dropped by the library (these are diagnostics, not the fleet's data);
the same lines are still on stderr.

The `Authorization` header is read once at start: a rotated token file takes a restart to be used here
(the data path re-reads it per request).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import requests
from loki_logger_handler.loki_logger_handler import LokiLoggerHandler
from requests.adapters import HTTPAdapter

from observe.config import Config
from observe.errors import ConfigError
from observe.http import auth_headers, safe_url

__all__ = ["FLUSH_INTERVAL", "MAX_BUFFERED", "REQUEST_TIMEOUT", "ship_own_logs", "stop_shipping"]

FLUSH_INTERVAL: Final = 5.0
REQUEST_TIMEOUT: Final = 5.0
MAX_BUFFERED: Final = 10_000  # ~5 MB of JSON lines: minutes of a noisy collector, seconds of a runaway one

log = logging.getLogger("observe.own_logs")


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request of the session a timeout (requests has no session-wide default)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = REQUEST_TIMEOUT
        return super().send(request, **kwargs)


class OwnLogsHandler(LokiLoggerHandler):  # type: ignore[misc]
    """LokiLoggerHandler with a capped buffer; `dropped` counts records refused past the cap."""

    def __init__(self, *args: Any, max_buffered: int = MAX_BUFFERED, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_buffered = max_buffered
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.buffer.qsize() >= self.max_buffered:
            self.dropped += 1
            return
        super().emit(record)


def ship_own_logs(cfg: Config, *, logger: str = "observe") -> OwnLogsHandler | None:
    """Attach the handler to `logger` when `central.loki` is set and shipping is on; None otherwise."""
    central = cfg.central.loki
    if central is None or not cfg.logs.ship_own_logs:
        return None
    try:
        headers = {**central.headers, **auth_headers(central)}
    except ConfigError as exc:
        log.warning(
            "own logs are not shipped: cannot read the central Loki credentials", extra={"error": str(exc)}
        )
        return None
    if central.tenant:
        headers["X-Scope-OrgID"] = central.tenant
    handler = OwnLogsHandler(
        url=central.url,
        labels={"self_cluster": cfg.self_cluster, "app": "observe"},
        additional_headers=headers,
        timeout=FLUSH_INTERVAL,
        compressed=True,
    )
    session: requests.Session = handler.request.session
    session.trust_env = False  # as for the data path: no proxies from the environment
    adapter = _TimeoutAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    tls = central.tls
    if tls.insecure_skip_verify:
        session.verify = False
    elif tls.ca_file is not None:
        session.verify = str(tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        session.cert = (str(tls.cert_file), str(tls.key_file))
    handler.setLevel(logging.INFO)
    logging.getLogger(logger).addHandler(handler)
    log.info("own logs shipped to the central Loki", extra={"url": safe_url(central.url)})
    return handler


def stop_shipping(handler: OwnLogsHandler | None, *, logger: str = "observe") -> None:
    """Detach the handler; what is buffered goes out with the library's next flush or at exit."""
    if handler is not None:
        logging.getLogger(logger).removeHandler(handler)
        handler.flush_event.set()
