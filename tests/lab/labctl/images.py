"""The lab's images: a debootstrapped base per distribution, and the lab overlay on top."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .archive import keep_ubuntu_keyring, mirror_for, reachable, ubuntu_keyring
from .common import (
    BASE_REPO,
    IMAGE_REPO,
    LAB_DIR,
    LABEL,
    ROOT,
    STANDINS,
    STATE,
    LabError,
    log,
    podman,
    run,
)

# debootstrap needs a real, exec-able file system with room for a rootfs: not tmpfs /tmp.
BUILD_DIR = Path(os.environ.get("LOCALLLM_LAB_BUILD_DIR", "/var/tmp/localllm-lab-build"))

# What every lab image carries: systemd as PID 1, sshd, sudo and Python for Ansible,
# python3-apt for the apt module, zstd/curl/gnupg for artifacts and repositories, kmod for
# module checks, and python3-numpy for the Ollama stand-in's GGUF reader.
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "python3-numpy",
    "openssh-server",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
    "zstd",
    "curl",
    "gnupg",
    "kmod",
    "xz-utils",
]


@dataclass(frozen=True)
class ImageSpec:
    name: str
    distro: str
    suite: str
    script: str | None = None  # debootstrap script when the suite has none of its own
    required: bool = False
    packages: tuple[str, ...] = ()  # instead of PACKAGES: a base image that never boots


IMAGES = [
    ImageSpec("debian12", "debian", "bookworm", required=True),
    ImageSpec("ubuntu2204", "ubuntu", "jammy", script="gutsy"),
    ImageSpec("ubuntu2404", "ubuntu", "noble", script="gutsy"),
]
# Python 3.9, the oldest a supported managed host runs (RHEL 9): `make unit-py39` runs the
# host-side unit tests in a throwaway container of this base image (built only on demand),
# with bullseye's python3-cryptography (3.3), older than any supported host's, for the code
# that reads a host's TLS material (module_utils/fleet_tls_state.py).
PY39_IMAGE = ImageSpec(
    "debian11-py39",
    "debian",
    "bullseye",
    # python3-cffi-backend by name: debootstrap does not resolve the virtual package
    # python3-cryptography depends on.
    packages=(
        "python3",
        "python3-pytest",
        "python3-hypothesis",
        "python3-cryptography",
        "python3-cffi-backend",
    ),
)


def files_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(oct(path.stat().st_mode & 0o777).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def overlay_files() -> list[Path]:
    roots = [
        LAB_DIR / "image",
        LAB_DIR / "mirror-server",
        LAB_DIR / "lab-apt",
        STANDINS / "nvidia-smi",
        STANDINS / "lspci",
        STANDINS / "lab-hw",
        STANDINS / "hardware",
    ]
    files: list[Path] = []
    for root in roots:
        files.extend(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    return files


def base_key(spec: ImageSpec) -> str:
    packages = list(spec.packages) or PACKAGES
    text = json.dumps([spec.distro, spec.suite, spec.script, packages], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_key(spec: ImageSpec) -> str:
    return hashlib.sha256((base_key(spec) + files_digest(overlay_files())).encode()).hexdigest()[
        :16
    ]


def image_label(ref: str, label: str) -> str | None:
    result = podman(
        "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', ref, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def build_base(spec: ImageSpec) -> None:
    ref = f"{BASE_REPO}:{spec.name}"
    key = base_key(spec)
    if image_label(ref, f"{LABEL}.base") == key:
        return
    mirror = mirror_for(spec)
    if not mirror:
        raise LabError(
            f"{spec.name}: no {spec.distro} mirror in the apt configuration or "
            f"debootstrap's defaults; set LAB_{spec.distro.upper()}_MIRROR"
        )
    problem = reachable(f"{mirror.rstrip('/')}/dists/{spec.suite}/Release")
    if problem:
        raise LabError(f"{spec.name}: archive unreachable: {problem}")
    rootfs = BUILD_DIR / spec.name
    shutil.rmtree(rootfs, ignore_errors=True)  # what an interrupted build left
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    packages = spec.packages or PACKAGES
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}"]
    if spec.distro == "ubuntu":
        keyring = ubuntu_keyring()
        if keyring:
            command.append(f"--keyring={keyring}")
        else:
            # Debian ships no Ubuntu keyring. The first build trusts the archive over its
            # transport; its own keyring is then kept (below) and checks every later build.
            log(f"{spec.name}: no Ubuntu archive keyring yet: this first build is not verified")
            command.append("--no-check-gpg")
    command += [spec.suite, str(rootfs), mirror]
    if spec.script:
        command.append(f"/usr/share/debootstrap/scripts/{spec.script}")
    log(f"{spec.name}: debootstrap {spec.suite} from {mirror} (about a minute)")
    started = time.monotonic()
    try:
        run(command)
        if spec.distro == "ubuntu":
            keep_ubuntu_keyring(rootfs)
        # Keep only what a booted host needs; the package cache would double the image.
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/sbin/init"]',
                "--change",
                "STOPSIGNAL SIGRTMIN+3",
                "--change",
                f"LABEL {LABEL}.base={key}",
                "-",
                ref,
            ],
            stdin=tar.stdout,
        )
        tar.wait()
        if tar.returncode != 0:
            raise LabError(f"{spec.name}: tar of the rootfs failed")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"{spec.name}: base image built in {time.monotonic() - started:.0f} s")


CONTAINERFILE = """\
FROM {base}
COPY rootfs/ /
COPY bin/ /opt/localllm-lab/bin/
COPY share/ /opt/localllm-lab/share/
COPY profiles/ /opt/localllm-lab/profiles/
RUN rm -f /etc/ssh/ssh_host_* \\
 && chmod 0440 /etc/sudoers.d/localllm-lab \\
 && useradd --create-home --shell /bin/bash fleet \\
 && install -d -m 0755 /etc/ssh/localllm-lab /srv/mirror \\
 && systemctl enable ssh.service localllm-lab-mirror.service
