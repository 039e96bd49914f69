"""The mirror host, and the publishers in tests/lab/publish.d that fill .lab/mirror/."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

from .common import IMAGE_REPO, LAB_DIR, LABEL, PREFIX, ROOT, STATE, LabError, log, podman
from .containers import ensure_container

MIRROR_PORT_IN_LAB = 8080


def start_mirror(common: dict) -> None:
    mirror_dir = STATE / "mirror"
    mirror_dir.mkdir(parents=True, exist_ok=True)
    (mirror_dir / ".localllm-lab-mirror").write_text("served by the lab's mirror host\n")
    port = int(common["lab_mirror_controller_port"])
    name = PREFIX + "mirror"

    def provision() -> None:
        podman("exec", name, "systemctl", "start", "localllm-lab-mirror.service")
        wait_for_url(f"http://127.0.0.1:{port}/.localllm-lab-mirror")

    ensure_container(
        name,
        f"{IMAGE_REPO}:debian12",
        [
            "--hostname",
            "mirror",
            "--network-alias",
            "mirror",
            "--ip",
            str(common["lab_mirror_ip"]),
            "--label",
            f"{LABEL}.profile=mirror",
            "-p",
            f"127.0.0.1:{port}:{MIRROR_PORT_IN_LAB}",
            "-v",
            f"{mirror_dir}:/srv/mirror:ro",
        ],
        provision,
    )
    wait_for_url(f"http://127.0.0.1:{port}/.localllm-lab-mirror")


def wait_for_url(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3):  # noqa: S310 - the lab's own mirror
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"the mirror did not answer at {url}: {exc}") from exc
            time.sleep(0.3)


def publish() -> None:
    """Run every publisher in tests/lab/publish.d (each one caches its own output)."""
    mirror_dir = STATE / "mirror"
    mirror_dir.mkdir(parents=True, exist_ok=True)
    directory = LAB_DIR / "publish.d"
    if not directory.is_dir():
        return
    python = ROOT / ".venv" / "bin" / "python"
    env = dict(
        os.environ,
        LAB_MIRROR_DIR=str(mirror_dir),
        LAB_ROOT=str(ROOT),
        PATH=f"{python.parent}:{os.environ.get('PATH', '')}",
    )
    for script in sorted(directory.iterdir()):
        if not os.access(script, os.X_OK):
            continue
        started = time.monotonic()
        result = subprocess.run(
            [str(script)], capture_output=True, text=True, env=env, cwd=ROOT, check=False
        )
        if result.returncode != 0:
            raise LabError(
                f"publishing {script.name} failed: {(result.stderr or result.stdout)[-1500:]}"
            )
        log(f"mirror: {script.name} ({time.monotonic() - started:.1f} s)")
