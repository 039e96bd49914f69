"""The edges, the firewall and the fleet's certificates, seen from the hosts around them.

srv-a and srv-b are model hosts with an edge; srv-gw is the gateway (a fleet-CA client
certificate, allowed through the firewall); srv-out is an application host in
ollama_edge_allowed_cidrs holding a fleet-CA certificate. Every request crosses the lab
network for real (curl from one container to another).
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
import testinfra
from lab_checks import run_playbook

A, B, GW, OUT = "10.89.42.201", "10.89.42.202", "10.89.42.200", "10.89.42.203"
TLS = "/etc/localllm-fleet/tls"
MARKER = "edge-marker-7f3c2b91-do-not-log"


def connect(name: str):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def hosts():
    return {name: connect(name) for name in ("srv-a", "srv-b", "srv-gw", "srv-out")}


def curl(host, url: str, *args: str, cert: bool = True, timeout: int = 10):
    """(curl's exit status, HTTP status or None, body) of one request from `host`."""
    parts = ["curl", "-sS", "-m", str(timeout), "--cacert", f"{TLS}/ca.pem", "-o", "/tmp/body"]  # noqa: S108 - on the lab host
    parts += ["-w", "%{http_code}"]
    if cert:
        parts += ["--cert", f"{TLS}/host.crt", "--key", f"{TLS}/host.key"]
    command = " ".join(shlex.quote(p) for p in [*parts, *args, url])
    result = host.run(f"rm -f /tmp/body; {command}; printf '\\n%s\\n' $?; cat /tmp/body 2>&-")
    status, rc, body = [*result.stdout.split("\n", 2), "", ""][:3]
    code = int(status) if status.strip().isdigit() and status.strip() != "000" else None
    return int(rc), code, body


def post_json(host, url: str, payload: dict, **kwargs):
    body = json.dumps(payload)
    return curl(host, url, "-H", "Content-Type: application/json", "-d", body, **kwargs)


# ------------------------------------------------------------------ mTLS at the edge


def test_the_gateway_reaches_each_edge_with_its_fleet_certificate(hosts):
    for address in (A, B):
        rc, code, body = curl(hosts["srv-gw"], f"https://{address}:11443/api/version")
        assert (rc, code) == (0, 200), body
        assert json.loads(body)["version"] == "0.32.15"


def test_inference_and_read_routes_pass_through_the_edge(hosts):
    _rc, code, body = curl(hosts["srv-out"], f"https://{A}:11443/api/tags")
    assert code == 200, body
    names = {m["name"] for m in json.loads(body)["models"]}
    assert {"fleet/deepseek-r1:1.5b", "fleet/gemma3:4b"} <= names
    _rc, code, body = curl(hosts["srv-out"], f"https://{A}:11443/v1/models")
    assert code == 200, body


def test_a_client_without_a_certificate_is_refused_at_the_handshake(hosts):
    rc, code, body = curl(hosts["srv-out"], f"https://{A}:11443/api/version", cert=False)
    assert code is None and rc != 0, (rc, code, body)


def test_a_certificate_of_another_ca_is_refused(hosts):
    out = hosts["srv-out"]
    out.check_output(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=impostor -keyout /tmp/impostor.key -out /tmp/impostor.crt 2>/dev/null"
    )
    command = (
        f"curl -sS -m 10 --cacert {TLS}/ca.pem --cert /tmp/impostor.crt --key /tmp/impostor.key "
        f"-o /dev/null -w '%{{http_code}}' https://{A}:11443/api/version"
    )
    result = out.run(command)
    assert result.rc != 0 and result.stdout.strip() in ("", "000"), result.stdout + result.stderr


def test_the_edge_certificate_is_checked_by_clients(hosts):
    out = hosts["srv-out"]
    # Verifying the edge against another CA fails: the edge presents the fleet's certificate.
    command = (
        "curl -sS -m 10 --cacert /tmp/impostor.crt "
        f"--cert {TLS}/host.crt --key {TLS}/host.key https://{A}:11443/api/version"
    )
    result = out.run(command)
    assert result.rc == 60, result.stderr  # peer certificate cannot be authenticated


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("DELETE", "/api/delete"),
        ("POST", "/api/copy"),
        ("HEAD", "/api/blobs/sha256:" + "0" * 64),
        ("POST", "/api/blobs/sha256:" + "0" * 64),
    ],
)
def test_management_routes_are_refused_with_403(hosts, method, path):
    _rc, code, body = curl(
        hosts["srv-out"], f"https://{A}:11443{path}", "-X", method, "--path-as-is",
        "-d", '{"model":"deepseek-r1:1.5b"}',
    )  # fmt: skip
    assert code == 403, (code, body)
    if method != "HEAD":  # a HEAD answer has no body
        assert json.loads(body)["error"]["code"] == "route_forbidden"


