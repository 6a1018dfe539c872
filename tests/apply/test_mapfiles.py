"""Map files: checked with their config before anything is in place, written like it.

The config's map block (servicerouter.render.routing) says what the files hold;
haproxy.check_candidate validates the config with the new maps in a private directory, then
apply_config writes the maps (atomically, only those that changed, stale ones
removed) just before the config; a failed reload puts the old ones back with the
old config (tests/engine/test_one_shot_apply.py).  --dry writes the maps to a temporary directory the printed config reads.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from servicerouter.apply import haproxy, mapfiles
from servicerouter.model.services import build_model
from servicerouter.render.config import RenderOptions, render_config
from servicerouter.render.fragments import load_fragments
from tests.cli.test_cli import common, run_cli
from tests.harness import free_port, self_signed_cert


def config(tmp_path: Path, vhosts: dict[str, str], map_dir: str | None) -> str:
    apps = [{"id": f"/{name}", "ports": [10000 + index],
             "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_MODE": "http",
                        "HAPROXY_0_VHOST": vhost, "HAPROXY_0_BIND_ADDR": "127.0.0.1"},
             "tasks": [{"id": f"{name}.1", "host": "127.0.0.1", "ports": [31000]}]}
            for index, (name, vhost) in enumerate(sorted(vhosts.items()))]
    model = build_model(apps, ["*"], lambda host: host)
    cert = tmp_path / "default.pem"
    if not cert.exists():
        self_signed_cert(cert)
    options = RenderOptions(bind_addr="127.0.0.1", http_port=free_port(), https_port=free_port(),
                            appid_port=free_port(), stats_port=free_port(),
                            default_cert=str(cert), map_dir=map_dir)
    return render_config(model.services, load_fragments(), options)


def test_a_fresh_host_gets_config_and_maps_validated_together(tmp_path: Path,
                                                              haproxy_bin: str) -> None:
    cfg = tmp_path / "etc" / "haproxy.cfg"
    cfg.parent.mkdir()
    map_dir = mapfiles.default_map_dir(str(cfg))
    text = config(tmp_path, {"a": "a.test", "b": "*.b.test"}, map_dir)
    # the maps do not exist yet where the config reads them: the check reads new ones
    assert haproxy.check_candidate(text, str(cfg), haproxy_bin, map_dir)[0]
    result = haproxy.apply_config(text, str(cfg), map_dir=map_dir)
    assert result.ok and result.written, result.error
    maps = Path(map_dir)
    assert sorted(p.name for p in maps.iterdir()) == [
        "appid-1-str.map", "http-1-beg.map", "http-2-end.map", "https-1-beg.map",
        "https-2-end.map"]
    assert (maps / "http-1-beg.map").read_text() == "a.test/ a_10000\n"
    assert (maps / "http-2-end.map").read_text() == ".b.test b_10001\n"
    assert not list(cfg.parent.glob(".sr-check-*")), "the check directory is removed"
    # the same config again: nothing written
    before = (maps / "http-1-beg.map").stat().st_mtime_ns
    assert not haproxy.apply_config(text, str(cfg), map_dir=map_dir).changed
    assert (maps / "http-1-beg.map").stat().st_mtime_ns == before
    # a map only changes: rewritten; a stale map of ours goes, anything else stays
    (maps / "http-9-beg.map").write_text("stale\n")
    (maps / "operator-notes.txt").write_text("keep\n")
    text2 = config(tmp_path, {"a": "a.test,c.test", "b": "*.b.test"}, map_dir)
    assert haproxy.apply_config(text2, str(cfg), map_dir=map_dir).ok
    assert (maps / "http-1-beg.map").read_text() == "a.test/ a_10000\nc.test/ a_10000\n"
    assert not (maps / "http-9-beg.map").exists()
    assert (maps / "operator-notes.txt").exists()


def test_a_rejected_config_is_checked_without_touching_the_maps_in_place(
        tmp_path: Path, haproxy_bin: str) -> None:
    """The engine checks before it writes: a rejected config's maps never reach map_dir."""
    cfg = tmp_path / "haproxy.cfg"
    map_dir = mapfiles.default_map_dir(str(cfg))
    good = config(tmp_path, {"a": "a.test"}, map_dir)
    assert haproxy.apply_config(good, str(cfg), map_dir=map_dir).ok
    bad = config(tmp_path, {"a": "a.test,new.test"}, map_dir).replace(
        "  mode http\n", "  mode nonsense\n", 1)
    ok, message = haproxy.check_candidate(bad, str(cfg), haproxy_bin, map_dir)
    assert not ok and "nonsense" in message
    assert cfg.read_text() == good
    assert (Path(map_dir) / "http-1-beg.map").read_text() == "a.test/ a_10000\n"


