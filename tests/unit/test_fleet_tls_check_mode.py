"""fleet_tls under `--check --diff`, as a merge request's plan runs it (docs/gitops.md): before
the first rollout (no CA yet) and for a host new to the fleet (no TLS directory yet), the plan
says what a real run would do, changes nothing and fails nothing. Before, check mode stopped
at the CA's private key (its directory did not exist) and at the new host's key.

The hosts are local (their TLS directories under tmp_path); the package check is left out
(`--skip-tags fleet_tls_install`: it would ask the test machine's apt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from role_testing import PlaybookRun
from test_fleet_tls_ca_once import PASSPHRASE, _play, _run

pytestmark = pytest.mark.controller  # community.crypto on the control node

SKIP_PACKAGES = ["--skip-tags", "fleet_tls_install"]


def _hosts_play(tmp_path: Path, ca_dir: Path) -> dict:
    """The whole role (the CA and the hosts' part) for hosts a and b, whose TLS directories
    are under tmp_path."""
    play = _play("a,b", ca_dir)
    del play["vars"]["__fleet_tls_host_state"]
    play["vars"]["fleet_tls_dir"] = str(tmp_path / "tls-{{ inventory_hostname }}")
    return play


def _skipped(out: str, name: str) -> list[str]:
    """The hosts a task of the role was skipped on."""
    block = re.search(
        rf"^TASK \[localllm\.fleet\.fleet_tls : {re.escape(name)}\].*?\n(.*?)(?=^TASK|^PLAY RECAP)",
        out,
        re.M | re.S,
    )
    assert block, name
    return sorted(re.findall(r"^skipping: \[(\w)\]", block[1], re.M))


def test_a_plan_before_the_first_rollout_changes_and_fails_nothing(tmp_path):
    ca_dir = tmp_path / "pki"
    ran = _run(tmp_path, [_hosts_play(tmp_path, ca_dir)], "--check", "--diff", *SKIP_PACKAGES)
    out = ran.stdout
    assert ran.returncode == 0, out + ran.stderr
    # The plan says the CA is made by a real run, and makes nothing: no CA directory, no
    # host directory.
    assert "there is no fleet CA in" in out
    assert not ca_dir.exists()
    assert not list(tmp_path.glob("tls-*"))
    # What needs the CA's key or a host's directory waits for a real run.
    for name in (
        "Make the CA directory (only the operator reads it)",
        "Make the CA's private key (encrypted with the passphrase)",
        "Describe the CA",
        "Self-sign the CA certificate",
    ):
        assert _skipped(out, name) == ["a"], name
    for name in (
        "Install the fleet CA certificate",
        "Make the host's private key (it never leaves the host)",
        "Make the certificate request (names from the inventory)",
        "Sign it with the fleet CA (on the control node)",
    ):
        assert _skipped(out, name) == ["a", "b"], name


def test_a_plan_for_hosts_new_to_a_fleet_with_its_ca_shows_the_ca_they_would_get(tmp_path):
    ca_dir = tmp_path / "pki"
    # The CA, made by an earlier rollout (its part of the role only).
    made = _run(tmp_path, [_play("a", ca_dir)])
    assert made.returncode == 0, made.stdout + made.stderr
    # A real run does not look for the key first: it makes or checks it either way.
    assert _skipped(made.stdout, "Look for the CA's private key (check mode)") == ["a"]
    key_before = (ca_dir / "ca.key").read_bytes()
    ran = _run(tmp_path, [_hosts_play(tmp_path, ca_dir)], "--check", "--diff", *SKIP_PACKAGES)
    out = ran.stdout
    assert ran.returncode == 0, out + ran.stderr
    assert "there is no fleet CA in" not in out
    # The CA is read and checked as in a real run, and is left as it was.
    assert _skipped(out, "Check the CA is a CA and will outlive the renewal window") == []
    assert (ca_dir / "ca.key").read_bytes() == key_before
    # Each new host: its directory and the CA certificate would be installed (the diff shows
    # the certificate), its key and certificate wait for a real run; nothing is made.
    run = PlaybookRun(ran.returncode, out)
    assert run.recap("a")["changed"] == 2 and run.recap("b")["changed"] == 2, out
    assert out.count("+-----BEGIN CERTIFICATE-----") == 2, out
    assert _skipped(out, "Make the host's private key (it never leaves the host)") == ["a", "b"]
    assert not list(tmp_path.glob("tls-*"))
    assert PASSPHRASE not in out + ran.stderr