@pytest.mark.parametrize(
    "path",
    [
        "//api/pull",
        "/api/./pull",
        "/v1/../api/pull",
        "/api/%70ull",
        "/v1/%2e%2e/api/pull",
        "/v1/..",
    ],
)
def test_other_spellings_of_a_route_are_refused_before_routing(hosts, path):
    _rc, code, body = curl(
        hosts["srv-out"], f"https://{A}:11443{path}", "-X", "POST", "--path-as-is",
        "-d", '{"model":"gemma3:4b"}',
    )  # fmt: skip
    assert code == 400, (code, body)
    assert json.loads(body)["error"]["code"] == "bad_path"


@pytest.mark.parametrize("path", ["/", "/api/unknown", "/API/PULL", "/api/pull%2f", "/v1x/models"])
def test_anything_else_is_not_forwarded(hosts, path):
    _rc, code, body = curl(hosts["srv-out"], f"https://{A}:11443{path}", "--path-as-is")
    assert code in (400, 404), (code, body)


def test_a_chat_streams_through_the_edge_unbuffered(hosts):
    """The first NDJSON line arrives well before the last one: nothing buffers the stream."""
    gw = hosts["srv-gw"]
    payload = json.dumps(
        {
            "model": "fleet/deepseek-r1:1.5b",
            "messages": [{"role": "user", "content": "Count slowly to twenty."}],
            "options": {"num_predict": 40},
        }
    )
    script = f"""
import json, ssl, time, urllib.request
ctx = ssl.create_default_context(cafile="{TLS}/ca.pem")
ctx.load_cert_chain("{TLS}/host.crt", "{TLS}/host.key")
req = urllib.request.Request("https://{A}:11443/api/chat", data={payload!r}.encode(),
                             headers={{"Content-Type": "application/json"}})
start = time.monotonic(); stamps = []
with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
    for line in resp:
        stamps.append(time.monotonic() - start)
print(json.dumps(stamps))
"""
    stamps = json.loads(gw.check_output(f"python3 -c {shlex.quote(script)}"))
    assert len(stamps) > 10
    assert stamps[-1] - stamps[0] > 0.3, stamps  # the stand-in paces its tokens
    assert stamps[0] < stamps[-1] / 2, stamps


# ------------------------------------------------------------------ the firewall


def test_ollama_is_unreachable_from_off_host_even_bound_to_every_address(hosts):
    a = hosts["srv-a"]
    assert "0.0.0.0:11434" in a.check_output("ss -ltnH")  # the deliberate misconfiguration
    for name in ("srv-out", "srv-gw", "srv-b"):
        result = hosts[name].run(f"curl -sS -m 4 -o /dev/null http://{A}:11434/api/version")
        assert result.rc in (7, 28), (name, result.rc, result.stderr)
    # On the host itself it still answers (the roles and the edge use it).
    assert a.run("curl -fsS -m 4 http://127.0.0.1:11434/api/version").rc == 0


def test_the_edge_is_closed_to_hosts_that_are_neither_gateways_nor_allowed(hosts):
    rc, code, _ = curl(hosts["srv-b"], f"https://{A}:11443/api/version", timeout=4)
    assert rc == 28 and code is None  # dropped, not refused: nothing tells the prober


