"""certupdate: which certificate changes the Runtime API can apply, and the set/commit dialogue.

Pure decisions are table-driven; :class:`CertUpdater` talks to a scripted fake of
HAProxy's CLI (the real one is in test_certupdate_e2e.py).  Keys are EC: fast.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from servicerouter.apply.runtime_api import RuntimeUpdateError
from servicerouter.tls import bundle_layout
from servicerouter.tls import bundles as certs
from servicerouter.tls.manager import TlsManager
from servicerouter.tls.swap import (
    UNKNOWN_DIGEST,
    CertPlan,
    CertUpdater,
    leaf_sha1,
    open_transaction,
    plan_cert_updates,
    served_cert,
    set_command,
    startup_baseline,
)

A = "/s/bundles/a.example.com--0123456789abcdef.pem"
B = "/s/bundles/b.example.com--fedcba9876543210.pem"
DEFAULT = "/s/default.pem"


def pem_for(name: str) -> str:
    return certs.generate_self_signed(name)


def served(**files: tuple[str, str, tuple[str, ...]]) -> dict:
    return {path: served_cert(path, pem, names) for path, pem, names in files.values()}


# --------------------------------------------------------------------------- pure plan


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    return {"a1": pem_for("a.example.com"), "a2": pem_for("a.example.com"),
            "b1": pem_for("b.example.com"), "d": pem_for("servicerouter.invalid")}


def test_same_content_needs_nothing(pems: dict[str, str]) -> None:
    now = served(a=(A, pems["a1"], ("a.example.com",)), d=(DEFAULT, pems["d"], ()))
    assert plan_cert_updates(now, dict(now)) == CertPlan()
    assert plan_cert_updates(now, dict(now)).empty


def test_new_content_same_names_is_a_runtime_update(pems: dict[str, str]) -> None:
    before = served(a=(A, pems["a1"], ("a.example.com",)), b=(B, pems["b1"], ("b.example.com",)),
                    d=(DEFAULT, pems["d"], ()))
    after = dict(before, **served(a=(A, pems["a2"], ("a.example.com",))))
    plan = plan_cert_updates(before, after)
    assert plan.update == (A,) and not plan.reload_reason and not plan.empty


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("names", "the names of"),
        ("added", "added or removed"),
        ("removed", "added or removed"),
        ("companions", "companion files"),
        ("unsafe", "cannot be named"),
    ],
)
def test_changes_only_a_reload_applies(pems: dict[str, str], change: str, reason: str) -> None:
    before = served(a=(A, pems["a1"], ("a.example.com",)), d=(DEFAULT, pems["d"], ()))
    after = dict(before)
    if change == "names":
        after[A] = served_cert(A, pems["a2"], ("a.example.com", "www.a.example.com"))
    elif change == "added":
        after[B] = served_cert(B, pems["b1"], ("b.example.com",))
    elif change == "removed":
        del after[A]
    elif change == "companions":
        after[A] = served_cert(A, pems["a2"], ("a.example.com",), runtime_ok=False)
    else:  # a label path that would split a CLI command
        path = "/certs/x.pem;shutdown"
        before[path] = served_cert(path, pems["b1"], ("b.example.com",))
        after[path] = served_cert(path, pems["a2"], ("b.example.com",))
    plan = plan_cert_updates(before, after)
    assert plan.update == () and reason in plan.reload_reason


def test_startup_baseline_marks_rewritten_files_unknown(pems: dict[str, str]) -> None:
    now = served(a=(A, pems["a1"], ("a.example.com",)), b=(B, pems["b1"], ("b.example.com",)))
    base = startup_baseline(now, {A})
    assert base[A].digest == UNKNOWN_DIGEST and base[B] == now[B]
    assert plan_cert_updates(base, now).update == (A,)


# --------------------------------------------------------------------------- CLI text


def test_set_command_is_one_payload_without_blank_lines(pems: dict[str, str]) -> None:
    text = set_command(A, pems["a1"].replace("-----\n", "-----\r\n\n", 1))
    head, payload = text.split("\n", 1)
    assert head == f"set ssl cert {A} <<"
    assert "\n\n" not in payload and "\r" not in payload and payload.endswith("-----\n")


@pytest.mark.parametrize("path", ["/a b.pem", "/a.pem;show info", "/a#.pem", "", "/a\n.pem"])
def test_set_command_refuses_paths_the_cli_would_split(path: str, pems: dict[str, str]) -> None:
    with pytest.raises(RuntimeUpdateError):
        set_command(path, pems["a1"])


def test_leaf_sha1_and_open_transaction(pems: dict[str, str]) -> None:
    cert = x509.load_pem_x509_certificate(pems["a1"].encode())
    assert leaf_sha1(pems["a1"]) == cert.fingerprint(hashes.SHA1()).hex().upper()
    shown = "# transaction\n*/s/a.pem\n# filename\n/s/a.pem\n/s/d.pem\n\n"
    assert open_transaction(shown) == "/s/a.pem"
    assert open_transaction("# filename\n/s/a.pem\n\n") is None


# --------------------------------------------------------------------------- CertUpdater


@dataclass
class ScriptedCLI:
    """HAProxy's CLI as far as ssl cert transactions go; ``answers`` override by verb."""

    served_sha1: str = ""
    transaction: str | None = None
    pending: str = ""  # the last set command
    answers: dict[str, str] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)

    def command(self, command: str) -> str:
        self.sent.append(command)
        words = command.split("\n", 1)[0].split()
        verb, path = " ".join(words[:3]), (words[3] if len(words) > 3 else "")
        if verb in self.answers:
            return self.answers[verb]
        if verb == "show ssl cert" and not path:
            pending = f"# transaction\n*{self.transaction}\n" if self.transaction else ""
            return pending + "# filename\n/x\n\n"
        if verb == "show ssl cert":
            return f"Filename: {path}\nSHA1 FingerPrint: {self.served_sha1}\n\n"
        if verb == "set ssl cert":
            created = "updated" if self.transaction == path else "created"
            self.transaction = path
            self.pending = command
            return f"Transaction {created} for certificate {path}!\n\n"
        if verb == "commit ssl cert":
            self.served_sha1 = leaf_sha1(self.pending.split("<<\n", 1)[1])
            self.transaction = None
            return f"Committing {path}.\nSuccess!\n\n"
        if verb == "abort ssl cert":
            self.transaction = None
            return f"Transaction aborted for certificate '{path}'!\n\n"
        return "Unknown command\n\n"

    def verbs(self) -> list[str]:
        return [" ".join(c.split("\n", 1)[0].split()[:3]) for c in self.sent]


