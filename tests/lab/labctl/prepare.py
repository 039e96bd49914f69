"""The controller the lab runs on: the system packages it needs, kernel limits, the lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import ROOT, LabError, log

SYSTEM_PACKAGES = {
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "ssh-keygen": "openssh-client",
    "nft": "nftables",
}


def ensure_system_packages() -> None:
    missing = [pkg for cmd, pkg in SYSTEM_PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)} (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        update = subprocess.run(
            ["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, check=False
        )
        install = subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if install.returncode == 0:
            return
        detail = (install.stderr or update.stderr).strip()[-500:]
        raise LabError(f"could not install {' '.join(missing)}: {detail}")
    raise LabError(
        f"the lab needs {' '.join(missing)}. Install them (Debian/Ubuntu: "
        f"sudo apt-get install {' '.join(missing)}) and run again."
    )


def tune_kernel() -> None:
    """Past about 25 systemd containers, units fail unless inotify instances are raised."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    with contextlib.suppress(OSError, ValueError):
        if int(knob.read_text()) < 1024 and os.geteuid() == 0:
            knob.write_text("1024\n")


@contextlib.contextmanager
def locked():
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"localllm-lab-{tag}.lock"
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another scripts/lab is running here; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
