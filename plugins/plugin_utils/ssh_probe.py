# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Run the GPU probe on many hosts at once: paramiko over SSH, or a local shell.

Controller-side only (it needs paramiko), hence plugin_utils and not module_utils. One SSH
session per host runs PROBE_SCRIPT as a single command; a bounded thread pool runs the
sessions in parallel, each with a connect timeout (TCP, banner, auth) and an overall command
deadline. Host keys are checked against known_hosts files loaded once per run; an unknown
key is refused (or, with host_key_checking=accept-new, recorded and warned about), a
changed or revoked key is always refused. Every failure becomes `Outcome.error`, a sentence
an operator can act on; nothing here raises for a single host.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import logging
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import PROBE_SCRIPT

# paramiko logs transport failures at ERROR with tracebacks; with no handler configured,
# Python's last-resort handler would print them. Our errors are reported per host instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: The one remote command. `/bin/sh -c` whatever the login shell is.
PROBE_COMMAND = "/bin/sh -c " + shlex.quote(PROBE_SCRIPT)
#: A probe prints about 1 KiB per GPU; a host printing more than this is broken or hostile.
MAX_OUTPUT_BYTES = 1 << 20

HOST_KEY_POLICIES = ("strict", "accept-new")
SSH_CONNECTIONS = ("ssh", "paramiko", "paramiko_ssh", "smart")


class TargetError(ValueError):
    """A host's connection settings cannot be used by the probe."""


@dataclass(frozen=True)
class Target:
    """Where and how to run the probe for one inventory host."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    key_files: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    known_hosts: tuple[str, ...] = ()
    proxy_command: str | None = None
    connection: str = "ssh"  # "ssh" or "local"

    @property
    def server_name(self) -> str:
        """How known_hosts names this server (OpenSSH: bare host on port 22, else [host]:port)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def signature(self) -> str:
        """What a cached probe result is valid for: a moved host must be probed again."""
        if self.connection == "local":
            return "local"
        return f"ssh:{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Outcome:
    """The probe's raw result for one host: output (stdout) or an error sentence."""

    name: str
    output: str | None
    error: str | None = None
    exit_status: int | None = None
    stderr: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ProbeSettings:
    known_hosts: tuple[str, ...] = ("~/.ssh/known_hosts",)
    host_key_checking: str = "strict"
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    pool_size: int = 50


# ------------------------------------------------------------------------------ targets


def _ssh_arg_options(args: str) -> dict[str, Any]:
    """The -o/-i/-J/-p/-F options of ansible_ssh_common_args/extra_args, lower-case keys."""
    options: dict[str, Any] = {"identityfile": []}
    try:
        tokens = shlex.split(args or "")
    except ValueError as error:
        raise TargetError(f"cannot split the SSH arguments {args!r}: {error}") from error
    position = 0
    flags = {"-i": "identityfile", "-J": "proxyjump", "-p": "port", "-F": "configfile"}
    while position < len(tokens):
        token = tokens[position]
        position += 1
        value = None
        key = None
        if token.startswith("-o"):
            text = (token[2:] or (tokens[position] if position < len(tokens) else "")).strip()
            if not token[2:]:
                position += 1
            if not text:
                continue
            if "=" in text.split(None, 1)[0]:
                key, value = text.split("=", 1)
            elif " " in text:
                key, value = text.split(None, 1)
            else:
                continue
            key = key.strip().lower()
        elif token[:2] in flags:
            key = flags[token[:2]]
            value = token[2:] or (tokens[position] if position < len(tokens) else "")
            if not token[2:]:
                position += 1
        if key is None or value is None:
            continue
        value = value.strip()
        if key == "identityfile":
            options["identityfile"].append(value)
        else:
            options.setdefault(key, value)
    return options


