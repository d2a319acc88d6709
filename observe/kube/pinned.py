"""`pin_pod: true`: a cluster's Prometheus read from one ready pod of its Service, failing over to the next.

The API server's service proxy picks an endpoint per request, so an HA pair's replicas alternate between
pulls (two histories, and with remote-read two cursors' worth of samples interleaved). These sources go
through the pod proxy to the pod `PinnedPods` chose (the first ready one by name), stay there while it
answers, and move to the next ready pod the moment it fails, within the same read. They are the
ordinary sources with their base URL set per attempt: the pods behind a Service come and go, so the
list is looked up at run time (`GET .../endpoints/<name>`), not fixed when the pipeline opens.
"""

from __future__ import annotations

import logging

import aiohttp

from observe.config import PrometheusSourceConfig
from observe.kube.api_server import APIServer, PinnedPods
from observe.kube.service_ref import ServiceRef
from observe.sources.prometheus_federate import PrometheusFederateSource
from observe.sources.prometheus_remote_read import (
    PrometheusRemoteReadSource,
    ReadResult,
    RemoteReadUnsupported,
    WindowTooLarge,
)

__all__ = ["PinnedFederateSource", "PinnedRemoteReadSource"]

log = logging.getLogger("observe.kube.pinned")


class PinnedRemoteReadSource(PrometheusRemoteReadSource):
    """Remote-read from the pinned pod of `ref` (`base_url` is that pod's proxy URL after each read)."""

    def __init__(
        self,
        cluster: str,
        cfg: PrometheusSourceConfig,
        session: aiohttp.ClientSession,
        *,
        api: APIServer,
        ref: ServiceRef,
    ) -> None:
        super().__init__(cluster, cfg, session, url=api.service_url(ref), via=api)
        self.pods = PinnedPods(api, ref, session)

    async def read(self, start_ms: int, end_ms: int) -> ReadResult:
        before = self.pods.current

        async def on(base_url: str) -> ReadResult:
            self.set_base_url(base_url)
            return await PrometheusRemoteReadSource.read(self, start_ms, end_ms)

        # The source's own verdicts hold for every replica: not a reason to move to another pod.
        result = await self.pods.attempt(on, passthrough=(RemoteReadUnsupported, WindowTooLarge))
        _pinned(self.cluster, before, self.pods)
        return result


class PinnedFederateSource(PrometheusFederateSource):
    """Federation from the pinned pod of `ref`."""

    def __init__(
        self,
        cluster: str,
        cfg: PrometheusSourceConfig,
        session: aiohttp.ClientSession,
        *,
        api: APIServer,
        ref: ServiceRef,
    ) -> None:
        super().__init__(cluster, cfg, session, url=api.service_url(ref), via=api)
        self.pods = PinnedPods(api, ref, session)

    async def pull_body(self) -> bytearray:
        before = self.pods.current

        async def on(base_url: str) -> bytearray:
            self.set_base_url(base_url)
            return await PrometheusFederateSource.pull_body(self)

        result = await self.pods.attempt(on)
        _pinned(self.cluster, before, self.pods)
        return result


def _pinned(cluster: str, before: object, pods: PinnedPods) -> None:
    """Say once when the pin moves (start, or a failover), never per request."""
    if pods.current != before and pods.current is not None:
        extra = {"cluster": cluster, "service": str(pods.ref), "pod": pods.current.pod}
        if before is None:
            log.info("pinned to a pod of the service", extra=extra)
        else:
            log.warning("pinned pod failed: failed over to the next ready pod", extra=extra)
