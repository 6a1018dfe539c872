"""tls: which bundles the config serves, per-port certificate files, expiry reporting.

Key material is generated here (EC keys: fast). Files live in tmp_path.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from servicerouter.tls import bundles as certs
from servicerouter.tls import manager as tls
from servicerouter.tls.manager import TlsManager, format_rows
from tests.pki import NOW, cn_name, make_cert, pem
from tests.pki import new_key as key


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.setup_logging (run by other tests) stops propagation; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("servicerouter"), "propagate", True)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, an intermediate, and bundles: good, expiring, expired, wrong key, out of order."""
    ca_key, int_key = key(), key()
    ca = make_cert("Test Root", ca_key, ca=True, days=3650)
    inter = make_cert("Test Intermediate", int_key, issuer=(ca, ca_key), ca=True, days=3000)
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    files: dict[str, Path] = {"dir": certs_dir}

    def leaf(name: str, sans: list[str], **kw) -> tuple[x509.Certificate, object]:
        k = key()
        return make_cert(sans[0], k, issuer=(inter, int_key), sans=sans, **kw), k

    good, good_key = leaf("a", ["a.example.com", "www.a.example.com"])
    (certs_dir / "a.pem").write_text(pem(good, inter, good_key))
    soon, soon_key = leaf("soon", ["soon.example.com"], days=5)
    (certs_dir / "soon.pem").write_text(pem(soon, inter, soon_key))
    old, old_key = leaf("old", ["old.example.com"], days=-1, start=-30)
    (certs_dir / "expired.pem").write_text(pem(old, inter, old_key))
    wrong, _ = leaf("wrong", ["wrong.example.com"])
    (certs_dir / "mismatch.pem").write_text(pem(wrong, inter, key()))
    port_leaf, port_key = leaf("b", ["b.example.com"])
    files["ordered"] = tmp_path / "ordered.pem"
    files["ordered"].write_text(pem(port_leaf, inter, port_key))
    other, other_key = leaf("c", ["c.example.com"])
    files["shuffled"] = tmp_path / "shuffled.pem"
    files["shuffled"].write_text(pem(other_key, inter, other))  # key, chain, then leaf
    return files


def prepare(manager: TlsManager, tmp_path: Path, pki: dict[str, Path], now: datetime = NOW):
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state))
    return manager.prepare(str(state), default, [str(pki["dir"])],
                           [str(pki["ordered"]), str(pki["shuffled"])], now)


