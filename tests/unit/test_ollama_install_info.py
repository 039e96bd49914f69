"""The ollama role's one read of a host before it changes anything (module
ollama_install_info, module_utils/ollama_release.py: install_drift, foreign_listeners)."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest
from ollama_module_testing import run

from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as release

ROOT = "/opt/ollama"
LINK = "/usr/local/bin/ollama"
DIR = {"kind": "dir", "mode": 0o755, "uid": 0, "gid": 0}


def link(target: str, uid: int = 0) -> dict:
    return {"kind": "link", "mode": 0o777, "uid": uid, "gid": 0, "target": target}


def as_left(version: str = "0.32.15") -> dict:
    return {
        f"{ROOT}/versions": dict(DIR),
        f"{ROOT}/current": link(f"versions/{version}"),
        LINK: link(f"{ROOT}/current/bin/ollama"),
    }


def test_the_layout_the_install_step_leaves_has_no_drift():
    assert release.install_drift(ROOT, "0.32.15", LINK, as_left()) == []
    # A trailing slash on the root names the same layout.
    assert release.install_drift(ROOT + "/", "0.32.15", LINK, as_left()) == []


@pytest.mark.parametrize(
    ("path", "state", "says"),
    [
        (f"{ROOT}/versions", None, "/opt/ollama/versions is missing"),
        (f"{ROOT}/versions", {**DIR, "kind": "file"}, "/opt/ollama/versions is not a directory"),
        (f"{ROOT}/versions", {**DIR, "mode": 0o777}, "/opt/ollama/versions is not root:root 0755"),
        (f"{ROOT}/versions", {**DIR, "uid": 1000}, "/opt/ollama/versions is not root:root 0755"),
        (f"{ROOT}/current", None, "/opt/ollama/current is missing"),
        (
            f"{ROOT}/current",
            link("versions/0.32.14"),
            "/opt/ollama/current does not point at versions/0.32.15",
        ),
        (f"{ROOT}/current", DIR, "/opt/ollama/current does not point at versions/0.32.15"),
        (
            f"{ROOT}/current",
            link("versions/0.32.15", uid=1000),
            "/opt/ollama/current is not owned by root:root",
        ),
        (LINK, None, "/usr/local/bin/ollama is missing"),
        (
            LINK,
            link("/opt/ollama/versions/0.32.15/bin/ollama"),
            "/usr/local/bin/ollama does not point at /opt/ollama/current/bin/ollama",
        ),
        (LINK, {"kind": "file", "mode": 0o755, "uid": 0, "gid": 0}, "does not point at"),
    ],
)
def test_each_difference_is_named(path, state, says):
    paths = as_left()
    paths[path] = state
    drift = release.install_drift(ROOT, "0.32.15", LINK, paths)
    assert len(drift) == 1
    assert says in drift[0]


def test_a_fresh_host_lists_every_missing_piece():
    drift = release.install_drift(ROOT, "0.32.15", LINK, {})
    assert drift == [
        "/opt/ollama/versions is missing",
        "/opt/ollama/current is missing",
        "/usr/local/bin/ollama is missing",
    ]


SS_OLLAMA = 'LISTEN 0 4096 127.0.0.1:11434 0.0.0.0:* users:(("ollama",pid=812,fd=3))'
SS_OTHER = 'LISTEN 0 5 127.0.0.1:11434 0.0.0.0:* users:(("python3",pid=4242,fd=5))'
SS_HIDDEN = "LISTEN 0 5 127.0.0.1:11434 0.0.0.0:*"


def test_the_service_itself_on_its_port_is_not_foreign():
    assert release.foreign_listeners(SS_OLLAMA + "\n", "812") == []
    assert release.foreign_listeners("", "0") == []
    assert release.foreign_listeners("\n  \n", "") == []


def test_another_program_is_foreign():
    assert release.foreign_listeners(f"{SS_OLLAMA}\n{SS_OTHER}\n", "812") == [SS_OTHER]
    # The service does not run (MainPID 0): its old process's socket is someone else's.
    assert release.foreign_listeners(SS_OLLAMA, "0") == [SS_OLLAMA]
    # ss could not name the process (no CAP_SYS_PTRACE in a container): while the service
    # runs the socket is taken for its own; when it does not run, nothing of it holds the port.
    assert release.foreign_listeners(SS_HIDDEN, "812") == []
    assert release.foreign_listeners(SS_HIDDEN, "0") == [SS_HIDDEN]
    assert release.foreign_listeners(SS_HIDDEN, "") == [SS_HIDDEN]
    # A socket shared by the service and another process is held by another process too.
    shared = 'LISTEN 0 5 [::1]:11434 [::]:* users:(("x",pid=9,fd=5),("ollama",pid=812,fd=4))'
    assert release.foreign_listeners(shared, "812") == [shared]


# The module, on a layout made in a temporary directory (it reads, never writes).


@pytest.fixture
def installed(tmp_path: Path) -> dict:
    root = tmp_path / "opt" / "ollama"
    for version in ("0.32.14", "0.32.15"):
        binary = root / "versions" / version / "bin" / "ollama"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
    (root / "versions").chmod(0o755)
    os.utime(root / "versions" / "0.32.14", (1_000_000, 1_000_000))
    (root / "current").symlink_to("versions/0.32.14")
    bin_link = tmp_path / "bin" / "ollama"
    bin_link.parent.mkdir()
    bin_link.symlink_to(root / "current" / "bin" / "ollama")
    return {"install_root": str(root), "bin_link": str(bin_link)}


def test_the_module_reads_the_version_in_service_and_the_pinned_one(installed):
    result = run("ollama_install_info", {**installed, "version": "0.32.15"})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["previous_version"] == "0.32.14"
    assert result["target_installed"] is True
    assert [Path(v["path"]).name for v in result["versions"]] == ["0.32.14", "0.32.15"]
    assert result["versions"][0]["mtime"] == 1_000_000
    drift = [line for line in result["install_drift"] if "root:root" not in line]
    assert drift == [f"{installed['install_root']}/current does not point at versions/0.32.15"]
    assert result["listeners"] == [] and result["main_pid"] == ""


def test_the_module_on_a_converged_layout_finds_no_drift(installed):
    result = run("ollama_install_info", {**installed, "version": "0.32.14"})
    ownership = [line for line in result["install_drift"] if "root:root" in line]
    assert [line for line in result["install_drift"] if line not in ownership] == []
    # Owned by whoever runs the tests: root (as in CI) sees no drift at all.
    assert (ownership == []) == (os.getuid() == 0 and os.getgid() == 0)


def test_the_module_on_a_fresh_host(tmp_path):
    result = run(
        "ollama_install_info",
        {
            "install_root": str(tmp_path / "none"),
            "version": "0.32.15",
            "bin_link": str(tmp_path / "b"),
        },
    )
    assert not result.get("failed"), result
    assert result["previous_version"] == ""
    assert result["target_installed"] is False
    assert result["versions"] == []
    assert len(result["install_drift"]) == 3


def test_without_a_version_nothing_about_the_pinned_one_is_said(installed):
    result = run("ollama_install_info", installed)
    assert result["previous_version"] == "0.32.14"
    assert result["target_installed"] is False
    assert result["install_drift"] == []


def test_only_the_groups_the_host_has_are_returned(installed):
    existing = grp.getgrgid(os.getgid()).gr_name
    result = run(
        "ollama_install_info",
        {**installed, "groups": ["no-such-group-for-ollama", existing]},
    )
    assert result["groups_present"] == [existing]


def fake_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ss: str, main_pid: str, ss_rc: int = 0
) -> Path:
    """`ss` and `systemctl` stand-ins on PATH that print the given answers and log their argv."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    for name, out, rc in (("ss", ss, ss_rc), ("systemctl", main_pid + "\n", 0)):
        script = bindir / name
        script.write_text(
            f"#!/bin/sh\necho \"{name} $*\" >> {calls}\ncat <<'EOF'\n{out}\nEOF\nexit {rc}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return calls


def test_the_port_held_by_the_service_passes(installed, tmp_path, monkeypatch):
    calls = fake_commands(tmp_path, monkeypatch, SS_OLLAMA, "812")
    result = run("ollama_install_info", {**installed, "port": 11434, "service": "ollama"})
    assert not result.get("failed"), result
    assert result["listeners"] == [SS_OLLAMA]
    assert result["main_pid"] == "812"
    assert calls.read_text().splitlines() == [
        "ss -H -l -t -n -p sport = :11434",
        "systemctl show --property=MainPID --value ollama.service",
    ]


def test_the_port_held_by_another_program_fails_and_names_it(installed, tmp_path, monkeypatch):
    fake_commands(tmp_path, monkeypatch, f"{SS_OLLAMA}\n{SS_OTHER}", "812")
    result = run("ollama_install_info", {**installed, "port": 11434})
    assert result["failed"] is True
    assert result["msg"].startswith("Port 11434 is already in use by another program: ")
    assert '"python3",pid=4242' in result["msg"] and "pid=812" not in result["msg"]
    assert result["msg"].endswith("Nothing was changed.")


def test_a_failing_ss_fails_with_its_message(installed, tmp_path, monkeypatch):
    fake_commands(tmp_path, monkeypatch, "Cannot open netlink socket", "0", ss_rc=1)
    result = run("ollama_install_info", {**installed, "port": 11434})
    assert result["failed"] is True
    assert "ss -H -l -t -n -p sport = :11434 failed (rc 1)" in result["msg"]


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_is_refused(installed, port):
    result = run("ollama_install_info", {**installed, "port": port})
    assert result["failed"] is True
    assert f"port {port} is not a TCP port" in result["msg"]
