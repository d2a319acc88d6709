"""A fake Grafana HTTP API, following Grafana's documented endpoints (no Grafana can be installed here).

https://grafana.com/docs/grafana/latest/developers/http_api/ — health, folder, dashboard, data source and
search APIs, with Grafana's answers: 401 `{"message": "Invalid API key"}` for a bad bearer token, 404
for an unknown uid, `POST /api/dashboards/db` creating or (with `overwrite: true`) replacing a dashboard
by uid and bumping its `version`, `412 version-mismatch` without overwrite. Every request is recorded.
It runs an aiohttp server on 127.0.0.1 in a thread of its own, because the uploader is synchronous.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers import free_port


@dataclass
class GrafanaState:
    token: str
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> datasource
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> folder
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {"dashboard", "folderUid"}
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    next_id: int = 1

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in ("POST", "PUT", "DELETE")]


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def make_app(state: GrafanaState) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        state.requests.append((request.method, request.path))
        if (
            not request.path.endswith("/api/health")
            and request.headers.get("Authorization") != f"Bearer {state.token}"
        ):
            return _json(401, {"message": "Invalid API key", "traceID": ""})
        resp: web.StreamResponse = await handler(request)
        return resp

    async def health(_: web.Request) -> web.Response:
        return _json(200, {"commit": "fake", "database": "ok", "version": "11.6.0"})

    async def get_datasource(request: web.Request) -> web.Response:
        ds = state.datasources.get(request.match_info["uid"])
        return _json(200, ds) if ds else _json(404, {"message": "Data source not found"})

    async def list_folders(_: web.Request) -> web.Response:
        return _json(
            200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in state.folders.values()]
        )

    async def get_folder(request: web.Request) -> web.Response:
        f = state.folders.get(request.match_info["uid"])
        return _json(200, f) if f else _json(404, {"message": "folder not found"})

    async def create_folder(request: web.Request) -> web.Response:
        body = await request.json()
        uid = body.get("uid") or f"gen{state.next_id}"
        if uid in state.folders or any(f["title"] == body["title"] for f in state.folders.values()):
            return _json(409, {"message": "a folder with the same name or uid already exists"})
        folder = {
            "id": state.next_id,
            "uid": uid,
            "title": body["title"],
            "url": f"/dashboards/f/{uid}/",
            "version": 1,
        }
        state.next_id += 1
        state.folders[uid] = folder
        return _json(200, folder)

    async def get_dashboard(request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        stored = state.dashboards.get(uid)
        if stored is None:
            return _json(404, {"message": "Dashboard not found"})
        dash = stored["dashboard"]
        meta = {
            "folderUid": stored["folderUid"],
            "slug": uid,
            "url": f"/d/{uid}/{uid}",
            "version": dash["version"],
        }
        return _json(200, {"dashboard": copy.deepcopy(dash), "meta": meta})

    async def save_dashboard(request: web.Request) -> web.Response:
        body = await request.json()
        dash = copy.deepcopy(body["dashboard"])
        uid = dash.get("uid")
        folder = body.get("folderUid", "")
        if folder and folder not in state.folders:
            return _json(400, {"message": "folder not found"})
        old = state.dashboards.get(uid)
        if (
            old is not None
            and not body.get("overwrite")
            and dash.get("version") != old["dashboard"]["version"]
        ):
            return _json(
                412,
                {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"},
            )
        if old is None:
            dash["id"], dash["version"] = state.next_id, 1
            state.next_id += 1
        else:
            dash["id"], dash["version"] = old["dashboard"]["id"], old["dashboard"]["version"] + 1
        state.dashboards[uid] = {"dashboard": dash, "folderUid": folder}
        return _json(
            200,
            {
                "id": dash["id"],
                "uid": uid,
                "url": f"/d/{uid}/{uid}",
                "status": "success",
                "version": dash["version"],
                "slug": uid,
            },
        )

    async def search(request: web.Request) -> web.Response:
        folder_uids = request.query.getall("folderUIDs", [])
        hits = [
            {"uid": uid, "title": s["dashboard"]["title"], "type": "dash-db", "folderUid": s["folderUid"]}
            for uid, s in sorted(state.dashboards.items())
            if not folder_uids or s["folderUid"] in folder_uids
        ]
        return _json(200, hits)

    app = web.Application(middlewares=[auth])
    app.add_routes(
        [
            web.get("/api/health", health),
            web.get("/api/datasources/uid/{uid}", get_datasource),
            web.get("/api/folders", list_folders),
            web.get("/api/folders/{uid}", get_folder),
            web.post("/api/folders", create_folder),
            web.get("/api/dashboards/uid/{uid}", get_dashboard),
            web.post("/api/dashboards/db", save_dashboard),
            web.get("/api/search", search),
        ]
    )
    return app


@contextmanager
def running_grafana_fake(state: GrafanaState, *, sub_path: str = "") -> Iterator[str]:
    """Serve the fake on a free loopback port in a background thread; yields its base URL.

    `sub_path` ("/grafana") serves it below a path, as Grafana does with `root_url` behind a proxy.
    """
    loop = asyncio.new_event_loop()
    port = free_port()
    app = make_app(state)
    if sub_path:
        root = web.Application()
        root.add_subapp(sub_path, app)
        app = root
    runner = web.AppRunner(app)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="grafana-api-fake", daemon=True)
    thread.start()
    assert started.wait(10), "the Grafana API fake did not start"
    try:
        yield f"http://127.0.0.1:{port}{sub_path}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
