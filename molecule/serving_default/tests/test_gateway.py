"""The gateway on srv-gw as applications see it: molecule/shared/serving_checks.py (the
official `openai` client) through the TLS endpoint published on the controller's loopback,
with the faults made for real on the lab hosts behind it: Ollama stopped or frozen on a
model host (failover), every host of a model gone (503), a key revoked with `--tags keys`
while another client streams.

Plus what only a lab host can show: LiteLLM was installed offline (srv-gw resolves no name
and reaches nothing outside the lab) and runs without privileges.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import testinfra
import yaml
from lab_checks import run_playbook
from serving_checks import *  # noqa: F403 - the shared checks are this module's tests
from serving_checks import Failover, Serving, Unavailable

SCENARIO = Path(__file__).resolve().parents[1]
GROUP_VARS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"][
    "group_vars"
]
CLIENTS = GROUP_VARS["gateway"]["fleet_gateway_clients"]
ROLES = {"all": "app-all", "limited": "app-limited", "rated": "app-rated"}
ROLES["revocable"] = "app-revocable"
R1_POOL = "pool_fleet_deepseek-r1_1.5b"


def normal(requirement: str) -> str:
    """`name==version` with the name normalised as pip does (PEP 503)."""
    name, _, version = requirement.strip().partition("==")
    name = name.split("[", 1)[0]  # litellm[proxy]: the extras are not a package of their own
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def host(name: str):
    return testinfra.get_host(f"podman://{name}")


def endpoint() -> str:
    out = subprocess.run(
        ["podman", "port", "srv-gw", "8443/tcp"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, "srv-gw publishes no port for 8443"
    return out[0]


def guard_drops() -> int:
    """Packets the lab's egress guard (scripts/lab: table inet localllm_lab) has dropped."""
    rules = subprocess.run(
        ["nft", "--json", "list", "table", "inet", "localllm_lab"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(
        expr["counter"]["packets"]
        for item in json.loads(rules)["nftables"]
        for expr in item.get("rule", {}).get("expr", [])
        if "counter" in expr
    )


def keys_run(clients: list[dict]):
    run = run_playbook(
        "converge.yml",
        "--tags",
        "keys",
        limit="srv-gw",
        extra_vars={"fleet_gateway_clients": clients},
    )
    assert run.rc == 0, run.output[-3000:]
    return run


def systemctl(name: str, *args: str) -> None:
    host(name).check_output("systemctl " + " ".join(args))


def resume(name: str) -> None:
    # A frozen service is thawed first: a stopped one only needs the start.
    host(name).run("systemctl kill --signal=SIGCONT ollama.service")
    systemctl(name, "start", "ollama.service")


def processes() -> dict[str, int]:
    gw = host("srv-gw")
    return {
        unit: int(gw.check_output(f"systemctl show -p MainPID --value {unit}.service"))
        for unit in ("haproxy", "litellm")
    }


def logs() -> str:
    """Every log on every fleet host: the whole journal and every file under /var/log."""
    parts = []
    for name in ("srv-gw", "srv-a", "srv-b"):
        lab = host(name)
        parts.append(lab.check_output("journalctl --no-pager -o cat"))
        parts.append(
            # Text files as they are; the journal's own files are read through journalctl
            # above; other binary bytes (wtmp, ...) are dropped (the marker and keys are ASCII).
            lab.run(
                "find /var/log -type f -size -50M -not -path '/var/log/journal/*' -print0"
                r" | xargs -0 -r cat 2>/dev/null | tr -cd '\11\12\15\40-\176'"
            ).stdout
        )
    return "\n".join(parts)


def fetch(url: str) -> tuple[int, str]:
    """Metrics endpoints bound to the gateway's loopback, read on the gateway."""
    result = host("srv-gw").run(f"curl -sS -m 20 -w '\\n%{{http_code}}' {url}")
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


@pytest.fixture(scope="session")
def serving() -> Serving:
    keys_run(CLIENTS)  # a revocation of an earlier verify took a key away
    keys = {
        role: next(c["key"] for c in CLIENTS if c["name"] == name) for role, name in ROLES.items()
    }
    ca = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt"
    assert ca.exists(), ca
    return Serving(
        base_url=f"https://{endpoint()}/v1",
        ca_file=str(ca),
        keys=keys,
        limited_model="gemma3",
        rated_rpm=3,
        reasoning_model="deepseek-r1",
        general_model="gemma3",
        public_names=["deepseek-r1", "fleet/deepseek-r1:1.5b", "fleet/gemma3:4b", "gemma3"],
        revoke=lambda client: keys_run([c for c in CLIENTS if c["name"] != ROLES[client]]),
        processes=processes,
        logs=logs,
        failover=Failover(
            model="fleet/deepseek-r1:1.5b",
            hosts=["srv-b", "srv-a"],
            stop=lambda name: systemctl(name, "stop", "ollama.service"),
            hang=lambda name: systemctl(name, "kill", "--signal=SIGSTOP", "ollama.service"),
            resume=resume,
            pool=R1_POOL,
        ),
        unavailable=[
            # gemma3:4b is on srv-a alone, and is the smallest of its name: no fallback.
            Unavailable(
                model="gemma3",
                stop_all=lambda: systemctl("srv-a", "stop", "ollama.service"),
                resume_all=lambda: resume("srv-a"),
            )
        ],
        metrics_url="http://127.0.0.1:8405/metrics",
        litellm_metrics_url="http://127.0.0.1:8406/metrics",
        fetch=fetch,
        long_stream_tokens=200,
    )


# ------------------------------------------------------------------ only on a lab host


def test_litellm_was_installed_offline_and_runs_unprivileged():
    gw = host("srv-gw")
    # The gateway host resolves nothing outside /etc/hosts and reaches nothing outside the lab.
    # No resolver but the host itself, where none listens (names come from /etc/hosts) ...
    resolv = gw.run("cat /etc/resolv.conf 2>/dev/null").stdout
    servers = [
        line.split()[1] for line in resolv.splitlines() if line.split()[:1] == ["nameserver"]
    ]
    assert all(server.startswith("127.") or server == "::1" for server in servers), resolv
    assert not gw.run("ss -Hlntu sport = :53").stdout.strip(), "something answers DNS on it"
    # ... and what it sends past the lab network is dropped by the lab's guard on this
    # machine: its counter grows by the attempt (TEST-NET-1, which no one answers anyway).
    before = guard_drops()
    assert gw.run("curl -sS -m 3 -o /dev/null http://192.0.2.10/").rc != 0
    assert guard_drops() > before, "the lab guard did not see the gateway's attempt"
    # LiteLLM's venv holds exactly the role's lock (name and version of every package).
    lock = (SCENARIO.parents[1] / "roles/fleet_gateway/files/litellm.lock").read_text()
    locked = {
        normal(line.split(" ")[0])
        for line in lock.splitlines()
        if "==" in line and not line.startswith("#")
    }
    frozen = gw.check_output("/opt/litellm/current/bin/python -m pip freeze --all")
    installed = {
        normal(line)
        for line in frozen.splitlines()
        if "==" in line and not line.startswith(("pip==", "setuptools==", "wheel=="))
    }
    assert installed == locked, (sorted(installed - locked), sorted(locked - installed))
    service = gw.service("litellm")
    assert service.is_running and service.is_enabled
    user = gw.check_output("systemctl show -p User --value litellm.service")
    assert user == "litellm"
    pid = gw.check_output("systemctl show -p MainPID --value litellm.service")
    status = gw.file(f"/proc/{pid}/status").content_string
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert effective.split()[1] == "0000000000000000", effective
    # Listens on loopback only: applications come through HAProxy.
    listening = gw.check_output("ss -Htlnp")
    litellm_lines = [line for line in listening.splitlines() if "4000" in line.split()[3]]
    assert litellm_lines and all("127.0.0.1:4000" in line for line in litellm_lines), listening


def test_the_keys_file_holds_no_key_and_is_private():
    gw = host("srv-gw")
    keys_file = gw.file("/etc/litellm/keys.json")
    assert (keys_file.mode, keys_file.user, keys_file.group) == (0o640, "root", "litellm")
    text = keys_file.content_string
    assert not [c["name"] for c in CLIENTS if c["key"] in text]
    # app-revocable may have been revoked by the revocation check already.
    names = {entry["name"] for entry in json.loads(text)["clients"]}
    assert {"app-all", "app-limited", "app-rated"} <= names <= {c["name"] for c in CLIENTS}
    pepper = gw.file("/etc/litellm/keys.pepper")
    assert (pepper.mode, pepper.user, pepper.group) == (0o640, "root", "litellm")
    # Nobody else on the host reads either.
    assert gw.run("sudo -u nobody cat /etc/litellm/keys.pepper").rc != 0


def test_the_endpoint_is_open_and_litellm_and_the_pools_are_private():
    out = host("srv-out")
    ok = out.run(
        "curl -sS -m 5 -o /dev/null -w '%{http_code}' -k https://10.89.42.200:8443/v1/models"
    )
    assert ok.stdout == "401", ok.stdout + ok.stderr
    for port in (4000, 11500, 8406):
        refused = out.run(f"curl -sS -m 3 -o /dev/null http://10.89.42.200:{port}/")
        assert refused.rc != 0, f"port {port} of the gateway answered srv-out"
