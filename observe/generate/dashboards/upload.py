"""Upload generated dashboards to Grafana through grafana-client, idempotently.

Grafana HTTP API (https://grafana.com/docs/grafana/latest/developers/http_api/): `GET /api/health`,
`GET|POST /api/folders`, `GET /api/datasources/uid/:uid`, `GET /api/dashboards/uid/:uid`,
`POST /api/dashboards/db` with `overwrite: true` (an upsert on the dashboard's uid).

A dashboard whose stored JSON (less `id` and `version`) already equals ours, in our folder, is left alone,
so a second run changes nothing (Grafana would otherwise bump the version on every overwrite).
Errors from grafana-client and niquests are translated here, once, into `UploadError`; the token never
appears in a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from observe.config import Config, GrafanaConfig
from observe.errors import ObserveError

Progress = Callable[[int, int, str], None]
"""Called as `progress(done, total, title)` after each dashboard."""

_T = TypeVar("_T")
_MESSAGE = "observe dashboards (generated)"


class UploadError(ObserveError):
    """Grafana refused or could not be reached; the message says which Grafana, what failed and why."""


@dataclass
class UploadReport:
    url: str
    folder_uid: str
    folder_created: bool = False
    created: list[str] = field(default_factory=list)  # dashboard uids
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def folder_uid(title: str) -> str:
    """A stable folder uid from its title. Grafana uids are at most 40 of [A-Za-z0-9_-], and folders once
    shared the dashboards' uid space, so the `observe-folder-` prefix keeps clear of dashboard uids."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "default"
    return ("observe-folder-" + slug)[:40].rstrip("-")


def upload_dashboards(
    cfg: Config, paths: Sequence[Path], *, progress: Progress | None = None
) -> UploadReport:
    """Create the folder if missing and upsert every dashboard file into it; raises UploadError."""
    dashboards = [_read(p) for p in paths]
    g = cfg.grafana
    api = _connect(g)
    try:
        return _upload(cfg, api, dashboards, progress)
    finally:
        api.client.s.close()  # the niquests session's pooled connections


def _upload(
    cfg: Config, api: GrafanaApi, dashboards: list[dict[str, Any]], progress: Progress | None
) -> UploadReport:
    g = cfg.grafana
    report = UploadReport(url=g.url, folder_uid=folder_uid(g.folder))
    call = _Caller(g)
    # GET /api/health needs no credentials: it tells "unreachable" apart from "bad token".
    call(partial(api.client.GET, "/health"), "check health")
    _check_datasources(cfg, api, call, report)
    report.folder_uid, report.folder_created = _ensure_folder(g, api, call, report.folder_uid)

    for i, dash in enumerate(dashboards, start=1):
        uid = str(dash["uid"])
        existing = call(partial(_get_dashboard, api, uid), f"read dashboard {uid!r}")
        if existing is not None and _same(existing, dash, report.folder_uid):
            report.unchanged.append(uid)
        else:
            (report.created if existing is None else report.updated).append(uid)
            payload = {
                "dashboard": {**dash, "id": None},
                "folderUid": report.folder_uid,
                "overwrite": True,  # an upsert on the stable uid
                "message": _MESSAGE,
            }
            call(partial(api.dashboard.update_dashboard, payload), f"save dashboard {uid!r}")
        if progress is not None:
            progress(i, len(dashboards), str(dash.get("title", uid)))
    return report


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UploadError(f"{path}: not a readable dashboard JSON file: {exc}") from exc
    if not isinstance(data, dict) or not data.get("uid"):
        raise UploadError(f"{path}: a dashboard needs a top-level 'uid'")
    return data


def _connect(g: GrafanaConfig) -> GrafanaApi:
    token = g.token()
    credential = token.value() if token is not None else None  # ConfigError if the file/env is missing
    url = urlsplit(g.url)
    verify: bool | str = True
    if g.tls.insecure_skip_verify:
        verify = False
    elif g.tls.ca_file is not None:
        verify = str(g.tls.ca_file)
    # Built by hand, not with GrafanaApi.from_url: a sub-path needs its trailing slash
    # (grafana-client joins "<prefix>api"), and "https://grafana.example.com/grafana" is common.
    prefix = url.path.strip("/")
    api = GrafanaApi(
        credential,
        host=url.hostname,
        port=url.port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=url.scheme,
        verify=verify,
        timeout=g.timeout,
    )
    if g.tls.cert_file is not None and g.tls.key_file is not None:
        api.client.s.cert = (str(g.tls.cert_file), str(g.tls.key_file))
    return api