def _substitute(command: str, host: str, port: int, user: str | None) -> str:
    """OpenSSH's %h %p %r %n %% tokens in a ProxyCommand given on the command line."""
    out = []
    index = 0
    while index < len(command):
        char = command[index]
        if char == "%" and index + 1 < len(command):
            token = command[index + 1]
            replacement = {"h": host, "p": str(port), "r": user or "", "n": host, "%": "%"}.get(
                token
            )
            if replacement is not None:
                out.append(replacement)
                index += 2
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _proxy_from_jump(jump: str) -> str:
    """ProxyJump as the equivalent ProxyCommand (`ssh -W %h:%p`), since paramiko has no -J."""
    hops = [h.strip() for h in jump.split(",") if h.strip()]
    if not hops or jump.strip().lower() == "none":
        return ""
    last = hops[-1]
    command = ["ssh", "-W", "%h:%p"]
    if len(hops) > 1:
        command += ["-J", ",".join(hops[:-1])]
    if last.startswith("ssh://"):
        last = last[len("ssh://") :]
    if ":" in last.rsplit("@", 1)[-1]:
        last, port = last.rsplit(":", 1)
        command += ["-p", port]
    command.append(last)
    return " ".join(shlex.quote(c) if c != "%h:%p" else c for c in command)


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, ""):
            return value
    return None