LABEL {label}={key}
"""


def build_image(spec: ImageSpec) -> None:
    build_base(spec)
    ref = f"{IMAGE_REPO}:{spec.name}"
    key = image_key(spec)
    if image_label(ref, f"{LABEL}.image") == key:
        return
    with tempfile.TemporaryDirectory(prefix="localllm-lab-ctx-") as tmp:
        context = Path(tmp)
        shutil.copytree(LAB_DIR / "image" / "rootfs", context / "rootfs")
        (context / "bin").mkdir()
        for name in ("nvidia-smi", "lspci", "lab-hw"):
            shutil.copy2(STANDINS / name, context / "bin" / name)
        shutil.copy2(LAB_DIR / "mirror-server", context / "bin" / "mirror-server")
        shutil.copy2(LAB_DIR / "lab-apt", context / "bin" / "lab-apt")
        (context / "share").mkdir()
        shutil.copy2(STANDINS / "hardware" / "gpus.json", context / "share" / "gpus.json")
        shutil.copytree(STANDINS / "hardware" / "profiles", context / "profiles")
        (context / "Containerfile").write_text(
            CONTAINERFILE.format(base=f"{BASE_REPO}:{spec.name}", label=f"{LABEL}.image", key=key)
        )
        podman("build", "--pull=never", "--network=none", "-t", ref, str(context))
    log(f"{spec.name}: image {ref} ready")


def build_images(specs: list[ImageSpec]) -> dict[str, str | None]:
    """Build every image that can be built; None for success, else the reason."""
    results: dict[str, str | None] = {}

    def one(spec: ImageSpec) -> tuple[str, str | None]:
        try:
            build_image(spec)
            return spec.name, None
        except LabError as exc:
            return spec.name, str(exc)

    with ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
        for name, problem in pool.map(one, specs):
            results[name] = problem
    STATE.mkdir(exist_ok=True)
    report = STATE / "images.json"
    previous = json.loads(report.read_text()) if report.exists() else {}
    previous.update(
        {
            name: {"ok": problem is None, "reason": problem or ""}
            for name, problem in results.items()
        }
    )
    report.write_text(json.dumps(previous, indent=2) + "\n")
    for name, problem in results.items():
        if problem:
            log(f"{name}: NOT built: {problem}")
    return results


def selected_images(no_ubuntu: bool) -> list[ImageSpec]:
    return [spec for spec in IMAGES if spec.required or not no_ubuntu]