def test_check_text_reports_the_config_not_the_temporary_path(tmp_path: Path,
                                                             haproxy_bin: str) -> None:
    map_dir = str(tmp_path / "maps")
    text = config(tmp_path, {"a": "a.test"}, map_dir) + "frontend broken\n  bind\n"
    ok, message = mapfiles.check_text(text, map_dir, str(tmp_path), haproxy_bin)
    assert not ok and "<config>" in message and ".sr-check-" not in message
    assert not (tmp_path / "maps").exists()  # checking writes nothing in place


@pytest.mark.parametrize("extra", [[], ["--dont-bind-http-https"]])
def test_dry_prints_a_config_haproxy_accepts_with_its_maps_in_a_temp_dir(
        tmp_path: Path, haproxy_bin: str, extra: list[str]) -> None:
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": [
        {"id": "/web", "ports": [10001], "labels": {"HAPROXY_0_MODE": "http"},
         "tasks": [{"id": "web.1", "host": "127.0.0.1", "ports": [31000]}]},
        {"id": "/site", "ports": [10002], "labels": {"HAPROXY_0_MODE": "http",
                                                     "HAPROXY_0_VHOST": "site.test"},
         "tasks": [{"id": "site.1", "host": "127.0.0.1", "ports": [31001]}]}]}))
    proc = run_cli("-m", f"file:{snapshot}", *common(tmp_path), "--dry", "--group", "*",
                   *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "haproxy.cfg.maps").exists()  # --dry writes nothing in place
    line = next(x for x in proc.stderr.splitlines() if x.startswith("map files written to "))
    maps = Path(line.split()[4])
    try:
        assert f"map_str({maps}/appid-1-str.map)" in proc.stdout
        assert (maps / "appid-1-str.map").read_text() == "/site site_10002\n/web web_10001\n"
        if extra:  # no :80/:443, so no vhost maps: the printed config is complete
            assert "marathon_http_in" not in proc.stdout
            printed = tmp_path / "printed.cfg"
            printed.write_text(proc.stdout)
            checked = subprocess.run([haproxy_bin, "-c", "-f", str(printed)],
                                     capture_output=True, text=True, timeout=60)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        else:
            assert (maps / "http-1-beg.map").read_text() == "site.test/ site_10002\n"
    finally:
        for path in maps.iterdir():
            path.unlink()
        maps.rmdir()


def test_the_map_directory_sits_beside_the_config() -> None:
    assert mapfiles.default_map_dir("/etc/haproxy/haproxy.cfg") == \
        "/etc/haproxy/haproxy.cfg.maps"


def test_label_template_checks_read_the_new_maps_on_a_fresh_host(tmp_path: Path,
                                                                 haproxy_bin: str) -> None:
    """One-shot with label templates: the combined check runs with the config's own maps
    (none on disk yet), so it still finds the app that breaks the whole config."""
    from dataclasses import replace

    from servicerouter.engine.runner import run_once
    from tests.render.test_label_templates import CLASH, app, label_template_router

    apps = [app("/ok", 43001, HAPROXY_0_MODE="http", HAPROXY_0_VHOST="ok.test"),
            app("/dup", 43008, HAPROXY_0_MODE="http", HAPROXY_0_BACKEND_HEAD=CLASH),
            app("/plain", 43003, HAPROXY_0_MODE="http", HAPROXY_0_VHOST="*.plain.test")]
    router = label_template_router(tmp_path, apps, haproxy_bin)
    cfg = tmp_path / "haproxy.cfg"
    map_dir = mapfiles.default_map_dir(str(cfg))
    options = replace(router.settings.render_options, map_dir=map_dir,
                      default_cert=self_signed_cert(tmp_path / "default.pem"))
    router.settings = replace(router.settings, render_options=options)
    assert run_once(router) == 0, router.last.error if router.last else None
    text = cfg.read_text()
    assert "dup_43008" not in text and "map_beg(" in text
    problems = [p for p in router.last.model.problems if p.app_id == "/dup"]
    assert len(problems) == 1 and "together with the other apps" in problems[0].reason
    assert (Path(map_dir) / "http-2-end.map").read_text() == ".plain.test plain_43003\n"
