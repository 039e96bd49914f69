"""The distribution archive a base image is bootstrapped from, and the keyring that checks it.

No archive host is written here: Debian's comes from this machine's apt configuration (or
debootstrap's built-in default), Ubuntu's from debootstrap's script for the suite;
LAB_DEBIAN_MIRROR / LAB_UBUNTU_MIRROR override.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .common import run

if TYPE_CHECKING:
    from .images import ImageSpec


def apt_mirror(suite: str) -> str | None:
    """The Debian mirror this machine's apt uses for `suite` (deb822 or one-line format)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith("#"):
                        key, value = line.split(":", 1)
                        fields[key.strip()] = value.strip()
                if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                    return fields.get("URIs", "").split()[0]
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and suite in parts:
                    return next(p for p in parts[1:] if "://" in p)
    return None


def debootstrap_default_mirror(suite: str, script: str | None = None) -> str | None:
    """The `default_mirror` debootstrap's script picks for this suite and architecture.

    The scripts choose it inside nested `case $ARCH` / `case $SUITE` blocks; walk them the
    way the shell would rather than guess from the first match.
    """
    path = Path("/usr/share/debootstrap/scripts") / (script or suite)
    if not path.exists():
        return None
    arch = run(["dpkg", "--print-architecture"], check=False).stdout.strip() or "amd64"
    subjects: list[str] = []  # the word each open `case` tests
    taken: list[bool] = []  # whether an earlier branch of that case already matched
    active: list[bool] = []  # whether the current branch of that case matched
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("case ") and line.endswith(" in"):
            word = line.split()[1]
            subjects.append({"$ARCH": arch, "$SUITE": suite}.get(word, ""))
            taken.append(False)
            active.append(False)
        elif line == "esac" and subjects:
            subjects.pop()
            taken.pop()
            active.pop()
        elif subjects and line.endswith(")") and not line.startswith("("):
            patterns = line[:-1].split("|")
            hit = not taken[-1] and any(fnmatch.fnmatchcase(subjects[-1], p) for p in patterns)
            active[-1] = hit
            taken[-1] = taken[-1] or hit
        elif line.startswith("default_mirror") and all(active):
            return line.split()[1]
    return None


def debootstrap_builtin_mirror() -> str | None:
    """debootstrap's own default (DEF_MIRROR), used when apt names no mirror."""
    with contextlib.suppress(OSError):
        for line in Path("/usr/sbin/debootstrap").read_text().splitlines():
            if line.startswith("DEF_MIRROR="):
                return line.split("=", 1)[1].strip().strip('"')
    return None


def mirror_for(spec: ImageSpec) -> str | None:
    override = os.environ.get(f"LAB_{spec.distro.upper()}_MIRROR")
    if override:
        return override
    if spec.distro == "debian":
        return apt_mirror(spec.suite) or debootstrap_builtin_mirror()
    return debootstrap_default_mirror(spec.suite, spec.script)


def reachable(url: str) -> str | None:
    """None when the archive answers; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 - http(s) mirror
            response.read(64)
        return None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return f"{url} did not answer ({getattr(exc, 'reason', exc)})"


KEYRING_CACHE = Path(os.environ.get("LOCALLLM_LAB_CACHE", "/var/lib/localllm-lab"))


def ubuntu_keyring() -> Path | None:
    """An Ubuntu archive keyring: the system's (ubuntu-keyring) or one kept from a build."""
    for path in (
        Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
        KEYRING_CACHE / "ubuntu-archive-keyring.gpg",
    ):
        if path.is_file():
            return path
    return None


def keep_ubuntu_keyring(rootfs: Path) -> None:
    source = rootfs / "usr/share/keyrings/ubuntu-archive-keyring.gpg"
    target = KEYRING_CACHE / "ubuntu-archive-keyring.gpg"
    if source.is_file() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
