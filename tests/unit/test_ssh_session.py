"""Finding the SSH client's address in process environments (module_utils/ssh_session.py)."""

from __future__ import annotations

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.ssh_session import (
    client_address,
    ssh_connection_client,
)

SUDO = b"HOME=/root\0SUDO_USER=fleet\0PATH=/usr/bin\0"
SESSION = b"USER=fleet\0SSH_CONNECTION=10.89.42.1 40906 10.89.42.18 22\0SSH_CLIENT=x\0"


def test_the_nearest_ancestor_with_an_ssh_session_gives_the_address():
    assert client_address([SUDO, SUDO, SESSION]) == "10.89.42.1"


def test_ipv6_clients():
    assert ssh_connection_client(b"SSH_CONNECTION=fd00::1 5 fd00::2 22\0") == "fd00::1"


@pytest.mark.parametrize(
    "environ",
    [
        b"",
        SUDO,
        b"SSH_CONNECTION=\0",
        b"SSH_CONNECTION=10.0.0.1 1 2\0",
        b"SSH_CONNECTION=not-an-ip 1 10.0.0.2 22\0",
        b"SSH_CONNECTION=10.0.0.1; rm -rf / 1 2 3\0",
        b"\xff\xfeSSH_CONNECTION=\xff 1 2 3\0",
    ],
)
def test_no_session_or_a_malformed_one_gives_none(environ):
    assert ssh_connection_client(environ) is None
    assert client_address([environ]) is None
