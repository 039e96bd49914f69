"""fleet_tls on hosts whose key and certificate are already right: one read (fleet_tls_state)
instead of the chain of ten steps, and the chain again as soon as anything differs
(roles/fleet_tls/tasks/host.yml). The role itself runs here, against local hosts whose TLS
directories are under tmp_path, with community.crypto's real steps.

The package step is left out (`--skip-tags fleet_tls_install`, and no packages for the read
to ask dpkg about): it would ask the test machine's apt. The files are root's on a host, so
the tests run as root, as CI does."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from role_testing import PlaybookRun
from test_fleet_tls_ca_once import _play, _run

pytestmark = pytest.mark.controller  # community.crypto on the control node

OPTIONS = ["--skip-tags", "fleet_tls_install", "-e", json.dumps({"_fleet_tls_packages": []})]
HOSTS = ("a", "b", "c")
CHAIN = "Make or mend this host's key and certificate"


@pytest.fixture
def fleet(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the role makes root-owned files on a host; run as root")
    return tmp_path


def _hosts_play(tmp_path: Path, **variables) -> dict:
    play = _play("a,b,c", tmp_path / "pki")
    del play["vars"]["__fleet_tls_host_state"]
    play["vars"]["fleet_tls_dir"] = str(tmp_path / "tls-{{ inventory_hostname }}")
    play["vars"].update(variables)
    return play


def _converge(tmp_path: Path, *plays: dict, options=()) -> PlaybookRun:
    ran = _run(tmp_path, list(plays) or [_hosts_play(tmp_path)], *OPTIONS, *options)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return PlaybookRun(ran.returncode, ran.stdout)


def _chain_hosts(out: str) -> list[str]:
    """The hosts whose chain of steps ran (its include was not skipped), over all plays."""
    blocks = re.findall(
        rf"^TASK \[localllm\.fleet\.fleet_tls : {re.escape(CHAIN)}\].*?\n"
        r"(.*?)(?=^TASK|^PLAY|^RUNNING)",
        out,
        re.M | re.S,
    )
    return sorted(
        host
        for block in blocks
        for host in re.findall(r"^included: .* for (.+)$", block, re.M)
        for host in host.split(", ")
    )


def _material(tmp_path: Path) -> dict[str, bytes]:
    return {
        f"{host}/{name}": (tmp_path / f"tls-{host}" / name).read_bytes()
        for host in HOSTS
        for name in ("ca.pem", "host.key", "host.crt")
    }


def _openssl(*argv: str) -> str:
    done = subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def test_a_settled_fleet_is_one_read_per_host_and_each_difference_runs_the_chain(fleet):
    tmp_path = fleet
    first = _converge(tmp_path)
    assert _chain_hosts(first.out) == list(HOSTS)
    made = _material(tmp_path)

    # Converged: the read finds nothing to do on any host; nothing runs or changes. It reads
    # once per host and run, however many plays apply the role (site.yml: up to three).
    play = _hosts_play(tmp_path)
    again = _converge(tmp_path, play, {**play, "hosts": "b,c"}, play)
    reads = re.findall(
        r"^TASK \[localllm\.fleet\.fleet_tls : Read this host's TLS material", again.out, re.M
    )
    assert len(reads) == 1, again.out
    assert _chain_hosts(again.out) == []
    assert all(again.recap(host)["changed"] == 0 for host in HOSTS), again.out
    assert _material(tmp_path) == made

    # One difference on each host: a certificate signed by another CA of the same name (a),
    # a key others can read (b), a CA file someone edited (c).
    other = tmp_path / "other-pki"
    foreign = _play("a", other)
    foreign["vars"]["fleet_tls_dir"] = str(tmp_path / "foreign-{{ inventory_hostname }}")
    del foreign["vars"]["__fleet_tls_host_state"]
    _converge(tmp_path, foreign)
    (tmp_path / "tls-a" / "host.crt").write_bytes(
        (tmp_path / "foreign-a" / "host.crt").read_bytes()
    )
    (tmp_path / "tls-b" / "host.key").chmod(0o644)
    (tmp_path / "tls-c" / "ca.pem").write_text("edited\n")

    drifted = _material(tmp_path)

    # A plan (check mode) shows each repair and makes none.
    plan = _converge(tmp_path, options=("--check", "--diff"))
    assert _chain_hosts(plan.out) == list(HOSTS)
    assert all(plan.recap(host)["changed"] > 0 for host in HOSTS), plan.out
    assert _material(tmp_path) == drifted
    assert (tmp_path / "tls-b" / "host.key").stat().st_mode & 0o777 == 0o644

    mended = _converge(tmp_path)
    assert _chain_hosts(mended.out) == list(HOSTS)
    now = _material(tmp_path)
    # a: signed again by the fleet CA, for its own key (the key stays)
    assert now["a/host.crt"] != (tmp_path / "foreign-a" / "host.crt").read_bytes()
    assert now["a/host.key"] == made["a/host.key"]
    verified = _openssl(
        "verify", "-CAfile", str(tmp_path / "pki" / "ca.crt"), str(tmp_path / "tls-a" / "host.crt")
    )
    assert ": OK" in verified, verified
    # b: the key's mode is mended, the key and certificate kept
    assert (tmp_path / "tls-b" / "host.key").stat().st_mode & 0o777 == 0o600
    assert now["b/host.key"] == made["b/host.key"] and now["b/host.crt"] == made["b/host.crt"]
    # c: the CA file is the fleet CA again
    assert now["c/ca.pem"] == made["c/ca.pem"]
    assert [mended.recap(host)["changed"] > 0 for host in HOSTS] == [True, True, True], mended.out

    settled = _converge(tmp_path)
    assert _chain_hosts(settled.out) == []
    assert all(settled.recap(host)["changed"] == 0 for host in HOSTS), settled.out


def test_new_names_a_renewal_window_and_a_forced_renewal_run_the_chain(fleet):
    tmp_path = fleet
    # Certificates of 40 days, settled under the default window of 30.
    _converge(tmp_path, _hosts_play(tmp_path, fleet_tls_validity_days=40))
    made = _material(tmp_path)

    # A name added for b only: b's certificate is signed again with it; a and c stay.
    named = _hosts_play(tmp_path)
    named["vars"]["fleet_tls_extra_sans"] = (
        "{{ ['DNS:b.example.internal'] if inventory_hostname == 'b' else [] }}"
    )
    ran = _converge(tmp_path, named)
    assert _chain_hosts(ran.out) == ["b"]
    sans = _openssl(
        "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls-b" / "host.crt")
    )
    assert "DNS:b.example.internal" in sans, sans
    assert _chain_hosts(_converge(tmp_path, named).out) == []

    # A certificate that expires within the window is renewed (a window of 45 days here).
    ran = _converge(tmp_path, _hosts_play(tmp_path, fleet_tls_renew_before_days=45))
    assert _chain_hosts(ran.out) == list(HOSTS)
    renewed = _material(tmp_path)
    assert all(renewed[f"{h}/host.crt"] != made[f"{h}/host.crt"] for h in "ac")
    assert all(renewed[f"{h}/host.key"] == made[f"{h}/host.key"] for h in HOSTS)

    # A forced renewal renews once per run, however many plays apply the role.
    forced = _hosts_play(tmp_path, fleet_tls_force_renew=True)
    ran = _converge(tmp_path, forced, {**forced, "hosts": "a,b"})
    assert _chain_hosts(ran.out) == list(HOSTS)
    assert all(_material(tmp_path)[f"{h}/host.crt"] != renewed[f"{h}/host.crt"] for h in HOSTS)