def _port(value: Any, source: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise TargetError(f"{source} {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise TargetError(f"{source} {port} is not a port number (1-65535)")
    return port


def _expand(path: str, base_dir: str | None) -> str:
    path = os.path.expanduser(os.path.expandvars(str(path)))
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return os.path.normpath(path)


def lookup_ssh_config(path: str | None, alias: str) -> dict[str, Any]:
    """The ssh_config(5) settings for `alias` (empty when there is no such file)."""
    if not path:
        return {}
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return {}
    import paramiko  # noqa: PLC0415 - only probing needs paramiko (a cached build does not)

    try:
        return dict(paramiko.SSHConfig.from_path(path).lookup(alias))
    except Exception as error:  # a broken ssh config must not break the inventory
        raise TargetError(f"cannot read ssh config {path}: {error}") from error


def target_from_vars(
    name: str,
    variables: Mapping[str, Any],
    ssh_config_file: str | None = None,
    default_user: str | None = None,
    default_key_file: str | None = None,
) -> Target:
    """Resolve one host's connection like Ansible's ssh plugin would, from templated vars.

    Inventory variables win (ansible_host, ansible_port, ansible_user,
    ansible_ssh_private_key_file, ansible_password), then ansible.cfg defaults, then
    -o/-i/-J options in ansible_ssh_common_args/ansible_ssh_extra_args, then ssh_config.
    """
    connection = str(variables.get("ansible_connection") or "ssh").split(".")[-1]
    if connection == "local":
        return Target(name=name, host="localhost", port=0, connection="local")
    if connection not in SSH_CONNECTIONS:
        raise TargetError(
            f"ansible_connection {connection!r} cannot be probed (the probe speaks SSH or runs "
            "locally); pin this host's tier with gpu_tier_pin or reach it over SSH"
        )
    host = str(_first(variables.get("ansible_host"), variables.get("ansible_ssh_host"), name))
    args = " ".join(
        str(variables.get(k) or "") for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
    )
    options = _ssh_arg_options(args)
    config = lookup_ssh_config(options.get("configfile") or ssh_config_file, host)
    hostname = str(config.get("hostname") or host)

    port_value = _first(
        variables.get("ansible_port"),
        variables.get("ansible_ssh_port"),
        options.get("port"),
        config.get("port"),
        22,
    )
    port = _port(port_value, "ansible_port")
    user = _first(
        variables.get("ansible_user"),
        variables.get("ansible_ssh_user"),
        default_user,
        options.get("user"),
        config.get("user"),
    )
    if user is None:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry: let the server refuse a clear "None"
            user = None
    key = _first(
        variables.get("ansible_ssh_private_key_file"),
        variables.get("ansible_private_key_file"),
        default_key_file,
    )
    keys = [key] if key else list(options["identityfile"]) or list(config.get("identityfile") or [])
    key_files = tuple(_expand(k, None) for k in keys)

    known = []
    for source in (options.get("userknownhostsfile"), config.get("userknownhostsfile")):
        if source:
            known.extend(_expand(k, None) for k in str(source).split())
    proxy = _first(options.get("proxycommand"), config.get("proxycommand"))
    if proxy and str(proxy).lower() != "none":
        proxy = (
            _substitute(str(proxy), hostname, port, user) if options.get("proxycommand") else proxy
        )
    else:
        proxy = None
        jump = _first(options.get("proxyjump"), config.get("proxyjump"))
        if jump:
            proxy = _substitute(_proxy_from_jump(str(jump)), hostname, port, user) or None
    password = _first(variables.get("ansible_password"), variables.get("ansible_ssh_pass"))
    return Target(
        name=name,
        host=hostname,
        port=port,
        user=str(user) if user is not None else None,
        key_files=key_files,
        password=str(password) if password is not None else None,
        known_hosts=tuple(known),
        proxy_command=str(proxy) if proxy else None,
    )


# ------------------------------------------------------------------------------ host keys


def fingerprint(key: Any) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """OpenSSH known_hosts files, read once and shared by every connection of a run.

    Plain and hashed names and `[host]:port` entries come from paramiko's parser; `@revoked`
    lines are honoured (those keys are refused); `@cert-authority` lines are skipped
    (paramiko does not verify host certificates). accept-new appends to the first file.
    """

    def __init__(self, files: Sequence[str]) -> None:
        import paramiko  # noqa: PLC0415 - only probing needs paramiko

        self._paramiko = paramiko
        self.files = tuple(os.path.expanduser(f) for f in files)
        self.keys = paramiko.HostKeys()
        self.revoked: set[bytes] = set()
        self.skipped_cert_authorities = 0
        self._lock = threading.Lock()
        for path in self.files:
            if os.path.isfile(path):
                self._load(path)

    def _load(self, path: str) -> None:
        from paramiko.hostkeys import HostKeyEntry  # noqa: PLC0415

        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                marker = None
                if line.startswith("@"):
                    marker, _, line = line.partition(" ")
                    line = line.strip()
                try:
                    entry = HostKeyEntry.from_line(line, number)
                except Exception:  # noqa: S112 - a bad line is skipped, as OpenSSH does
                    continue
                if entry is None:
                    continue
                if marker == "@revoked":
                    self.revoked.add(entry.key.asbytes())
                elif marker is not None:
                    self.skipped_cert_authorities += 1
                else:
                    for hostname in entry.hostnames:
                        self.keys.add(hostname, entry.key.get_name(), entry.key)

    def lookup(self, server_name: str) -> dict[str, Any]:
        with self._lock:
            found = self.keys.lookup(server_name)
            if not found:
                return {}
            return {kind: key for kind, key in found.items() if key.asbytes() not in self.revoked}

    def is_revoked(self, key: Any) -> bool:
        return key.asbytes() in self.revoked

    def accept(self, server_name: str, key: Any) -> str:
        """Record a new key (accept-new) in memory and in the first known_hosts file."""
        with self._lock:
            self.keys.add(server_name, key.get_name(), key)
            path = self.files[0] if self.files else os.path.expanduser("~/.ssh/known_hosts")
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"{server_name} {key.get_name()} {key.get_base64()}\n")
            return path


class HostKeyRefused(Exception):
    """An unknown or revoked host key (the message says how to proceed)."""


def _missing_key_policy(
    known: KnownHosts, mode: str, target: Target, warn: Callable[[str], None]
) -> Any:
    import paramiko  # noqa: PLC0415

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            kind = key.get_name()
            if known.is_revoked(key):
                raise HostKeyRefused(
                    f"host key {kind} {fingerprint(key)} of {hostname} is marked @revoked in "
                    "known_hosts: refusing to connect"
                )
            files = ", ".join(known.files) or "no known_hosts file"
            if mode == "accept-new":
                path = known.accept(hostname, key)
                warn(
                    f"{target.name}: accepted NEW host key {kind} {fingerprint(key)} for "
                    f"{hostname} and added it to {path} (host_key_checking: accept-new)"
                )
                return
            port_flag = f"-p {target.port} " if target.port != 22 else ""
            raise HostKeyRefused(
                f"unknown host key {kind} {fingerprint(key)} for {hostname} (not in {files}): "
                f"verify it out of band, then add it (ssh-keyscan {port_flag}-t {kind} "
                f"{target.host} >> {known.files[0] if known.files else '~/.ssh/known_hosts'}), "
                "or set host_key_checking: accept-new to trust keys on first use"
            )

    return Policy()


# ------------------------------------------------------------------------------ running


class _Timeout(Exception):
    def __init__(self, partial: bytes) -> None:
        super().__init__("timeout")
        self.partial = partial


def _run_remote(client: Any, command: str, timeout: float) -> tuple[bytes, bytes, int | None]:
    deadline = time.monotonic() + timeout
    channel = client.get_transport().open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        channel.shutdown_write()
        out = bytearray()
        err = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout(bytes(out))
            channel.settimeout(remaining)
            try:
                data = channel.recv(65536)
            except TimeoutError:
                raise _Timeout(bytes(out)) from None
            while channel.recv_stderr_ready() and len(err) < MAX_OUTPUT_BYTES:
                err += channel.recv_stderr(65536)
            if not data:
                break
            out += data
            if len(out) > MAX_OUTPUT_BYTES:
                raise OverflowError(f"the host printed more than {MAX_OUTPUT_BYTES} bytes")
        while not channel.exit_status_ready():
            if time.monotonic() > deadline:
                raise _Timeout(bytes(out))
            time.sleep(0.005)
        while channel.recv_stderr_ready() and len(err) < MAX_OUTPUT_BYTES:
            err += channel.recv_stderr(65536)
        return bytes(out), bytes(err), channel.recv_exit_status()
    finally:
        channel.close()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _tail(data: bytes | str, limit: int = 200) -> str:
    text = _decode(data) if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return repr(text[-limit:]) if text else "nothing"


def probe_local(target: Target, settings: ProbeSettings) -> Outcome:
    start = time.monotonic()
    try:
        result = subprocess.run(
            ["/bin/sh", "-c", PROBE_SCRIPT],
            capture_output=True,
            timeout=settings.command_timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        return Outcome(
            target.name,
            None,
            f"the local probe did not finish within {settings.command_timeout:g} s "
            f"(partial output: {_tail(error.stdout or b'')})",
            seconds=time.monotonic() - start,
        )
    except OSError as error:
        return Outcome(target.name, None, f"cannot run /bin/sh locally: {error}")
    return Outcome(
        target.name,
        _decode(result.stdout[:MAX_OUTPUT_BYTES]),
        None,
        result.returncode,
        _decode(result.stderr[-4096:]),
        time.monotonic() - start,
    )


def probe_ssh(
    target: Target,
    settings: ProbeSettings,
    known: KnownHosts,
    warn: Callable[[str], None],
) -> Outcome:
    """Probe one host over SSH; every failure is an Outcome with an actionable error."""
    import paramiko  # noqa: PLC0415

    start = time.monotonic()
    where = f"{target.host}:{target.port}"
    who = f"{target.user}@{where}" if target.user else where

    def failed(message: str) -> Outcome:
        return Outcome(target.name, None, message, seconds=time.monotonic() - start)

    for key_file in target.key_files:
        if not os.path.isfile(key_file):
            return failed(
                f"private key {key_file} does not exist (ansible_ssh_private_key_file or "
                "IdentityFile): fix the path"
            )
    client = paramiko.SSHClient()
    sock = None
    try:
        for kind, key in known.lookup(target.server_name).items():
            client.get_host_keys().add(target.server_name, kind, key)
        client.set_missing_host_key_policy(
            _missing_key_policy(known, settings.host_key_checking, target, warn)
        )
        if target.proxy_command:
            sock = paramiko.ProxyCommand(target.proxy_command)
        timeout = settings.connect_timeout
        client.connect(
            hostname=target.host,
            port=target.port,
            username=target.user,
            password=target.password,
            key_filename=list(target.key_files) or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=True,
            look_for_keys=not target.key_files,
            sock=sock,
        )
        server_key = client.get_transport().get_remote_server_key()
        if known.is_revoked(server_key):
            return failed(
                f"host key {server_key.get_name()} {fingerprint(server_key)} of "
                f"{target.server_name} is marked @revoked in known_hosts: refusing to probe"
            )
        out, err, status = _run_remote(client, PROBE_COMMAND, settings.command_timeout)
        return Outcome(
            target.name,
            _decode(out),
            None,
            status,
            _decode(err[-4096:]),
            time.monotonic() - start,
        )
    except HostKeyRefused as error:
        return failed(str(error))
    except paramiko.BadHostKeyException as error:
        files = ", ".join(known.files) or "known_hosts"
        first_file = known.files[0] if known.files else "~/.ssh/known_hosts"
        return failed(
            f"host key for {target.server_name} CHANGED: the server offers "
            f"{error.key.get_name()} {fingerprint(error.key)}, {files} has "
            f"{fingerprint(error.expected_key)}; this may be a man-in-the-middle. If the host "
            f"was reinstalled, verify the new key, then remove the old one "
            f"(ssh-keygen -R '{target.server_name}' -f {first_file})"
        )
    except paramiko.PasswordRequiredException:
        return failed(
            f"private key {', '.join(target.key_files) or '(default)'} is passphrase-protected: "
            "load it into ssh-agent (ssh-add) before building the inventory"
        )
    except paramiko.AuthenticationException as error:
        keys = ", ".join(target.key_files) or "agent and default keys"
        return failed(
            f"authentication failed for {who} ({keys}): {error}; check ansible_user, "
            "ansible_ssh_private_key_file and the host's authorized_keys"
        )
    except _Timeout as error:
        return failed(
            f"the probe on {who} did not finish within {settings.command_timeout:g} s "
            f"(command_timeout); partial output: {_tail(error.partial)}"
        )
    except OverflowError as error:
        return failed(f"{who}: {error}: not the probe's output; check the account's shell")
    except paramiko.ssh_exception.NoValidConnectionsError as error:
        reasons = {type(e).__name__ for e in error.errors.values()}
        if "ConnectionRefusedError" in reasons:
            return failed(f"connection refused by {where}: is sshd running and ansible_port right?")
        return failed(f"cannot connect to {where}: {error}")
    except socket.gaierror as error:
        return failed(f"cannot resolve {target.host!r}: {error.strerror}; check ansible_host")
    except TimeoutError:
        return failed(
            f"connection to {where} timed out after {settings.connect_timeout:g} s "
            "(connect_timeout): host down, firewalled, or wrong ansible_host/ansible_port"
        )
    except paramiko.SSHException as error:
        text = str(error)
        transport = client.get_transport()
        handshake_done = transport is not None and getattr(transport, "host_key", None) is not None
        if handshake_done and not transport.is_authenticated():
            # paramiko re-raises the last key-loading error when every key was refused
            keys = ", ".join(target.key_files) or "agent and default keys"
            return failed(
                f"authentication failed for {who} ({keys}): {text}; check ansible_user, "
                "ansible_ssh_private_key_file and the host's authorized_keys"
            )
        if "banner" in text.lower() or not getattr(transport, "remote_version", ""):
            return failed(
                f"no SSH server answered on {where} within {settings.connect_timeout:g} s "
                f"({text}): is this port sshd?"
            )
        return failed(f"SSH error with {who}: {text}")
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return failed(f"{where} closed the connection during the SSH handshake")
    except OSError as error:
        return failed(f"cannot connect to {where}: {error.strerror or error}")
    except Exception as error:  # never let one host's surprise end the inventory build
        return failed(f"unexpected {type(error).__name__} probing {who}: {error}")
    finally:
        client.close()
        if sock is not None:
            with contextlib.suppress(Exception):  # the proxy process may already be gone
                sock.close()


def probe_many(
    targets: Sequence[Target],
    settings: ProbeSettings,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Outcome]:
    """Probe all targets with at most settings.pool_size sessions at once."""
    warn = warn or (lambda message: None)
    if not targets:
        return {}
    registries: dict[tuple[str, ...], KnownHosts] = {}
    registry_lock = threading.Lock()

    def known_for(target: Target) -> KnownHosts:
        files = tuple(dict.fromkeys(list(settings.known_hosts) + list(target.known_hosts)))
        with registry_lock:
            if files not in registries:
                registries[files] = KnownHosts(files)
            return registries[files]

    def one(target: Target) -> Outcome:
        try:
            if target.connection == "local":
                return probe_local(target, settings)
            return probe_ssh(target, settings, known_for(target), warn)
        except Exception as error:  # belt and braces: a host never breaks the run
            return Outcome(target.name, None, f"unexpected {type(error).__name__}: {error}")

    workers = max(1, min(settings.pool_size, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpu-probe") as pool:
        results = list(pool.map(one, targets))
    return {outcome.name: outcome for outcome in results}