def test_update_is_set_commit_then_confirmed(pems: dict[str, str]) -> None:
    cli = ScriptedCLI()
    CertUpdater(cli).update(A, pems["a2"], ours=[A])
    assert cli.verbs() == ["show ssl cert", "set ssl cert", "commit ssl cert", "show ssl cert"]
    assert cli.served_sha1 == leaf_sha1(pems["a2"]) and cli.transaction is None


@pytest.mark.parametrize(
    ("verb", "answer"),
    [
        ("set ssl cert", "Can't replace a certificate which is not referenced by the "
                         "configuration!\nCan't update /s/a.pem!\n"),
        ("set ssl cert", ""),  # a payload larger than HAProxy's buffer: connection closed
        ("set ssl cert", f"Transaction updated for certificate {B}!\n"),  # another file
        ("commit ssl cert", "The transaction must contain at least a certificate and a "
                            "private key!\nCan't commit /s/a.pem!\n"),
    ],
)
def test_refusal_before_the_commit_aborts_the_transaction(
        pems: dict[str, str], verb: str, answer: str) -> None:
    cli = ScriptedCLI(answers={verb: answer})
    with pytest.raises(RuntimeUpdateError, match=verb):
        CertUpdater(cli).update(A, pems["a2"], ours=[A])
    assert cli.verbs()[-1] == "abort ssl cert" and cli.sent[-1] == f"abort ssl cert {A}"
    assert "commit ssl cert" not in cli.verbs()[cli.verbs().index(verb) + 1:]


