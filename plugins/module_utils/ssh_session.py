# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Which address the SSH session a process runs under comes from.

sshd puts `SSH_CONNECTION=<client> <client port> <server> <server port>` into the session's
environment; `sudo` (Ansible's become) resets the environment, so a module running as root
finds it in the environment of an ancestor process instead. Pure parsing here; reading
/proc is the module's business. Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["client_address", "ssh_connection_client"]


def ssh_connection_client(environ: bytes) -> str | None:
    """The client address in a NUL-separated environment block, or None."""
    for entry in environ.split(b"\0"):
        if entry.startswith(b"SSH_CONNECTION="):
            fields = entry[len(b"SSH_CONNECTION=") :].decode("ascii", "replace").split()
            if len(fields) != 4:
                return None
            try:
                return str(ipaddress.ip_address(fields[0]))
            except ValueError:
                return None
    return None


def client_address(environments: Iterable[bytes]) -> str | None:
    """The first client address found, walking from the process up to PID 1."""
    for environ in environments:
        address = ssh_connection_client(environ)
        if address:
            return address
    return None