def test_ssh_is_closed_to_other_hosts_but_open_to_the_control_node(hosts):
    result = hosts["srv-out"].run(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{A}/22'")
    assert result.rc != 0
    # A fresh SSH connection from the control node (the way every run connects).
    run = run_playbook("ping.yml")
    assert run.rc == 0 and run.failed() == 0, run.output[-2000:]


def test_the_operators_own_table_is_left_alone(hosts):
    tables = hosts["srv-b"].check_output("nft list tables")
    assert "table inet operator_audit" in tables
    assert "table inet localllm_fleet" in tables


def test_rules_are_loaded_at_boot_by_their_own_unit(hosts):
    a = hosts["srv-a"]
    unit = a.service("localllm-fleet-firewall.service")
    assert unit.is_enabled and unit.is_running
    rules = a.check_output("nft list table inet localllm_fleet")
    assert "policy drop" in rules
    assert "tcp dport 11443 ip saddr { 10.89.42.200, 10.89.42.203 } accept" in rules


# ------------------------------------------------------------------ certificates


def test_keys_stay_private_and_certificates_name_the_host(hosts):
    a = hosts["srv-a"]
    key = a.file(f"{TLS}/host.key")
    assert (key.mode, key.user) == (0o600, "root")
    text = a.check_output(f"openssl x509 -in {TLS}/host.crt -noout -text")
    assert "DNS:srv-a" in text and "IP Address:10.89.42.201" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text


def serial(host) -> str:
    return host.check_output(
        f"echo | openssl s_client -connect {A}:11443 -CAfile {TLS}/ca.pem -cert {TLS}/host.crt "
        f"-key {TLS}/host.key 2>/dev/null | openssl x509 -noout -serial"
    )


def test_certs_tag_renews_what_expires_soon_and_the_edge_serves_it(hosts):
    # Certificates that expire in ten days ...
    run = run_playbook(
        "converge.yml", "--tags", "certs",
        extra_vars={
            "fleet_tls_validity_days": 10,
            "fleet_tls_renew_before_days": 5,
            "fleet_tls_force_renew": True,
        },
    )  # fmt: skip
    assert run.rc == 0, run.output[-3000:]
    before = serial(hosts["srv-gw"])
    # ... are inside the default renewal window (30 days): the next run renews them.
    run = run_playbook("converge.yml", "--tags", "certs")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed("srv-a") > 0
    deadline = time.monotonic() + 20
    while serial(hosts["srv-gw"]) == before and time.monotonic() < deadline:
        time.sleep(1)
    assert serial(hosts["srv-gw"]) != before  # HAProxy reloaded with the new certificate
    end = hosts["srv-a"].check_output(f"openssl x509 -in {TLS}/host.crt -noout -enddate")
    assert str(time.gmtime().tm_year + 1) in end  # a full year again
    _rc, code, _ = curl(hosts["srv-gw"], f"https://{A}:11443/api/version")
    assert code == 200
    # Nothing is due any more: a third run changes nothing.
    run = run_playbook("converge.yml", "--tags", "certs")
    assert run.rc == 0 and run.changed() == 0, run.output[-3000:]


def test_a_ca_about_to_expire_stops_the_run_naming_it():
    run = run_playbook(
        "converge.yml", "--tags", "certs", extra_vars={"fleet_tls_ca_min_remaining_days": 4000}
    )
    assert run.rc != 0
    assert "The fleet CA" in run.output and "Rotating the fleet CA" in run.output


def test_no_prompt_text_in_the_edge_or_ollama_logs(hosts):
    post_json(
        hosts["srv-gw"],
        f"https://{A}:11443/api/chat",
        {"model": "fleet/gemma3:4b", "messages": [{"role": "user", "content": MARKER}]},
    )
    post_json(
        hosts["srv-gw"],
        f"https://{A}:11443/v1/chat/completions?q={MARKER}",
        {"model": "fleet/gemma3:4b", "messages": [{"role": "user", "content": MARKER}]},
    )
    logs = hosts["srv-a"].check_output("journalctl --no-pager -o cat")
    assert "/v1/chat/completions" in logs  # the request was logged ...
    assert MARKER not in logs  # ... without its prompt or query string


# ------------------------------------------------------------------ lockout protection


def test_rules_that_lock_the_control_node_out_are_undone(hosts):
    """Firewall settings that shut SSH off: the play fails for the host, which opens again."""
    run = run_playbook(
        "converge.yml",
        "--tags", "firewall",
        limit="srv-b",
        extra_vars={
            "fleet_firewall_allow_controller": False,
            "fleet_firewall_confirm_seconds": 20,
            "fleet_firewall_rules": [{"name": "lockout_test", "port": 9999, "sources": [B]}],
        },
        timeout=300,
    )  # fmt: skip
    assert run.rc != 0 and run.failed("srv-b") == 1, run.output[-2000:]
    deadline = time.monotonic() + 60
    while "localllm_fleet" in hosts["srv-b"].check_output("nft list tables"):
        assert time.monotonic() < deadline, "the rollback did not remove the table"
        time.sleep(2)
    assert "operator_audit" in hosts["srv-b"].check_output("nft list tables")
    # A normal run puts the firewall back.
    run = run_playbook("converge.yml", "--tags", "firewall", limit="srv-b")
    assert run.rc == 0, run.output[-2000:]
    assert "localllm_fleet" in hosts["srv-b"].check_output("nft list tables")
