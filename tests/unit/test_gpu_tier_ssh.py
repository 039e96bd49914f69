"""The SSH prober against a real SSH server (paramiko's, in-process, on a loopback port).

Every failure an operator meets in a fleet: unknown, changed and revoked host keys, wrong
keys, a host that hangs, one that says nothing, one that floods, a closed port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import parse_probe_output
from ansible_collections.localllm.fleet.plugins.plugin_utils import ssh_probe as sp

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
PROBE_OUTPUT = (FIXTURES / "probe" / "lab-rtx4090.txt").read_text()
PORTS = range(43150, 43200)  # this area's share of the loopback ports (bench: 43000-43149)


def _listen() -> socket.socket:
    for port in PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(32)
        return sock
    raise RuntimeError("no free port in 43150-43199")


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: SshServer) -> None:
        self.server = server
        self.command: str | None = None
        self.ready = threading.Event()

    def check_channel_request(self, kind, chanid):
        return (
            paramiko.OPEN_SUCCEEDED
            if kind == "session"
            else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == "fleet" and key.asbytes() == self.server.client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_exec_request(self, channel, command):
        self.command = command.decode()
        self.ready.set()
        return True


class SshServer:
    """A loopback SSH server answering every exec with `behaviour` (probe, hang, flood)."""

    def __init__(self, host_key: paramiko.PKey, client_key: paramiko.PKey) -> None:
        self.host_key = host_key
        self.client_key = client_key
        self.behaviour = "probe"
        self.output = PROBE_OUTPUT
        self.commands: list[str] = []
        self.active = 0
        self.peak = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        self._sock = _listen()
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        interface = _Interface(self)
        try:
            transport.start_server(server=interface)
            channel = transport.accept(5)
            if channel is None or not interface.ready.wait(5):
                return
            with self._lock:
                self.commands.append(interface.command or "")
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                time.sleep(self.delay)
                if self.behaviour == "probe":
                    channel.sendall(self.output.encode())
                    channel.send_exit_status(0)
                elif self.behaviour == "hang":
                    channel.sendall(b"@@localllm-probe 1\n")
                    time.sleep(3)
                elif self.behaviour == "flood":
                    with contextlib.suppress(Exception):
                        for _ in range(200):
                            channel.sendall(b"x" * 8192)
                channel.close()
            finally:
                with self._lock:
                    self.active -= 1
        except Exception:  # noqa: S110 - a client hanging up mid-handshake is part of the tests
            pass
        finally:
            time.sleep(0.05)
            transport.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    client = paramiko.ECDSAKey.generate()
    client.write_private_key_file(str(directory / "id_ecdsa"))
    other = paramiko.ECDSAKey.generate()
    other.write_private_key_file(str(directory / "other_ecdsa"))
    return {
        "host": paramiko.ECDSAKey.generate(),
        "client": client,
        "client_file": str(directory / "id_ecdsa"),
        "other_file": str(directory / "other_ecdsa"),
    }


@pytest.fixture
def server(keys):
    server = SshServer(keys["host"], keys["client"])
    yield server
    server.close()


def known_hosts(path: Path, server: SshServer, key: paramiko.PKey | None = None, marker="") -> str:
    key = key or server.host_key
    prefix = f"{marker} " if marker else ""
    path.write_text(f"{prefix}[127.0.0.1]:{server.port} {key.get_name()} {key.get_base64()}\n")
    return str(path)


def probe(server, keys, tmp_path, known: str | None = None, **settings) -> tuple[sp.Outcome, list]:
    warnings: list[str] = []
    target = sp.Target(
        "gpu01", "127.0.0.1", server.port, "fleet", (settings.pop("key_file", keys["client_file"]),)
    )
    files = (known,) if known else (str(tmp_path / "empty_known_hosts"),)
    config = sp.ProbeSettings(known_hosts=files, **{"connect_timeout": 3.0, **settings})
    outcome = sp.probe_many([target], config, warnings.append)["gpu01"]
    return outcome, warnings


# ------------------------------------------------------------------------------ success


def test_one_command_returns_the_probe_output(server, keys, tmp_path):
    outcome, warnings = probe(server, keys, tmp_path, known_hosts(tmp_path / "kh", server))
    assert outcome.error is None
    assert outcome.exit_status == 0
    assert parse_probe_output(outcome.output).nvidia_smi.gpus[0].name == "NVIDIA GeForce RTX 4090"
    assert server.commands == [sp.PROBE_COMMAND]
    assert server.commands[0].startswith("/bin/sh -c ")
    assert warnings == []


def test_hashed_known_hosts_entries_are_understood(server, keys, tmp_path):
    entries = paramiko.HostKeys()
    entries.add(f"[127.0.0.1]:{server.port}", server.host_key.get_name(), server.host_key)
    line = paramiko.hostkeys.HostKeyEntry(
        [paramiko.HostKeys.hash_host(f"[127.0.0.1]:{server.port}")], server.host_key
    ).to_line()
    (tmp_path / "kh").write_text(line)
    outcome, _ = probe(server, keys, tmp_path, str(tmp_path / "kh"))
    assert outcome.error is None


# ------------------------------------------------------------------------------ host keys


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_the_fix(server, keys, tmp_path):
    outcome, _ = probe(server, keys, tmp_path)
    assert outcome.output is None
    assert (
        f"unknown host key ecdsa-sha2-nistp256 {sp.fingerprint(server.host_key)}" in outcome.error
    )
    assert f"ssh-keyscan -p {server.port} -t ecdsa-sha2-nistp256 127.0.0.1" in outcome.error
    assert "host_key_checking: accept-new" in outcome.error
    assert server.commands == []


def test_accept_new_records_the_key_and_warns(server, keys, tmp_path):
    path = tmp_path / "kh"
    path.write_text("")
    outcome, warnings = probe(server, keys, tmp_path, str(path), host_key_checking="accept-new")
    assert outcome.error is None
    assert "accepted NEW host key" in warnings[0]
    assert f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256" in path.read_text()
    again, warnings = probe(server, keys, tmp_path, str(path))  # strict now knows it
    assert again.error is None
    assert warnings == []


def test_a_changed_host_key_is_refused_even_with_accept_new(server, keys, tmp_path):
    stale = known_hosts(tmp_path / "kh", server, paramiko.ECDSAKey.generate())
    outcome, _ = probe(server, keys, tmp_path, stale, host_key_checking="accept-new")
    assert "CHANGED" in outcome.error
    assert "man-in-the-middle" in outcome.error
    assert f"ssh-keygen -R '[127.0.0.1]:{server.port}'" in outcome.error
    assert server.commands == []


def test_a_revoked_host_key_is_refused(server, keys, tmp_path):
    path = tmp_path / "kh"
    known_hosts(path, server, marker="@revoked")
    outcome, _ = probe(server, keys, tmp_path, str(path), host_key_checking="accept-new")
    assert "@revoked" in outcome.error
    assert server.commands == []


# ------------------------------------------------------------------------------ failures


def test_a_wrong_key_fails_authentication_with_what_to_check(server, keys, tmp_path):
    kh = known_hosts(tmp_path / "kh", server)
    outcome, _ = probe(server, keys, tmp_path, kh, key_file=keys["other_file"])
    assert f"authentication failed for fleet@127.0.0.1:{server.port}" in outcome.error
    assert "ansible_ssh_private_key_file" in outcome.error


def test_a_missing_key_file_is_named(server, keys, tmp_path):
    kh = known_hosts(tmp_path / "kh", server)
    outcome, _ = probe(server, keys, tmp_path, kh, key_file=str(tmp_path / "nope"))
    assert f"private key {tmp_path / 'nope'} does not exist" in outcome.error


def test_a_host_that_hangs_hits_the_command_timeout_with_its_partial_output(server, keys, tmp_path):
    server.behaviour = "hang"
    started = time.monotonic()
    outcome, _ = probe(
        server, keys, tmp_path, known_hosts(tmp_path / "kh", server), command_timeout=1.0
    )
    assert time.monotonic() - started < 2.5
    assert "did not finish within 1 s" in outcome.error
    assert "@@localllm-probe 1" in outcome.error


def test_a_host_that_floods_is_cut_off(server, keys, tmp_path):
    server.behaviour = "flood"
    outcome, _ = probe(server, keys, tmp_path, known_hosts(tmp_path / "kh", server))
    assert "more than 1048576 bytes" in outcome.error


def test_a_port_that_accepts_but_never_speaks_ssh(keys, tmp_path):
    silent = _listen()
    try:
        target = sp.Target("quiet", "127.0.0.1", silent.getsockname()[1], "fleet")
        settings = sp.ProbeSettings(known_hosts=(), connect_timeout=0.5)
        started = time.monotonic()
        outcome = sp.probe_many([target], settings)["quiet"]
        assert time.monotonic() - started < 2
        assert "no SSH server answered" in outcome.error
    finally:
        silent.close()


def test_a_closed_port_is_refused():
    sock = _listen()
    port = sock.getsockname()[1]
    sock.close()
    outcome = sp.probe_many([sp.Target("down", "127.0.0.1", port, "fleet")], sp.ProbeSettings())[
        "down"
    ]
    assert f"connection refused by 127.0.0.1:{port}" in outcome.error


def test_the_pool_is_bounded_and_one_bad_host_does_not_affect_the_others(server, keys, tmp_path):
    server.delay = 0.2
    kh = known_hosts(tmp_path / "kh", server)
    good = [
        sp.Target(f"gpu{i}", "127.0.0.1", server.port, "fleet", (keys["client_file"],))
        for i in range(6)
    ]
    bad = sp.Target("bad", "127.0.0.1", server.port, "fleet", (keys["other_file"],))
    settings = sp.ProbeSettings(known_hosts=(kh,), pool_size=2, connect_timeout=3.0)
    outcomes = sp.probe_many([*good, bad], settings)
    assert server.peak <= 2
    assert all(outcomes[t.name].error is None for t in good)
    assert "authentication failed" in outcomes["bad"].error


def test_local_connection_runs_the_probe_in_a_local_shell():
    outcome = sp.probe_many(
        [sp.Target("me", "localhost", 0, connection="local")], sp.ProbeSettings()
    )
    report = parse_probe_output(outcome["me"].output)
    assert report.cpu_count is not None
    assert report.memory_mib is not None


# ------------------------------------------------------------------------------ connection settings


def test_target_from_ansible_vars():
    target = sp.target_from_vars(
        "gpu01",
        {
            "ansible_host": "10.0.0.7",
            "ansible_port": "2222",
            "ansible_user": "fleet",
            "ansible_ssh_private_key_file": "~/keys/fleet",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/etc/fleet/known_hosts "
            "-o StrictHostKeyChecking=yes",
        },
    )
    assert (target.host, target.port, target.user) == ("10.0.0.7", 2222, "fleet")
    assert target.key_files[0].endswith("/keys/fleet")
    assert target.known_hosts == ("/etc/fleet/known_hosts",)
    assert target.server_name == "[10.0.0.7]:2222"
    assert target.signature == "ssh:fleet@10.0.0.7:2222"


def test_ssh_config_fills_what_the_inventory_leaves_out(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host gpu*\n  HostName %h.dc1.example\n  Port 2200\n  User ops\n"
        "  IdentityFile ~/.ssh/ops_ed25519\n  ProxyJump bastion.example:2022\n"
    )
    target = sp.target_from_vars("gpu07", {}, str(config))
    assert (target.host, target.port, target.user) == ("gpu07.dc1.example", 2200, "ops")
    assert target.key_files[0].endswith(".ssh/ops_ed25519")
    assert target.proxy_command == "ssh -W gpu07.dc1.example:2200 -p 2022 bastion.example"
    override = sp.target_from_vars(
        "gpu07", {"ansible_port": 22, "ansible_user": "fleet"}, str(config)
    )
    assert (override.port, override.user) == (22, "fleet")


def test_proxy_command_from_ssh_args_gets_its_tokens():
    target = sp.target_from_vars(
        "db",
        {
            "ansible_host": "10.1.1.1",
            "ansible_user": "fleet",
            "ansible_ssh_common_args": "-o 'ProxyCommand=ssh -W %h:%p jump'",
        },
    )
    assert target.proxy_command == "ssh -W 10.1.1.1:22 jump"


@pytest.mark.parametrize(
    ("variables", "match"),
    [
        ({"ansible_connection": "community.docker.docker"}, "'docker' cannot be probed"),
        ({"ansible_port": "ssh"}, "'ssh' is not a port number"),
        ({"ansible_port": 70000}, "70000 is not a port number"),
        ({"ansible_ssh_common_args": "-o 'unclosed"}, "cannot split the SSH arguments"),
    ],
)
def test_unusable_connection_settings_are_explained(variables, match):
    with pytest.raises(sp.TargetError, match=match):
        sp.target_from_vars("h", variables)


def test_local_connection_needs_no_ssh():
    target = sp.target_from_vars("localhost", {"ansible_connection": "ansible.builtin.local"})
    assert (target.connection, target.signature) == ("local", "local")