def test_commit_not_confirmed_by_show_is_an_error(pems: dict[str, str]) -> None:
    cli = ScriptedCLI()
    cli.answers["show ssl cert"] = "# filename\n/x\n\n"  # hides the new fingerprint
    with pytest.raises(RuntimeUpdateError, match="does not show the new certificate"):
        CertUpdater(cli).update(A, pems["a2"], ours=[A])


def test_leftover_transaction_of_ours_is_aborted_a_foreign_one_left_alone(
        pems: dict[str, str]) -> None:
    cli = ScriptedCLI(transaction=B)
    CertUpdater(cli).update(A, pems["a2"], ours=[A, B])
    assert cli.sent[1] == f"abort ssl cert {B}" and cli.verbs()[2] == "set ssl cert"

    cli = ScriptedCLI(transaction="/etc/other.pem")
    with pytest.raises(RuntimeUpdateError, match="/etc/other.pem"):
        CertUpdater(cli).update(A, pems["a2"], ours=[A, B])
    assert cli.verbs() == ["show ssl cert"]  # neither set nor abort on somebody else's


# --------------------------------------------------------------------------- stable files


def test_stable_names_keep_paths_and_crt_list_across_a_renewal(tmp_path: Path) -> None:
    src, state = tmp_path / "certs", tmp_path / "state"
    src.mkdir()
    (src / "a.pem").write_text(pem_for("a.example.com"))
    (src / "star.pem").write_text(pem_for("*.b.example.com"))
    default = certs.ensure_default_certificate(str(state))
    manager = TlsManager()
    first = manager.prepare(str(state), default, [str(src)], [], stable=True)
    paths = {c.path: c for c in first.served}
    names = sorted(os.path.basename(p) for p in paths if "/bundles/" in p)
    assert names[0].startswith("a.example.com--") and names[1].startswith("wildcard.b.example")
    # a.pem, the first bundle, is the default: the self-signed file is not served.
    assert os.path.abspath(default) not in paths and len(first.written) == 2
    assert first.default_cert in paths and "a.example.com--" in first.default_cert

    (src / "a.pem").write_text(pem_for("a.example.com"))  # renewed: new key and serial
    second = manager.prepare(str(state), default, [str(src)], [], stable=True)
    assert second.crt_list == first.crt_list
    plan = plan_cert_updates(paths, {c.path: c for c in second.served})
    assert len(plan.update) == 1 and "a.example.com--" in plan.update[0]
    assert set(second.written) == set(plan.update)
    assert Path(plan.update[0]).read_text() == next(
        c.pem for c in second.served if c.path == plan.update[0])

    (src / "a.pem").write_text(pem_for("www.a.example.com"))  # other names: new crt-list
    third = manager.prepare(str(state), default, [str(src)], [], stable=True)
    assert third.crt_list != second.crt_list


def test_switching_naming_schemes_prunes_only_our_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bundle = certs.parse_bundle(pem_for("a.example.com"), str(tmp_path / "a.pem"),
                                datetime.now(UTC))
    default = certs.ensure_default_certificate(str(state))
    by_content = bundle_layout.materialize_bundles([bundle], str(state), default)
    (state / "bundles" / "notes.txt").write_text("operator's")
    by_source = bundle_layout.materialize_bundles([bundle], str(state), default, stable=True)
    stable_file = by_source.paths[bundle.fingerprint]
    assert sorted(os.listdir(state / "bundles")) == sorted(
        ["notes.txt", os.path.basename(stable_file)])
    assert not os.path.exists(by_content.paths[bundle.fingerprint])
    assert by_source.crt_list != by_content.crt_list
    bundle_layout.materialize_bundles([bundle], str(state), default)
    assert not os.path.exists(stable_file)