def test_crt_list_has_default_first_then_every_good_bundle_with_its_names(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    lines = Path(result.crt_list).read_text().splitlines()
    # The default is the certs directory's first usable bundle (a.pem), with its names.
    assert lines[0] == f"{result.default_cert} a.example.com www.a.example.com"
    assert Path(result.default_cert).parent.name == "bundles"
    filters = sorted(" ".join(line.split()[1:]) for line in lines)
    assert filters == ["a.example.com www.a.example.com", "b.example.com", "c.example.com",
                       "soon.example.com"]
    served = {cert.path for cert in result.served}
    assert not any(path.endswith("default.pem") for path in served)  # self-signed unused
    for line in lines:
        path = line.split()[0]
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_bad_bundles_are_named_with_their_reason_and_the_rest_served(
        tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="servicerouter.tls.manager"):
        result = prepare(TlsManager(), tmp_path, pki)
    reasons = {Path(e.source).name: e.reason for e in result.errors}
    assert reasons["expired.pem"].startswith("certificate expired on")
    assert reasons["mismatch.pem"].startswith("private key does not match")
    assert "expired.pem" in caplog.text and "mismatch.pem" in caplog.text
    bad_rows = [r for r in result.report if r["problem"]]
    assert {Path(r["source"]).name for r in bad_rows} == {"expired.pem", "mismatch.pem"}


def test_port_certificate_kept_when_ready_replaced_when_out_of_order(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    substitutes = dict(result.cert_paths)
    assert str(pki["ordered"]) not in substitutes
    copy = Path(substitutes[str(pki["shuffled"])])
    assert copy.parent.name == "bundles" and copy.is_file()
    blocks = copy.read_text().split("-----END ")
    assert "CERTIFICATE" in blocks[0] and "PRIVATE KEY" in blocks[-2]
    leaf = x509.load_pem_x509_certificate(copy.read_bytes())
    assert leaf.subject == cn_name("c.example.com")


def test_expiring_bundle_warns_once_a_day_and_is_flagged(
        tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    manager = TlsManager(clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="servicerouter.tls.manager"):
        result = prepare(manager, tmp_path, pki)
        prepare(manager, tmp_path, pki)
    warnings = [r.getMessage() for r in caplog.records if "expires in" in r.getMessage()]
    assert len(warnings) == 1 and "soon.example.com" in warnings[0]
    assert "renew" in warnings[0]
    rows = {tuple(r["names"]): r for r in result.report if not r["problem"]}
    assert rows[("soon.example.com",)]["expiring"] is True
    assert rows[("soon.example.com",)]["days_left"] in (4, 5)
    assert rows[("b.example.com",)]["expiring"] is False
    clock[0] += 25 * 3600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="servicerouter.tls.manager"):
        prepare(manager, tmp_path, pki)
    assert sum("expires in" in r.getMessage() for r in caplog.records) == 1


def test_unchanged_sources_are_not_parsed_again(tmp_path: Path, pki: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    manager = TlsManager()
    (pki["dir"] / "expired.pem").unlink()
    (pki["dir"] / "mismatch.pem").unlink()
    calls: list[list[str]] = []
    real = certs.load_bundles

    def counting(paths, now=None):
        calls.append(list(paths))
        return real(paths, now)

    monkeypatch.setattr(tls.certs, "load_bundles", counting)
    first = prepare(manager, tmp_path, pki)
    count = len(calls)
    second = prepare(manager, tmp_path, pki)
    assert len(calls) == count and second.crt_list == first.crt_list
    # A changed file is read again.
    (pki["dir"] / "a.pem").write_text((pki["dir"] / "a.pem").read_text() + "\n")
    prepare(manager, tmp_path, pki)
    assert len(calls) == count + 1


def test_bundle_that_expired_since_it_was_cached_is_dropped(tmp_path: Path,
                                                           pki: dict[str, Path]) -> None:
    manager = TlsManager()
    prepare(manager, tmp_path, pki)
    later = prepare(manager, tmp_path, pki, NOW + timedelta(days=6))
    assert any(Path(e.source).name == "soon.pem" and "expired" in e.reason
               for e in later.errors)
    assert "soon.example.com" not in Path(later.crt_list).read_text()


def test_listing_format(tmp_path: Path, pki: dict[str, Path]) -> None:
    result = prepare(TlsManager(), tmp_path, pki)
    text = format_rows(result.report)
    assert "EXPIRING  " in text and "soon.example.com" in text
    assert "BAD       " in text and "expired.pem: certificate expired" in text
    assert format_rows([]).startswith("no certificate bundles")


def test_list_certs_cli(tmp_path: Path, pki: dict[str, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    from servicerouter.cli.flags import parse_args
    from servicerouter.cli.main import list_certs

    code = list_certs(parse_args(["--list-certs", "--certs-dir", str(pki["dir"]), "--ssl-certs",
                                  str(pki["ordered"])]))
    out = capsys.readouterr().out
    assert code == 1  # two unusable bundles
    assert "a.example.com,www.a.example.com" in out and "b.example.com" in out
    assert "mismatch.pem: private key does not match" in out


def test_router_sync_reports_certificates_and_adds_port_bundles(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    import json

    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import SnapshotSource

    apps = [{"id": "/c", "ports": [10001],
             "labels": {"HAPROXY_0_VHOST": "c.example.com", "HAPROXY_0_SSL_CERT": str(pki["shuffled"])},
             "tasks": [{"id": "c.1", "host": "10.0.0.1", "ports": [31001]}]}]
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    cfg = tmp_path / "haproxy.cfg"
    router = Router(SnapshotSource(f"file:{snapshot}"), load_fragments([]),
                    RouterSettings(config_path=str(cfg), validate=False, reload=None,
                                   state_dir=str(tmp_path / "state"), certs_dir=str(pki["dir"])))
    result = router.sync()
    assert result.ok
    rows = {tuple(r["names"]): r for r in result.certificates if not r["problem"]}
    assert rows[("soon.example.com",)]["expiring"] is True
    assert ("c.example.com",) in rows  # the port's own bundle joined the crt-list
    assert {Path(r["source"]).name for r in result.certificates if r["problem"]} == {
        "expired.pem", "mismatch.pem"}
    bind = next(line for line in cfg.read_text().splitlines() if "bind *:10001" in line)
    assert "/state/bundles/" in bind and str(pki["shuffled"]) not in bind


def _router(tmp_path: Path, pki: dict[str, Path], dry: bool, stable: bool = False):
    import io
    import json

    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import SnapshotSource

    apps = [{"id": "/c", "ports": [10001],
             "labels": {"HAPROXY_0_VHOST": "c.example.com",
                        "HAPROXY_0_SSL_CERT": str(pki["shuffled"])},
             "tasks": [{"id": "c.1", "host": "10.0.0.1", "ports": [31001]}]}]
    snapshot = tmp_path / "apps.json"
    snapshot.write_text(json.dumps({"apps": apps}))
    out = io.StringIO()
    router = Router(SnapshotSource(f"file:{snapshot}"), load_fragments([]),
                    RouterSettings(config_path=str(tmp_path / "haproxy.cfg"), validate=False,
                                   reload=None, dry=dry, state_dir=str(tmp_path / "state"),
                                   certs_dir=str(pki["dir"]), ssl_certs=(str(pki["ordered"]),)),
                    out=out)
    return router, out


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_text()) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_dry_names_the_files_a_real_run_writes_and_writes_nothing(
        tmp_path: Path, pki: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    router, out = _router(tmp_path, pki, dry=True)
    assert router.sync().ok
    first_dry = out.getvalue()
    assert not state.exists()  # --dry creates no state directory, no certificate
    assert "crt-list " in first_dry
    capsys.readouterr()

    real, _ = _router(tmp_path, pki, dry=False)
    assert real.sync().ok
    written = (tmp_path / "haproxy.cfg").read_text()
    assert written == first_dry  # the same paths, computed without writing
    crt_list = Path(written.split("crt-list ")[1].split()[0])
    assert crt_list.is_file()
    before = _tree(state)

    router, out = _router(tmp_path, pki, dry=True)
    capsys.readouterr()
    assert router.sync().ok
    assert out.getvalue() == written
    assert "no difference with" in capsys.readouterr().err
    assert _tree(state) == before


def test_dry_in_the_live_mode_uses_the_stable_names(tmp_path: Path, pki: dict[str, Path]) -> None:
    from servicerouter.render.config import RenderOptions

    real, _ = _router(tmp_path, pki, dry=False)
    live = real._prepare_certificates(RenderOptions(), stable_paths=True)
    assert Path(live.crt_list).is_file()
    dry, _ = _router(tmp_path, pki, dry=True)
    before = _tree(tmp_path / "state")
    assert dry._prepare_certificates(RenderOptions(), stable_paths=True) == live
    assert _tree(tmp_path / "state") == before


def test_dry_output_passes_haproxy_check_after_a_real_run(
        tmp_path: Path, pki: dict[str, Path], haproxy_bin: str) -> None:
    import subprocess

    real, _ = _router(tmp_path, pki, dry=False)
    assert real.sync().ok
    router, out = _router(tmp_path, pki, dry=True)
    assert router.sync().ok
    dry_cfg = tmp_path / "dry.cfg"
    dry_cfg.write_text(out.getvalue())
    proc = subprocess.run([haproxy_bin, "-c", "-f", str(dry_cfg)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_renewed_bundle_supersedes_the_old_one_for_the_same_names(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "certs"
    src.mkdir()

    def write(name: str, sans: list[str], days: float, k=None) -> Path:
        k = k or key()
        path = src / name
        path.write_text(pem(make_cert(sans[0], k, sans=sans, days=days), k))
        return path

    # Names by fingerprint order would pick either; the later expiry must win.
    write("a-new.pem", ["a.test", "www.a.test"], days=92)
    write("a-old.pem", ["www.a.test", "a.test"], days=5)
    write("a-subset.pem", ["a.test"], days=3)  # other names: kept
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("a-rsa.pem", ["a.test", "www.a.test"], days=10, k=rsa_key)  # other key type: kept
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state))
    manager = TlsManager()
    with caplog.at_level(logging.WARNING, logger="servicerouter.tls.manager"):
        result = manager.prepare(str(state), default, [str(src)], [], NOW)
        manager.prepare(str(state), default, [str(src)], [], NOW)
    lines = Path(result.crt_list).read_text().splitlines()
    listed = [line.split()[1:] for line in lines]
    assert sorted(map(tuple, listed)) == [("a.test",), ("a.test", "www.a.test"),
                                          ("a.test", "www.a.test")]
    served = {x509.load_pem_x509_certificate(Path(line.split()[0]).read_bytes())
              .not_valid_after_utc for line in lines}
    assert served == {NOW + timedelta(days=d) for d in (92, 3, 10)}  # not a-old's 5 days
    # The default (first bundle by name) is a-new.pem, not the superseded a-old.pem.
    assert lines[0].split()[1:] == ["a.test", "www.a.test"]
    assert x509.load_pem_x509_certificate(Path(result.default_cert).read_bytes()) \
        .not_valid_after_utc == NOW + timedelta(days=92)
    notes = [r.getMessage() for r in caplog.records if "superseded" in r.getMessage()]
    assert len(notes) == 1 and "a-old.pem" in notes[0] and "a-new.pem" in notes[0]


# --------------------------------------------------------------------------- per-port preflight


def _port_cert(path: Path, cn: str, days: float = 90, start: float = -1,
               wrong_key: bool = False) -> Path:
    k = key()
    path.write_text(pem(make_cert(cn, k, sans=[cn], days=days, start=start),
                        key() if wrong_key else k))
    return path


def test_port_certificate_expired_or_not_yet_valid_skips_the_port(tmp_path: Path) -> None:
    from servicerouter.model.labels import PortSettings
    from servicerouter.model.preflight import PortChecks

    clock = [NOW]
    checks = PortChecks(now=lambda: clock[0])
    good = _port_cert(tmp_path / "good.pem", "good.test", days=10)
    expired = _port_cert(tmp_path / "expired.pem", "old.test", days=-1, start=-30)
    future = _port_cert(tmp_path / "future.pem", "new.test", start=2)
    mismatch = _port_cert(tmp_path / "mismatch.pem", "bad.test", wrong_key=True)
    assert checks(PortSettings(ssl_cert=str(good))) is None
    assert checks(PortSettings(ssl_cert=str(expired))) == (
        f"certificate {expired}: certificate expired on "
        f"{(NOW - timedelta(days=1)).isoformat(timespec='seconds')}")
    assert "not valid before" in checks(PortSettings(ssl_cert=str(future)))
    assert "private key does not match" in checks(PortSettings(ssl_cert=str(mismatch)))
    # Time passes, files unchanged: the verdicts follow the clock, not the cache.
    clock[0] = NOW + timedelta(days=3)
    assert checks(PortSettings(ssl_cert=str(future))) is None
    clock[0] = NOW + timedelta(days=11)
    assert "certificate expired on" in checks(PortSettings(ssl_cert=str(good)))


def test_port_certificate_directory_is_judged_as_haproxy_loads_it(tmp_path: Path) -> None:
    from servicerouter.model.preflight import PortChecks

    checks = PortChecks(now=lambda: NOW)
    directory = tmp_path / "dir"
    directory.mkdir()
    assert checks.certificate_problem(str(directory)) == (
        f"certificate directory {directory} holds no certificate")
    _port_cert(directory / "a.pem", "a.test")
    (directory / ".hidden").write_text("ignored by HAProxy")
    (directory / "a.pem.ocsp").write_text("companion")
    assert checks.certificate_problem(str(directory)) is None
    bad = _port_cert(directory / "b.pem", "b.test", wrong_key=True)
    assert checks.certificate_problem(str(directory)) == (
        f"certificate {bad}: private key does not match the certificate")
    bad.unlink()
    (directory / "notes.txt").write_text("HAProxy would try to load this")
    assert "notes.txt: no certificate found" in checks.certificate_problem(str(directory))


def test_port_certificate_with_a_companion_key_is_checked_as_a_pair(tmp_path: Path) -> None:
    from servicerouter.model.preflight import PortChecks

    checks = PortChecks(now=lambda: NOW)
    k = key()
    cert = make_cert("pair.test", k, sans=["pair.test"])
    split = tmp_path / "split.pem"
    split.write_text(pem(cert))
    assert "no private key found" in checks.certificate_problem(str(split))
    (tmp_path / "split.pem.key").write_text(pem(key()))  # the wrong key
    assert "private key does not match" in checks.certificate_problem(str(split))
    (tmp_path / "split.pem.key").write_text(pem(k) + "\n")
    assert checks.certificate_problem(str(split)) is None
    # tls agrees: the pair joins the crt-list, no "bundle skipped" for a served port.
    state = tmp_path / "state"
    result = TlsManager().prepare(str(state), certs.ensure_default_certificate(str(state)),
                                  [], [str(split)], NOW)
    assert not result.errors and "pair.test" in Path(result.crt_list).read_text()
    assert str(split) not in dict(result.cert_paths)  # in order: HAProxy reads the pair


def test_port_bundle_superseded_on_443_still_serves_its_port(tmp_path: Path) -> None:
    src = tmp_path / "certs"
    src.mkdir()
    new_key, old_key = key(), key()
    (src / "a.pem").write_text(pem(make_cert("a.test", new_key, sans=["a.test"], days=90),
                                   new_key))
    ca_key = key()
    ca = make_cert("CA", ca_key, ca=True)
    port = tmp_path / "port.pem"  # older, and chain first: the port needs the normalised copy
    port.write_text(pem(ca, make_cert("a.test", old_key, issuer=(ca, ca_key), sans=["a.test"],
                                      days=30), old_key))
    state = tmp_path / "state"
    result = TlsManager().prepare(str(state), certs.ensure_default_certificate(str(state)),
                                  [str(src)], [str(port)], NOW)
    lines = Path(result.crt_list).read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" a.test")  # only the renewed one
    copy = dict(result.cert_paths)[str(port)]
    assert Path(copy).is_file() and copy not in lines[0]
    assert copy in {c.path for c in result.served}  # the port's bind line reads it