class _Caller:
    """The one place where grafana-client's and niquests' exceptions become UploadError."""

    def __init__(self, g: GrafanaConfig) -> None:
        self._url = g.url
        token = g.token()
        self._token_origin = token.origin if token is not None else "no token configured (grafana.token_file)"

    def __call__(self, fn: Callable[[], _T], what: str) -> _T:
        where = f"Grafana at {self._url}"
        try:
            return fn()
        except GrafanaUnauthorizedError as exc:
            raise UploadError(
                f"{where} rejected the credentials (401 Unauthorized) on {what}: "
                f"token from {self._token_origin}; "
                "check it is a valid service-account token"
            ) from exc
        except GrafanaTimeoutError as exc:
            raise UploadError(f"{where} did not answer in time on {what}: {exc.message}") from exc
        except GrafanaClientError as exc:
            if exc.status_code == 403:
                raise UploadError(
                    f"{where} refused {what} (403 Forbidden): the token ({self._token_origin}) "
                    "needs the Editor "
                    "role on the folder (dashboards:write, folders:create)"
                ) from exc
            raise UploadError(f"{where} refused {what}: {exc.message}") from exc
        except GrafanaServerError as exc:
            raise UploadError(f"{where} failed on {what}: {exc.message}") from exc
        except GrafanaException as exc:
            raise UploadError(f"cannot reach {where} ({what}): {exc.message}") from exc
        except niquests.exceptions.RequestException as exc:
            raise UploadError(f"cannot reach {where} ({what}): {type(exc).__name__}: {exc}") from exc


def _check_datasources(cfg: Config, api: GrafanaApi, call: _Caller, report: UploadReport) -> None:
    """The dashboards default to these datasource uids: say so before uploading dashboards showing nothing."""
    g = cfg.grafana
    wanted = [("grafana.prometheus_datasource_uid", g.prometheus_datasource_uid)]
    uses_loki = cfg.central.loki is not None or any(c.loki is not None for c in cfg.clusters)
    if uses_loki:
        wanted.append(("grafana.loki_datasource_uid", g.loki_datasource_uid))
    missing = []
    for key, uid in wanted:
        try:
            call(partial(api.datasource.get_datasource_by_uid, uid), f"read datasource {uid!r}")
        except UploadError as exc:
            status = getattr(exc.__cause__, "status_code", None)
            if status == 404:
                missing.append(f"{uid!r} ({key})")
            elif status == 403:
                report.warnings.append(
                    f"cannot verify datasource {uid!r}: the token may not read datasources"
                )
            else:
                raise
    if missing:
        raise UploadError(
            f"Grafana at {g.url} has no datasource with uid {', '.join(missing)}: provision it "
            "(see deploy/grafana/provisioning/datasources/) or set the uid in the config"
        )


def _ensure_folder(g: GrafanaConfig, api: GrafanaApi, call: _Caller, uid: str) -> tuple[str, bool]:
    """Our folder by its stable uid, else an existing folder with the configured title, else a new one."""
    folders = call(api.folder.get_all_folders, "list folders")
    for f in folders or []:
        if f.get("uid") == uid:
            return uid, False
    for f in folders or []:
        if f.get("title") == g.folder:
            return str(f["uid"]), False
    call(partial(api.folder.create_folder, g.folder, uid=uid), f"create folder {g.folder!r}")
    return uid, True


def _get_dashboard(api: GrafanaApi, uid: str) -> dict[str, Any] | None:
    try:
        got: dict[str, Any] = api.dashboard.get_dashboard(uid)  # type: ignore[no-untyped-call]
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise
    return got


def _same(existing: dict[str, Any], ours: dict[str, Any], folder: str) -> bool:
    stored = {k: v for k, v in existing.get("dashboard", {}).items() if k not in ("id", "version")}
    mine = {k: v for k, v in ours.items() if k not in ("id", "version")}
    return bool(stored == mine and existing.get("meta", {}).get("folderUid") == folder)
