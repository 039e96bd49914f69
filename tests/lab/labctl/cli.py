"""The local lab fleet: podman hosts booting systemd, with simulated GPU hardware.

  scripts/lab up [--no-ubuntu]   build (or reuse) the images, start the mirror and every host
  scripts/lab images             build (or reuse) the images only
  scripts/lab publish            (re)publish the mirror's artifacts
  scripts/lab status [--json]    every lab container, its profile, state and SSH port
  scripts/lab down [--purge]     remove what `up` made (--purge: the cached images too)

Every command is idempotent; `up` after an interrupted `up` recovers. The fleet (host
names, SSH ports, profiles) is read from inventories/lab/hosts.yml. State lives in .lab/
(lab key, known_hosts, mirror content), never committed. See docs/lab.md for the design.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import (
    BASE_REPO,
    IMAGE_REPO,
    LABEL,
    NETWORK,
    PREFIX,
    ROOT,
    STATE,
    LabError,
    log,
    podman,
)
from .containers import lab_containers, wait_for_ssh
from .fleet import collect_host_keys, load_fleet, remove_strays, start_host
from .images import IMAGES, PY39_IMAGE, build_base, build_images, selected_images
from .keys import ensure_client_key, ensure_keys
from .mirror import publish, start_mirror
from .network import ensure_guard, ensure_network, remove_guard
from .prepare import ensure_system_packages, locked, tune_kernel

# What re-runs under the project's venv (reexec_in_venv): the entry point, not this module.
ENTRY_POINT = ROOT / "scripts" / "lab"


def cmd_images(args) -> int:
    ensure_system_packages()
    if args.py39:
        build_base(PY39_IMAGE)
        log(f"{PY39_IMAGE.name}: {BASE_REPO}:{PY39_IMAGE.name} ready")
        return 0
    results = build_images(selected_images(args.no_ubuntu))
    return 1 if any(results[s.name] for s in IMAGES if s.required and s.name in results) else 0


def cmd_up(args) -> int:
    started = time.monotonic()
    ensure_system_packages()
    tune_kernel()
    hosts, common = load_fleet()
    results = build_images(selected_images(args.no_ubuntu))
    needed = {"debian12"} | {h.image for h in hosts}
    broken = [f"{name}: {results.get(name)}" for name in needed if results.get(name)]
    if broken:
        raise LabError("images the fleet needs could not be built: " + "; ".join(broken))
    authorized = ensure_keys()
    ensure_client_key()
    ensure_network(str(common["lab_subnet"]))
    ensure_guard(str(common["lab_subnet"]))
    publish()
    start_mirror(common)
    remove_strays(hosts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda h: start_host(h, authorized, hosts, common), hosts))
    collect_host_keys(hosts)
    log(f"up in {time.monotonic() - started:.0f} s")
    return cmd_status(argparse.Namespace(json=False))


def cmd_status(args) -> int:
    if shutil.which("podman") is None:
        print("lab: podman is not installed: no lab here")
        return 1
    rows = []
    for entry in sorted(lab_containers(), key=lambda c: c["Names"][0]):
        labels = entry.get("Labels") or {}
        name = entry["Names"][0].removeprefix(PREFIX)
        port = labels.get(f"{LABEL}.ssh-port", "")
        ssh = ""
        if port and entry["State"] == "running":
            try:
                wait_for_ssh(int(port), timeout=2)
                ssh = "ok"
            except LabError:
                ssh = "no answer"
        rows.append(
            {
                "host": name,
                "profile": labels.get(f"{LABEL}.profile", ""),
                "state": entry["State"],
                "image": entry["Image"],
                "ssh": f"127.0.0.1:{port} {ssh}".strip() if port else "-",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("lab: no lab containers (run scripts/lab up)")
        return 0
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(k.upper().ljust(widths[k]) for k in rows[0]))
    for row in rows:
        print("  ".join(str(row[k]).ljust(widths[k]) for k in row))
    return 0


def cmd_down(args) -> int:
    if shutil.which("podman") is None:
        log("podman is not installed: nothing to remove")
        return 0
    names = [c["Names"][0] for c in lab_containers()]
    if names:
        podman("rm", "-f", "-t", "0", *names)
        log(f"removed {len(names)} containers")
    if podman("network", "exists", NETWORK, check=False).returncode == 0:
        result = podman("network", "rm", NETWORK, check=False)
        if result.returncode != 0:
            log(f"network {NETWORK} kept: {result.stderr.strip()} (other containers use it)")
        else:
            remove_guard()
    shutil.rmtree(STATE, ignore_errors=True)
    if args.purge:
        for repo in (IMAGE_REPO, BASE_REPO):
            for spec in IMAGES:
                podman("rmi", "-f", f"{repo}:{spec.name}", check=False)
        log("removed the cached images")
    else:
        log("kept the cached images (scripts/lab down --purge removes them)")
    return 0


def cmd_publish(_args) -> int:
    publish()
    return 0


def reexec_in_venv() -> None:
    """Prefer the project's venv (PyYAML) when started with another Python."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    try:
        import yaml  # noqa: F401
    except ImportError:
        if venv_python.exists() and Path(sys.executable) != venv_python:
            argv = [str(venv_python), str(ENTRY_POINT), *sys.argv[1:]]
            os.execv(argv[0], argv)  # noqa: S606 - re-runs scripts/lab


def main(argv: list[str]) -> int:
    reexec_in_venv()
    parser = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build or reuse the images, start the mirror and the hosts")
    up.add_argument("--no-ubuntu", action="store_true", help="build only the Debian 12 image")
    images = sub.add_parser("images", help="build or reuse the images only")
    images.add_argument("--no-ubuntu", action="store_true")
    images.add_argument(
        "--py39", action="store_true", help="only the Debian 11 (Python 3.9) unit-test image"
    )
    status = sub.add_parser("status", help="list the lab's containers")
    status.add_argument("--json", action="store_true")
    down = sub.add_parser("down", help="remove the lab")
    down.add_argument("--purge", action="store_true", help="also remove the cached images")
    sub.add_parser("publish", help="(re)publish the mirror's artifacts")
    args = parser.parse_args(argv)
    handler = {
        "up": cmd_up,
        "images": cmd_images,
        "status": cmd_status,
        "down": cmd_down,
        "publish": cmd_publish,
    }[args.command]
    try:
        if args.command == "status":
            return handler(args)
        with locked():
            return handler(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted; `scripts/lab up` again recovers", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