def test_operators_file_served_as_is_is_listed_with_its_companions(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port_cert = tmp_path / "port.pem"
    port_cert.write_text(pem_for("p.example.com"))
    default = certs.ensure_default_certificate(str(state))
    result = TlsManager().prepare(str(state), default, [], [str(port_cert)], stable=True)
    direct = {c.path: c for c in result.served}[str(port_cert)]
    assert direct.runtime_ok and direct.names == ("p.example.com",)
    assert result.cert_paths == ()  # in HAProxy's order: the bind line reads it directly
    (tmp_path / "port.pem.ocsp").write_bytes(b"\x30")
    again = TlsManager().prepare(str(state), default, [], [str(port_cert)], stable=True)
    assert not {c.path: c for c in again.served}[str(port_cert)].runtime_ok


# --------------------------------------------------------------------------- one-shot mode


def test_one_shot_sync_still_reloads_on_a_renewed_certificate(tmp_path: Path) -> None:
    """No Runtime API there: content-named files change the config, so the reload runs."""
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import SnapshotSource

    snapshot, src, marks = tmp_path / "apps.json", tmp_path / "certs", tmp_path / "reloads"
    snapshot.write_text(json.dumps({"apps": []}))
    src.mkdir()
    (src / "a.pem").write_text(pem_for("a.example.com"))
    cfg = tmp_path / "haproxy.cfg"
    reload_cmd = (sys.executable, "-c",
                  f"open({str(marks)!r}, 'a').write('x')")

    def sync() -> str:
        router = Router(
            SnapshotSource(f"file:{snapshot}"), load_fragments([]),
            RouterSettings(config_path=str(cfg), validate=False, reload=reload_cmd,
                           state_dir=str(tmp_path / "state"), certs_dir=str(src)))
        assert router.sync().ok
        return cfg.read_text()

    first = sync()
    assert sync() == first and marks.read_text() == "x"  # unchanged: no reload
    (src / "a.pem").write_text(pem_for("a.example.com"))
    assert sync() != first and marks.read_text() == "xx"


# --------------------------------------------------------------------------- live engine


@dataclass
class RecordingUpdater:
    updated: list[str] = field(default_factory=list)
    refuse: bool = False

    def update(self, path: str, pem: str, ours=()) -> None:
        if self.refuse:
            raise RuntimeUpdateError("refused")
        self.updated.append(path)


@dataclass
class CountingReloader:
    calls: int = 0

    def reload(self):
        from servicerouter.apply.managed import ReloadResult

        self.calls += 1
        return ReloadResult(True, "counted")


def test_live_engine_restarted_beside_a_running_haproxy_pushes_only_renewed_files(
        tmp_path: Path) -> None:
    """Not managed: HAProxy kept the files of before; only those rewritten since are pushed."""
    from servicerouter.engine.live import LiveRouter, LiveSettings
    from servicerouter.engine.runner import Router, RouterSettings
    from servicerouter.render.fragments import load_fragments
    from servicerouter.source.marathon import SnapshotSource

    snapshot, src, cfg = tmp_path / "apps.json", tmp_path / "certs", tmp_path / "haproxy.cfg"
    snapshot.write_text(json.dumps({"apps": []}))
    src.mkdir()
    for name in ("a", "b"):
        (src / f"{name}.pem").write_text(pem_for(f"{name}.example.com"))

    def engine(updater: RecordingUpdater, reloader: CountingReloader) -> LiveRouter:
        router = Router(SnapshotSource(f"file:{snapshot}"), load_fragments([]),
                        RouterSettings(config_path=str(cfg), validate=False,
                                       state_dir=str(tmp_path / "state"), certs_dir=str(src)))
        live = LiveRouter(router, reloader=reloader, settings=LiveSettings(),
                          cert_updater=updater)  # type: ignore[arg-type]
        live._applied_text = cfg.read_text() if cfg.exists() else None  # as run_live does
        return live

    first = engine(RecordingUpdater(), CountingReloader())
    assert first.step() and first.reloader.calls == 1
    (src / "a.pem").write_text(pem_for("a.example.com"))  # renewed while we were away

    updater, reloader = RecordingUpdater(), CountingReloader()
    second = engine(updater, reloader)
    assert second.step() and second.state.last_apply == "runtime"
    assert [os.path.basename(p).split("--")[0] for p in updater.updated] == ["a.example.com"]
    assert reloader.calls == 0
    assert second.step() and second.state.last_apply == "unchanged"

    (src / "b.pem").write_text(pem_for("b.example.com"))
    updater.refuse = True  # HAProxy says no: the reload applies it
    assert second.step() and second.state.last_apply == "reload" and reloader.calls == 1
    assert second.metrics.cert_updates.value(result="failed") == 1
    assert second.step() and second.state.last_apply == "unchanged"
