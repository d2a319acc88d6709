"""`upload_dashboards` against a fake of Grafana's documented HTTP API (tests/grafana_api_fake.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from observe.config import Config, parse_config
from observe.errors import ConfigError
from observe.generate.dashboards import UploadError, folder_uid, upload_dashboards, write_dashboards
from observe.generate.links import DASHBOARD_UIDS
from tests.grafana_api_fake import GrafanaState, running_grafana_fake
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glsa_fake_service_account_token_123"


def _cfg(url: str, token_file: Path, *, loki: bool = True) -> Config:
    raw = yaml.safe_load((ROOT / "deploy" / "observe.example.yaml").read_text())
    raw["grafana"] = {"url": url, "token_file": str(token_file), "folder": "Fleet", "timeout": "5s"}
    if not loki:
        raw.pop("central")
        for c in raw["clusters"]:
            c.pop("loki", None)
    return parse_config(raw)


@pytest.fixture
def state() -> GrafanaState:
    s = GrafanaState(token=TOKEN)
    s.datasources["observe-prometheus"] = {
        "uid": "observe-prometheus",
        "type": "prometheus",
        "name": "Fleet metrics",
    }
    s.datasources["observe-loki"] = {"uid": "observe-loki", "type": "loki", "name": "Fleet logs"}
    return s


@pytest.fixture
def grafana(state: GrafanaState) -> Iterator[str]:
    with running_grafana_fake(state) as url:
        yield url


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    p = tmp_path / "grafana-token"
    p.write_text(TOKEN + "\n")
    return p


@pytest.fixture
def files(tmp_path: Path, grafana: str, token_file: Path) -> list[Path]:
    return write_dashboards(_cfg(grafana, token_file), tmp_path / "dashboards")


def test_grafana_api_fake_upload_creates_folder_and_every_dashboard(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path]
) -> None:
    seen: list[tuple[int, int, str]] = []
    report = upload_dashboards(_cfg(grafana, token_file), files, progress=lambda *a: seen.append(a))
    assert report.folder_created and report.folder_uid == folder_uid("Fleet")
    assert sorted(report.created) == sorted(DASHBOARD_UIDS.values())
    assert report.updated == [] and report.unchanged == [] and report.warnings == []
    assert state.folders[report.folder_uid]["title"] == "Fleet"
    assert {uid: s["folderUid"] for uid, s in state.dashboards.items()} == {
        uid: report.folder_uid for uid in DASHBOARD_UIDS.values()
    }
    assert [s[:2] for s in seen] == [(i, 5) for i in range(1, 6)]
    assert seen[0][2] == "Fleet overview"


def test_grafana_api_fake_second_upload_changes_nothing(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path]
) -> None:
    cfg = _cfg(grafana, token_file)
    upload_dashboards(cfg, files, progress=None)
    versions = {uid: s["dashboard"]["version"] for uid, s in state.dashboards.items()}
    writes_before = len(state.writes())
    report = upload_dashboards(cfg, files, progress=None)
    assert not report.folder_created and report.created == [] and report.updated == []
    assert sorted(report.unchanged) == sorted(DASHBOARD_UIDS.values())
    assert len(state.writes()) == writes_before, "an unchanged dashboard must not be saved again"
    assert {uid: s["dashboard"]["version"] for uid, s in state.dashboards.items()} == versions


def test_grafana_api_fake_changed_dashboard_is_overwritten_by_uid(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path], tmp_path: Path
) -> None:
    cfg = _cfg(grafana, token_file)
    upload_dashboards(cfg, files, progress=None)
    # Someone edited the fleet dashboard in the UI: the next upload puts ours back, one version later.
    state.dashboards["observe-fleet"]["dashboard"]["title"] = "edited by hand"
    report = upload_dashboards(cfg, files, progress=None)
    assert report.updated == ["observe-fleet"]
    stored = state.dashboards["observe-fleet"]["dashboard"]
    assert stored["title"] == "Fleet overview" and stored["version"] == 2
    assert len(state.dashboards) == 5


def test_grafana_api_fake_existing_folder_with_the_title_is_reused(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path]
) -> None:
    state.folders["abc123"] = {"id": 99, "uid": "abc123", "title": "Fleet"}
    report = upload_dashboards(_cfg(grafana, token_file), files, progress=None)
    assert report.folder_uid == "abc123" and not report.folder_created
    assert {s["folderUid"] for s in state.dashboards.values()} == {"abc123"}


def test_grafana_api_fake_bad_token_is_a_clear_401_error_without_the_token(
    state: GrafanaState, grafana: str, tmp_path: Path, files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("glsa_wrong_secret_value")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UploadError) as exc:
        upload_dashboards(_cfg(grafana, bad), files, progress=None)
    msg = str(exc.value)
    assert "401" in msg and grafana in msg and str(bad) in msg
    assert "glsa_wrong_secret_value" not in msg and "glsa_wrong_secret_value" not in caplog.text
    assert state.writes() == []


def test_grafana_api_fake_missing_datasource_is_named(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path]
) -> None:
    del state.datasources["observe-loki"]
    with pytest.raises(
        UploadError, match=r"no datasource with uid 'observe-loki' \(grafana.loki_datasource_uid\)"
    ):
        upload_dashboards(_cfg(grafana, token_file), files, progress=None)
    assert state.writes() == []


def test_grafana_api_fake_loki_datasource_not_required_without_loki(
    state: GrafanaState, grafana: str, token_file: Path, files: list[Path]
) -> None:
    del state.datasources["observe-loki"]
    report = upload_dashboards(_cfg(grafana, token_file, loki=False), files, progress=None)
    assert len(report.created) == 5


def test_grafana_api_fake_below_a_sub_path(state: GrafanaState, tmp_path: Path, token_file: Path) -> None:
    with running_grafana_fake(state, sub_path="/grafana") as url:
        cfg = _cfg(url, token_file)
        report = upload_dashboards(cfg, write_dashboards(cfg, tmp_path / "d"), progress=None)
    assert len(report.created) == 5
    assert ("POST", "/grafana/api/dashboards/db") in state.requests


def test_unreachable_grafana_is_a_clear_error(tmp_path: Path, token_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = _cfg(url, token_file)
    paths = write_dashboards(cfg, tmp_path / "d")
    with pytest.raises(UploadError, match=rf"cannot reach Grafana at {url}"):
        upload_dashboards(cfg, paths, progress=None)


def test_missing_token_file_is_a_config_error(tmp_path: Path, grafana: str, files: list[Path]) -> None:
    with pytest.raises(ConfigError, match="grafana-token-missing"):
        upload_dashboards(_cfg(grafana, tmp_path / "grafana-token-missing"), files, progress=None)


def test_not_a_dashboard_file_is_named(tmp_path: Path, grafana: str, token_file: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"title": "no uid"}')
    with pytest.raises(UploadError, match=r"x.json: a dashboard needs a top-level 'uid'"):
        upload_dashboards(_cfg(grafana, token_file), [bad], progress=None)


def _config_file(tmp_path: Path, url: str, token_file: Path) -> Path:
    raw = yaml.safe_load((ROOT / "deploy" / "observe.example.yaml").read_text())
    raw["grafana"] = {"url": url, "token_file": str(token_file), "folder": "Fleet", "timeout": "5s"}
    path = tmp_path / "observe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_dashboards_upload_to_grafana_api_fake(
    state: GrafanaState, grafana: str, token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from observe.cli import main

    cfg_path = _config_file(tmp_path, grafana, token_file)
    out = tmp_path / "out"
    assert main(["dashboards", "-c", str(cfg_path), "-o", str(out), "--upload"]) == 0
    assert "5 created, 0 updated, 0 unchanged" in " ".join(
        capsys.readouterr().out.split()
    )  # rich wraps lines
    assert main(["dashboards", "-c", str(cfg_path), "-o", str(out), "--upload"]) == 0
    assert "0 created, 0 updated, 5 unchanged" in " ".join(capsys.readouterr().out.split())
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{uid}.json" for uid in DASHBOARD_UIDS.values())


def test_cli_dashboards_upload_bad_token_exits_1_with_grafana_api_fake(
    state: GrafanaState, grafana: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from observe.cli import main

    bad = tmp_path / "bad-token"
    bad.write_text("glsa_not_the_right_one")
    code = main(
        ["dashboards", "-c", str(_config_file(tmp_path, grafana, bad)), "-o", str(tmp_path / "o"), "--upload"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "401" in captured.err and "glsa_not_the_right_one" not in captured.err + captured.out
