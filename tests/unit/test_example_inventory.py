"""inventories/example/, the inventory the README tells users to copy: its plan, site.yml's
syntax against it, its vaulted secrets and its host key handling, all without touching a host.

No test here opens a connection: the probe results come from the lab's fixtures through the
inventory cache, and every run has an ssh_config whose ProxyCommand fails at once, so a probe
that should not happen shows as an unreachable host instead of leaving the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gpu_tier_testing import REPO, FakeProber, lab_output, new_plugin

EXAMPLE = REPO / "inventories" / "example"
SOURCE = EXAMPLE / "gpu_tier.yml"
VAULT_PASSWORD = EXAMPLE / "vault-password.example"
PLAN = (sys.executable, str(REPO / "scripts" / "fleet-plan"), "-i", str(SOURCE))
MODEL_HOSTS = {
    "dgx-01.ai.example.com": "h100x8",
    "ws-4090-01.ai.example.com": "rtx4090",
    "ws-4090-02.ai.example.com": "rtx4090",
    "cpu-01.ai.example.com": "cpu",
}
SERVICE_HOSTS = {"gw-01.ai.example.com", "mon-01.ai.example.com"}

pytestmark = pytest.mark.controller


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of the test's own: the example's inventory cache (~/.cache/...) lands there, and
    its ssh_config sends any SSH attempt to a ProxyCommand that fails without a packet."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "config").write_text("Host *\n  ProxyCommand /bin/false\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }


def run(*command: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env(home),
        timeout=300,
    )


def seed_probe_cache(monkeypatch) -> FakeProber:
    """Build the example inventory once in this process with probes answered from the lab's
    fixtures; the plugin writes them to the example's cache (cache: true in gpu_tier.yml)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    prober = FakeProber({name: lab_output(profile) for name, profile in MODEL_HOSTS.items()})
    monkeypatch.setattr(type(new_plugin()), "prober", staticmethod(prober))
    InventoryManager(loader=DataLoader(), sources=[str(SOURCE)])
    return prober


def test_the_plan_of_the_example_fleet(home, monkeypatch):
    prober = seed_probe_cache(monkeypatch)
    # gateway and monitoring hosts are never probed (gpu_tier_probe: false in their group_vars)
    assert sorted(prober.probed) == sorted(MODEL_HOSTS)

    result = run(*PLAN, "--format", "json", home=home)
    assert result.returncode == 0, result.stderr  # every model host read (from the cache)
    rows = {row["host"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(MODEL_HOSTS) | SERVICE_HOSTS
    first_model = {
        host: (rows[host]["tier"], rows[host]["models"][0]["name"]) for host in MODEL_HOSTS
    }
    assert first_model["dgx-01.ai.example.com"][1] == "deepseek-r1:671b"
    # the example's policy serves deepseek-r1:32b on the 24 GB tier
    assert first_model["ws-4090-01.ai.example.com"] == ("medium", "deepseek-r1:32b")
    assert first_model["ws-4090-02.ai.example.com"] == ("medium", "deepseek-r1:32b")
    assert first_model["cpu-01.ai.example.com"][1] == "deepseek-r1:1.5b"
    assert rows["cpu-01.ai.example.com"]["status"] == "cpu"
    for host in SERVICE_HOSTS:
        assert rows[host]["status"] == "not probed"
        assert "gpu_tier_probe is false" in rows[host]["reason"]


def test_site_yml_syntax_checks_against_the_example_without_probing(home):
    result = run(
        str(REPO / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(SOURCE),
        "playbooks/site.yml",
        "--syntax-check",
        # the probe-free mode: the plugin probes no host, the groups and variables are there
        "-e",
        "gpu_tier_probe=false",
        "--vault-password-file",
        str(VAULT_PASSWORD),
        home=home,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "playbook: playbooks/site.yml" in result.stdout
    # nothing was probed: no host is reported unreadable, nothing was cached
    assert "gpu_unreachable" not in result.stderr
    assert not [path for path in (home / ".cache").rglob("*") if path.is_file()]
    # the same inventory as the plan sees it: every host there, none probed (a probe would
    # have made them unreachable: every SSH attempt fails at once in this HOME)
    result = run(*PLAN, "-e", "gpu_tier_probe=false", "--format", "json", home=home)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["host"] for row in rows} == set(MODEL_HOSTS) | SERVICE_HOSTS
    assert {row["status"] for row in rows} == {"not probed"}


def test_site_yml_syntax_checks_an_inventory_of_model_hosts_only(home, tmp_path):
    """A small fleet: model hosts, no gateway or monitoring group. With the probe off (a
    pipeline's lint job) no host has a tier and the monitoring play covers none: still valid."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    fleet:\n      hosts:\n        cpu-01.ai.example.com:\n"
    )
    (tmp_path / "gpu_tier.yml").write_text(
        "plugin: localllm.fleet.gpu_tier\nsource: hosts.yml\ncache: false\n"
    )
    result = run(
        str(REPO / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(tmp_path / "gpu_tier.yml"),
        "playbooks/site.yml",
        "--syntax-check",
        "-e",
        "gpu_tier_probe=false",
        home=home,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "playbook: playbooks/site.yml" in result.stdout


def show_secrets(home: Path, *vault: str) -> subprocess.CompletedProcess:
    return run(
        str(REPO / ".venv" / "bin" / "ansible"),
        "-i",
        str(SOURCE),
        "gw-01.ai.example.com",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "msg={{ {'ca': fleet_tls_ca_passphrase,"
        " 'keys': fleet_gateway_clients | map(attribute='key') | list} }}",
        "-e",
        "gpu_tier_probe=false",
        *vault,
        home=home,
    )


def test_the_example_secrets_open_with_the_example_password_only(home):
    result = show_secrets(home, "--vault-password-file", str(VAULT_PASSWORD))
    assert result.returncode == 0, result.stdout + result.stderr
    secrets = json.loads(result.stdout.split("=> ", 1)[1])["msg"]
    assert len(secrets["ca"]) >= 16  # fleet_tls refuses a shorter CA passphrase
    assert len(secrets["keys"]) == 2
    assert len(set(secrets["keys"])) == 2
    assert all(len(key) >= 32 for key in secrets["keys"])  # the gateway's minimum
    # the values are nowhere in clear text
    for path in EXAMPLE.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for value in (secrets["ca"], *secrets["keys"]):
                assert value not in text, f"{path} holds a secret in clear text"

    refused = show_secrets(home)  # no vault password at all
    assert refused.returncode != 0
    assert "vault" in (refused.stdout + refused.stderr).lower()
    (home / "wrong").write_text("not-the-example-password\n")
    refused = show_secrets(home, "--vault-password-file", str(home / "wrong"))
    assert refused.returncode != 0
    assert "Decryption failed" in refused.stdout + refused.stderr


def test_host_keys_come_from_the_reviewed_file_and_are_never_trusted_on_first_use():
    config = yaml.safe_load(SOURCE.read_text())
    assert config["host_key_checking"] == "strict"
    assert config["known_hosts"] == ["known_hosts"]
    fleet_vars = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())["all"]["children"]["fleet"][
        "vars"
    ]
    args = fleet_vars["ansible_ssh_common_args"]
    assert "-o UserKnownHostsFile={{ inventory_dir }}/known_hosts" in args
    assert "-o StrictHostKeyChecking=yes" in args
    for path in [*EXAMPLE.rglob("*"), *(REPO / "examples" / "gitops").rglob("*")]:
        if path.is_file():
            text = path.read_text().lower()
            assert "stricthostkeychecking=no" not in text, path
            assert "host_key_checking = false" not in text, path
