"""The keys the lab makes in .lab/ (never committed): its SSH key, the gateway's client key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .common import STATE, run


def ensure_keys() -> Path:
    ssh = STATE / "ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    key = ssh / "id_ed25519"
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "localllm-lab", "-f", str(key)])
    authorized = ssh / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o644)
    return authorized


def ensure_client_key() -> Path:
    """The lab gateway's demo client key (inventories/lab/group_vars/gateway.yml reads it): made
    once, 0600, never committed; `make demo` asks the fleet with it (examples/ask.py)."""
    folder = STATE / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = folder / "demo-app.key"
    if not key.exists() or len(key.read_text().strip()) < 32:
        partial = folder / ".demo-app.key.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        partial.replace(key)
    return key
