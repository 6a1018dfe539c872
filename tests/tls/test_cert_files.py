"""Tests for servicerouter.tls.bundle_layout: crt-lists, the files HAProxy reads, and real HAProxy.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import time
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from servicerouter.tls import bundle_layout
from servicerouter.tls import bundles as certs
from servicerouter.tls.bundles import Bundle, BundleError
from tests.harness import free_port
from tests.tls.bundle_pki import (
    HAPROXY,
    NOW,
    Pki,
    cert_pem,
    ec_key,
    file_mode,
    fp,
    key_pem,
    make_cert,
    needs_haproxy,
)

# --------------------------------------------------------------------------- crt-list


def _bundle(source: str, names: tuple[str, ...], fingerprint: str = "ab" * 32) -> Bundle:
    return Bundle(source, names, NOW, fingerprint, "PEM")


def test_build_crt_list_is_sorted_and_filtered_by_names() -> None:
    text = bundle_layout.build_crt_list(
        "/s/default.pem",
        [
            ("/s/bundles/b.pem", _bundle("x", ("b.example.com", "*.b.example.com"))),
            ("/s/bundles/a.pem", _bundle("y", ("a.example.com",))),
            ("/s/bundles/a.pem", _bundle("y", ("a.example.com",))),  # duplicate collapses
        ],
    )
    assert text == (
        "/s/default.pem\n"
        "/s/bundles/a.pem a.example.com\n"
        "/s/bundles/b.pem b.example.com *.b.example.com\n"
    )
    assert bundle_layout.build_crt_list("/s/default.pem", []) == "/s/default.pem\n"


@pytest.mark.parametrize(
    ("default", "path", "names"),
    [
        ("/s/my default.pem", "/s/a.pem", ("a.test",)),
        ("/s/default.pem", "/s/a\t.pem", ("a.test",)),
        ("/s/default.pem", "", ("a.test",)),
        ("/s/default.pem", "#/s/a.pem", ("a.test",)),
        ("/s/default.pem", "/s/a.pem", ("a.test !b.test",)),
    ],
)
def test_build_crt_list_rejects_unsafe_tokens(default, path, names) -> None:
    with pytest.raises(ValueError):
        bundle_layout.build_crt_list(default, [(path, _bundle("x", names))])


def test_materialize_writes_private_files_and_removes_stale(tmp_path, pki: Pki) -> None:
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state), now=NOW)
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    bundle_dir = state / "bundles"
    bundle_dir.mkdir(mode=0o700)
    stale = bundle_dir / f"{'0' * 64}.pem"
    stale.write_text("old")
    leftover = bundle_dir / ".tmp-crashed.pem.123"
    leftover.write_text("half")
    foreign = bundle_dir / "operator-notes.txt"
    foreign.write_text("not ours")

    crt_list = bundle_layout.materialize([two, one, one], str(state), default)

    assert os.path.dirname(crt_list) == str(state)
    assert os.path.basename(crt_list).startswith("crt-list-")
    p1, p2 = bundle_dir / f"{one.fingerprint}.pem", bundle_dir / f"{two.fingerprint}.pem"
    assert p1.read_text() == one.pem and p2.read_text() == two.pem
    assert file_mode(p1) == file_mode(p2) == file_mode(crt_list) == 0o600
    assert not stale.exists() and not leftover.exists() and foreign.exists()
    line1 = f"{p1} example.com *.example.com www.example.com"
    line2 = f"{p2} other.example.org"
    assert open(crt_list).read().splitlines() == [default, *sorted([line1, line2])]

    # Unchanged bundles are not rewritten; a dropped bundle's file goes away.
    inode = os.stat(p1).st_ino
    second = bundle_layout.materialize([one], str(state), default)
    assert os.stat(p1).st_ino == inode
    assert not p2.exists()
    assert second != crt_list  # content-addressed: a change yields a new path
    assert open(second).read().splitlines() == [default, line1]


def test_materialize_creates_private_state_dir(tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    state = tmp_path / "new-state"
    bundle_layout.materialize([one], str(state), str(tmp_path / "default.pem"))
    assert file_mode(state) == 0o700 and file_mode(state / "bundles") == 0o700


def test_expiry_report(pki: Pki) -> None:
    key = ec_key()
    soon = make_cert("soon.test", key, not_after=NOW + timedelta(days=10, hours=1))
    soon_b = certs.parse_bundle(cert_pem(soon) + key_pem(key), "soon.pem", NOW)
    late_b = certs.parse_bundle(pki.bundle_text(), "late.pem", NOW)
    report = certs.expiry_report([late_b, soon_b], NOW)
    assert report == [
        {
            "source": "soon.pem",
            "names": ["soon.test"],
            "not_after": (NOW + timedelta(days=10, hours=1)).isoformat(),
            "days_left": 10,
            "expiring": True,
        },
        {
            "source": "late.pem",
            "names": ["example.com", "*.example.com", "www.example.com"],
            "not_after": (NOW + timedelta(days=90)).isoformat(),
            "days_left": 90,
            "expiring": False,
        },
    ]
    assert [r["expiring"] for r in certs.expiry_report([soon_b], NOW, days=7)] == [False]


# --------------------------------------------------------------------------- real HAProxy


def _haproxy_setup(tmp_path, pki: Pki) -> tuple[str, str, int, list[Bundle], list[BundleError]]:
    """Two good bundles and one with a mismatched key in a certs dir, materialized."""
    src = tmp_path / "certs"
    src.mkdir()
    (src / "example.pem").write_text(pki.bundle_text())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_leaf = make_cert(
        "other.example.org", ed_key, issuer=(pki.inter, pki.inter_key), sans=["other.example.org"]
    )
    (src / "other.pem").write_text(key_pem(ed_key) + cert_pem(pki.inter) + cert_pem(ed_leaf))
    (src / "wrong.pem").write_text(cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(ec_key()))

    bundles, errors = certs.load_bundles([str(src)], now=NOW)
    state = tmp_path / "state"
    default = certs.ensure_default_certificate(str(state), now=NOW)
    crt_list = bundle_layout.materialize(bundles, str(state), default)
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n"
        "    maxconn 100\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 5s\n"
        "    timeout server 5s\n"
        "frontend https\n"
        f"    bind 127.0.0.1:{port} ssl crt-list {crt_list}\n"
        "    default_backend nothing\n"
        "backend nothing\n"
    )
    return str(cfg), crt_list, port, bundles, errors


@needs_haproxy
def test_haproxy_accepts_materialized_crt_list(tmp_path, pki: Pki) -> None:
    cfg, crt_list, _, bundles, errors = _haproxy_setup(tmp_path, pki)
    assert len(bundles) == 2
    assert [(os.path.basename(e.source), e.reason) for e in errors] == [
        ("wrong.pem", "private key does not match any of the 2 certificates")
    ]
    lines = open(crt_list).read().splitlines()
    assert len(lines) == 3
    assert fp(pki.other) not in open(crt_list).read()  # the mismatched bundle's leaf
    result = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

    # Control: had the mismatched bundle been listed, HAProxy would refuse the whole config.
    with open(crt_list, "a") as handle:
        handle.write(f"{errors[0].source} other.example.org\n")
    result = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "inconsistencies between private key and certificate" in result.stdout + result.stderr


@needs_haproxy
@pytest.mark.e2e
def test_haproxy_serves_certificate_by_sni(tmp_path, pki: Pki) -> None:
    cfg, crt_list, port, bundles, _ = _haproxy_setup(tmp_path, pki)
    by_source = {os.path.basename(b.source): b.fingerprint for b in bundles}
    default_path = open(crt_list).readline().strip()
    default_fp = fp(x509.load_pem_x509_certificate(open(default_path, "rb").read()))
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.poll() is not None else ""
                    pytest.fail(f"haproxy did not start: {out}")
                time.sleep(0.05)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def served(sni: str | None) -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=sni) as tls:
                    return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

        assert served("www.example.com") == by_source["example.pem"]
        assert served("api.example.com") == by_source["example.pem"]  # wildcard
        assert served("other.example.org") == by_source["other.pem"]
        assert served("unknown.test") == default_fp
        assert served(None) == default_fp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------- default, renewals, --dry


def _dated(source: str, names: tuple[str, ...], days: int, fingerprint: str,
           key_type: str = "ec") -> Bundle:
    return Bundle(source, names, NOW + timedelta(days=days), fingerprint, "PEM", key_type)


def test_build_crt_list_puts_the_default_bundle_first_with_its_filters() -> None:
    a = _bundle("a", ("a.example.com",))
    z = _bundle("z", ("z.example.com", "www.z.example.com"))
    text = bundle_layout.build_crt_list("/s/z.pem", [("/s/a.pem", a), ("/s/z.pem", z)])
    assert text == "/s/z.pem z.example.com www.z.example.com\n/s/a.pem a.example.com\n"


def test_parse_bundle_records_the_key_type(pki: Pki) -> None:
    assert certs.parse_bundle(pki.bundle_text(), "x.pem", NOW).key_type == "ec"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = cert_pem(make_cert("r.test", key, sans=["r.test"])) + key_pem(key)
    assert certs.parse_bundle(text, "r.pem", NOW).key_type == "rsa"


def test_supersede_keeps_the_bundle_that_expires_last_per_name_set_and_key_type() -> None:
    old = _dated("old.pem", ("a.test", "www.a.test"), 5, "01" * 32)
    new = _dated("new.pem", ("www.a.test", "a.test"), 92, "02" * 32)
    tie = _dated("tie.pem", ("a.test", "www.a.test"), 92, "03" * 32)
    rsa_old = _dated("rsa.pem", ("a.test", "www.a.test"), 5, "04" * 32, "rsa")
    subset = _dated("sub.pem", ("a.test",), 1, "05" * 32)
    same = _dated("copy.pem", ("a.test", "www.a.test"), 92, "02" * 32)  # new.pem, twice
    kept, dropped = certs.supersede([old, new, tie, rsa_old, subset, same])
    assert kept == [new, rsa_old, subset, same]  # order kept; the first of equals wins
    assert dropped == [(old, new), (tie, new)]
    assert certs.supersede([]) == ([], [])


def test_plan_layout_is_what_materialize_writes_without_touching_the_disk(
        tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    state = tmp_path / "state"
    bundle_layout.plan_layout([one, two], str(state), str(state / "default.pem"), default=two)
    assert not state.exists()
    for stable in (False, True):
        for default in (None, two):
            plan = bundle_layout.plan_layout([one, two], str(state), str(state / "default.pem"),
                                     stable, default=default)
            done = bundle_layout.materialize_bundles([one, two], str(state),
                                             str(state / "default.pem"), stable, default=default)
            assert (done.crt_list, done.paths, done.default_cert) == (
                plan.crt_list, plan.paths, plan.default_cert)
            assert open(done.crt_list).read() == plan.crt_list_text
            expected = str(state / "default.pem") if default is None else done.paths[two.fingerprint]
            assert open(done.crt_list).read().split()[0] == expected


def test_materialize_writes_extra_bundles_without_listing_them(tmp_path, pki: Pki) -> None:
    one = certs.parse_bundle(pki.bundle_text(), "one.pem", NOW)
    two_text = cert_pem(pki.other) + cert_pem(pki.inter) + key_pem(pki.other_key)
    two = certs.parse_bundle(two_text, "two.pem", NOW)
    done = bundle_layout.materialize_bundles([one], str(tmp_path), str(tmp_path / "d.pem"), extra=[two])
    assert os.path.isfile(done.paths[two.fingerprint])
    assert done.paths[two.fingerprint] not in open(done.crt_list).read()


def test_load_bundles_reads_a_companion_key_file(tmp_path, pki: Pki) -> None:
    (tmp_path / "site.pem").write_text(cert_pem(pki.leaf) + cert_pem(pki.inter))
    (tmp_path / "site.pem.key").write_text(key_pem(pki.leaf_key))
    (tmp_path / "wrong.pem").write_text(cert_pem(pki.other))
    (tmp_path / "wrong.pem.key").write_text(key_pem(pki.leaf_key))
    bundles, errors = certs.load_bundles([str(tmp_path)], NOW)
    assert [b.fingerprint for b in bundles] == [fp(pki.leaf)]
    assert "PRIVATE KEY" in bundles[0].pem
    assert [(os.path.basename(e.source), e.reason) for e in errors] == [
        ("wrong.pem", "private key does not match the certificate")]

