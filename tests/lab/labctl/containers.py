"""Lab containers: reconciled with their definition, then waited for (systemd, sshd)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from pathlib import Path

from .common import LABEL, NETWORK, STATE, LabError, podman
from .images import image_label


def container_state(name: str) -> dict | None:
    result = podman("container", "inspect", name, check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0]


def ready_marker(name: str) -> Path:
    return STATE / "hosts" / f"{name}.ready"


def ensure_container(name: str, image: str, run_args: list[str], provision) -> bool:
    """Start `name` from `image` unless an identical, provisioned one already runs.

    "Identical" covers the image's inputs and every `podman run` option (a label carries
    their digest), so a changed definition replaces the container. A container that was
    never provisioned to the end (an interrupted `up`) is replaced too.
    """
    # CAP_SYS_ADMIN lets systemd inside give services their own mount namespaces: without it
    # every hardened unit (ProtectSystem=, PrivateTmp=, ...) fails at step NAMESPACE.
    # CAP_NET_ADMIN lets a host load its own firewall (nftables), as a real host does.
    options = [
        "--systemd=always", "--cap-add=SYS_ADMIN", "--cap-add=NET_ADMIN", "--network", NETWORK,
        *run_args,
    ]  # fmt: skip
    spec = hashlib.sha256(
        json.dumps([image_label(image, f"{LABEL}.image"), options]).encode()
    ).hexdigest()[:16]
    state = container_state(name)
    marker = ready_marker(name)
    if state:
        same = state["Config"]["Labels"].get(f"{LABEL}.spec") == spec
        provisioned = marker.exists() and marker.read_text().strip() == state["Id"]
        if same and provisioned:
            if not state["State"]["Running"]:
                podman("start", name)
                wait_for_systemd(name)
            return False
        podman("rm", "-f", "-t", "0", name)
    marker.unlink(missing_ok=True)
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"{LABEL}=1",
        "--label",
        f"{LABEL}.spec={spec}",
        *options,
        image,
    )
    wait_for_systemd(name)
    provision()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(container_state(name)["Id"] + "\n")
    return True


def wait_for_systemd(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = podman("exec", name, "systemctl", "is-system-running", check=False)
        state = result.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise LabError(f"{name}: systemd did not finish booting in {timeout:.0f} s (state {state!r})")


def wait_for_ssh(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2) as conn:
            conn.settimeout(5)
            if conn.recv(64).startswith(b"SSH-"):
                return
        time.sleep(0.3)
    raise LabError(f"sshd on 127.0.0.1:{port} did not answer within {timeout:.0f} s")


def lab_containers() -> list[dict]:
    result = podman("ps", "-a", "--filter", f"label={LABEL}=1", "--format", "json")
    return json.loads(result.stdout or "[]")
