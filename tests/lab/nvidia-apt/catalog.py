"""What the lab's NVIDIA apt repositories carry: stand-in packages with real names and versions.

Two kinds of repository, as on real networks:
- NVIDIA's CUDA repository, one flat repository per distribution
  (`<base>/<distro>/x86_64/`, `deb [signed-by=...] <url> /`), signed with the key that the
  `cuda-keyring` package installs. Branches 550 and 570, two releases each, so that a pinned
  branch, "newest in the branch" and an exact version can all be told apart.
- the distributions' own archives, reduced to their NVIDIA packages: Ubuntu's restricted
  (drivers, Canonical's `-server` branches and pre-signed `linux-modules-nvidia-*`) and
  multiverse (Fabric Manager) components; Debian 12's contrib / non-free /
  non-free-firmware (branch 535 only, and no Fabric Manager: Debian does not package it).

Names, versions, components and the dependencies between the packages follow the real
repositories (see docs/nvidia-driver.md for the sources). What the stand-ins leave out is
kernel code: no module, no DKMS build, no dependency on dkms or kernel headers. What they do:
- the driver package (Ubuntu `nvidia-headless-no-dkms-*`, Debian `nvidia-kernel[-open]-dkms`,
  `nvidia-open-kernel-dkms`) writes /etc/localllm-lab/driver.json with its version and module
  flavour, which the lab's nvidia-smi and lspci stand-ins then report, and removes it again;
- the utils package (`nvidia-utils-*`, Debian `nvidia-smi`) installs the lab's nvidia-smi
  stand-in as /usr/bin/nvidia-smi;
- the persistenced package (`nvidia-compute-utils-*`, `nvidia-persistenced`) installs a daemon
  and a unit shaped like the distributions' (default `--no-persistence-mode`);
- the Fabric Manager package installs a daemon that refuses a driver of another version,
  exactly as the real one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"

# CUDA toolkit version each branch's nvidia-smi reports ("CUDA Version").
CUDA_VERSION = {"535": "12.2", "550": "12.4", "570": "12.8"}

# NVIDIA's CUDA repository: branch -> releases (oldest first).
CUDA_RELEASES = {"550": ["550.54.15", "550.163.01"], "570": ["570.133.20", "570.172.08"]}
# Ubuntu's archive (nvidia-graphics-drivers-<branch>-server, fabric-manager-<branch>).
UBUNTU_RELEASES = {"550": ["550.127.08", "550.163.01"], "570": ["570.172.08"]}
UBUNTU_SUITES = {"jammy": "22.04", "noble": "24.04"}
# Kernel ABI the pre-signed linux-modules-nvidia-* metapackages follow per suite.
UBUNTU_KERNELS = {"jammy": "5.15.0-126.136", "noble": "6.8.0-49.49"}
# Debian 12's archive: nvidia-graphics-drivers and nvidia-persistenced are separate sources.
DEBIAN_DRIVER = "535.247.01-1~deb12u1"
DEBIAN_PERSISTENCED = "535.171.04-1~deb12u1"

CUDA_DISTROS = ("debian12", "ubuntu2204", "ubuntu2404")
# The URL the stand-in cuda-keyring's own sources list names: the public repository stands
# behind a host name that never resolves, so that a host that was not pointed at the lab's
# mirror fails loudly instead of reaching out.
KEYRING_UPSTREAM = "https://cuda-repo.invalid/compute/cuda/repos"

MAINTAINER = "LocalLLM Lab <lab@localllm.invalid>"


@dataclass
class Package:
    name: str
    version: str
    description: str
    arch: str = "amd64"
    section: str = "libs"
    component: str = ""  # archive component; "" in a flat repository
    depends: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    conffiles: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)

    def exclusive(self, virtual: str) -> Package:
        """One of several packages that install the same files: the Debian idiom."""
        self.provides.append(virtual)
        self.conflicts.append(virtual)
        self.replaces.append(virtual)
        return self


def upstream(version: str) -> str:
    return version.rsplit("-", 1)[0]


def doc(package: str, text: str) -> dict[str, tuple[bytes, int]]:
    return {
        f"/usr/share/doc/{package}/README.localllm-lab": (
            (
                f"{package}: a stand-in built for the localllm.fleet lab (tests/lab/nvidia-apt).\n"
                f"{text}\nIt carries the real package's name, version and dependencies, and no "
                "NVIDIA software.\n"
            ).encode(),
            0o644,
        )
    }


# ------------------------------------------------------------------ maintainer scripts

DRIVER_POSTINST = """#!/bin/sh
# Lab stand-in: the "kernel module" of this package is a record the lab's nvidia-smi reads.
set -e
if [ "$1" = configure ]; then
    mkdir -p /etc/localllm-lab
    tmp=/etc/localllm-lab/driver.json.dpkg-tmp
    printf '{"version": "%s", "cuda_version": "%s", "state": "ok", ' '@VERSION@' '@CUDA@' > "$tmp"
    printf '"flavour": "%s", "package": "%s"}\\n' '@FLAVOUR@' '@PACKAGE@' >> "$tmp"
    mv "$tmp" /etc/localllm-lab/driver.json
fi
exit 0
"""

DRIVER_POSTRM = """#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if grep -qs '"package": "@PACKAGE@"' /etc/localllm-lab/driver.json; then
        rm -f /etc/localllm-lab/driver.json
    fi
fi
exit 0
"""

DAEMON_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    @ADDUSER@
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
exit 0
"""

DAEMON_PRERM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop @UNIT@ >/dev/null 2>&1 || true
fi
exit 0
"""

DAEMON_POSTRM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
"""

ADD_PERSISTENCED_USER = (
    "getent passwd nvidia-persistenced >/dev/null || useradd --system --no-create-home "
    "--home-dir /nonexistent --shell /usr/sbin/nologin "
    "--comment 'NVIDIA Persistence Daemon' nvidia-persistenced"
)


def fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def read(name: str) -> bytes:
    return (FILES / name).read_bytes()


# ------------------------------------------------------------------ package builders


def driver_writer(package: Package, flavour: str, branch: str) -> Package:
    version = upstream(package.version)
    values = {
        "VERSION": version,
        "CUDA": CUDA_VERSION[branch],
        "FLAVOUR": flavour,
        "PACKAGE": package.name,
    }
    package.scripts["postinst"] = fill(DRIVER_POSTINST, **values)
    package.scripts["postrm"] = fill(DRIVER_POSTRM, **values)
    return package


def nvidia_smi_files(nvidia_smi: bytes) -> dict[str, tuple[bytes, int]]:
    return {"/usr/bin/nvidia-smi": (nvidia_smi, 0o755)}


def persistenced(package: Package) -> Package:
    package.files.update(
        {
            "/usr/bin/nvidia-persistenced": (read("nvidia-persistenced"), 0o755),
            "/lib/systemd/system/nvidia-persistenced.service": (
                read("nvidia-persistenced.service"),
                0o644,
            ),
        }
    )
    package.scripts["postinst"] = fill(DAEMON_POSTINST, ADDUSER=ADD_PERSISTENCED_USER)
    package.scripts["prerm"] = fill(DAEMON_PRERM, UNIT="nvidia-persistenced.service")
    package.scripts["postrm"] = DAEMON_POSTRM
    return package


def fabricmanager(name: str, version: str, component: str = "") -> Package:
    package = Package(
        name,
        version,
        "Fabric Manager for NVSwitch based systems.",
        section="utils",
        component=component,
        files={
            "/usr/bin/nv-fabricmanager": (
                fill(read("nv-fabricmanager").decode(), FM_VERSION=upstream(version)).encode(),
                0o755,
            ),
            "/lib/systemd/system/nvidia-fabricmanager.service": (
                read("nvidia-fabricmanager.service"),
                0o644,
            ),
            "/usr/share/nvidia/nvswitch/fabricmanager.cfg": (read("fabricmanager.cfg"), 0o644),
        },
        conffiles=["/usr/share/nvidia/nvswitch/fabricmanager.cfg"],
    ).exclusive("nvidia-fabricmanager")
    package.scripts["postinst"] = fill(DAEMON_POSTINST, ADDUSER=":")
    package.scripts["prerm"] = fill(DAEMON_PRERM, UNIT="nvidia-fabricmanager.service")
    package.scripts["postrm"] = DAEMON_POSTRM
    return package


def nscq(name: str, version: str, component: str = "") -> Package:
    return Package(
        name,
        version,
        "NVSwitch Configuration and Query library",
        component=component,
        files=doc(name, "Real package: libnvidia-nscq.so for NVSwitch queries."),
    ).exclusive("libnvidia-nscq")


def ubuntu_branch(
    branch: str,
    version: str,
    nvidia_smi: bytes,
    *,
    server: bool,
    driver_component: str = "",
    fm_component: str = "",
    kernel: str | None = None,
) -> list[Package]:
    """One release of an Ubuntu-named driver branch (Canonical's archive or NVIDIA's repo)."""
    s = "-server" if server else ""
    v = version
    exact = f"(= {v})"
    packages: list[Package] = [
        Package(
            f"libnvidia-compute-{branch}{s}",
            v,
            "NVIDIA libcompute package",
            component=driver_component,
            files=doc(f"libnvidia-compute-{branch}{s}", "Real package: libcuda, libnvidia-ml."),
        ).exclusive("libnvidia-compute"),
        Package(
            f"nvidia-kernel-common-{branch}{s}",
            v,
            "Shared files used with the kernel module",
            section="kernel",
            component=driver_component,
            files=doc(f"nvidia-kernel-common-{branch}{s}", "Real package: udev rules, firmware."),
        ).exclusive("nvidia-kernel-common"),
        Package(
            f"nvidia-utils-{branch}{s}",
            v,
            "NVIDIA driver support binaries",
            section="utils",
            component=driver_component,
            depends=[f"libnvidia-compute-{branch}{s} {exact}"],
            files=nvidia_smi_files(nvidia_smi),
        ).exclusive("nvidia-utils"),
        persistenced(
            Package(
                f"nvidia-compute-utils-{branch}{s}",
                v,
                "NVIDIA compute utilities",
                section="utils",
                component=driver_component,
                depends=[f"libnvidia-compute-{branch}{s} {exact}", "adduser"],
            ).exclusive("nvidia-compute-utils")
        ),
    ]
    for open_modules in (True, False):
        o = "-open" if open_modules else ""
        flavour = "open" if open_modules else "proprietary"
        packages += [
            driver_writer(
                Package(
                    f"nvidia-headless-no-dkms-{branch}{s}{o}",
                    v,
                    f"NVIDIA headless metapackage - no DKMS{' (open kernel module)' if o else ''}",
                    section="metapackages",
                    component=driver_component,
                    depends=[
                        f"libnvidia-compute-{branch}{s} {exact}",
                        f"nvidia-compute-utils-{branch}{s} {exact}",
                        f"nvidia-kernel-common-{branch}{s} {exact}",
                    ],
                ).exclusive("nvidia-headless-no-dkms"),
                flavour,
                branch,
            ),
            Package(
                f"nvidia-dkms-{branch}{s}{o}",
                v,
                f"NVIDIA DKMS package{' (open kernel module)' if o else ''}",
                section="kernel",
                component=driver_component,
                depends=[f"nvidia-kernel-common-{branch}{s} {exact}"],
                files=doc(f"nvidia-dkms-{branch}{s}{o}", "Real package: DKMS module sources."),
            ).exclusive("nvidia-dkms-kernel"),
            Package(
                f"nvidia-headless-{branch}{s}{o}",
                v,
                f"NVIDIA headless metapackage{' (open kernel module)' if o else ''}",
                section="metapackages",
                component=driver_component,
                depends=[
                    f"nvidia-headless-no-dkms-{branch}{s}{o} {exact}",
                    f"nvidia-dkms-{branch}{s}{o} {exact}",
                ],
            ),
            Package(
                f"nvidia-driver-{branch}{s}{o}",
                v,
                f"NVIDIA driver metapackage{' (open kernel module)' if o else ''}",
                section="metapackages",
                component=driver_component,
                depends=[
                    f"nvidia-headless-{branch}{s}{o} {exact}",
                    f"nvidia-utils-{branch}{s} {exact}",
                ],
            ),
        ]
        if kernel:
            # Canonical's pre-signed modules: version follows the kernel, not the driver.
            name = f"linux-modules-nvidia-{branch}{s}{o}-generic"
            packages.append(
                Package(
                    name,
                    kernel,
                    f"Extra drivers for nvidia-{branch}{s}{o} for the generic flavour",
                    section="kernel",
                    component=driver_component,
                    depends=[f"nvidia-kernel-common-{branch}{s} (>= {upstream(v)})"],
                    files=doc(name, "Real package: modules signed by Canonical's key."),
                )
            )
    packages += [
        fabricmanager(f"nvidia-fabricmanager-{branch}", v, fm_component),
        nscq(f"libnvidia-nscq-{branch}", v, fm_component),
    ]
    return packages


def ubuntu_cuda_metapackages(branch: str, version: str) -> list[Package]:
    return [
        Package(
            f"cuda-drivers-{branch}",
            version,
            "CUDA Driver native Libraries",
            section="multiverse/devel",
            depends=[f"nvidia-driver-{branch} (>= {upstream(version)})"],
        ),
        Package(
            f"cuda-drivers-fabricmanager-{branch}",
            version,
            "Meta-package for FM and Driver",
            section="multiverse/devel",
            depends=[
                f"cuda-drivers-{branch} (= {version})",
                f"nvidia-fabricmanager-{branch} (= {version})",
                f"libnvidia-nscq-{branch} (= {version})",
            ],
        ),
    ]


def debian_cuda_release(branch: str, version: str, nvidia_smi: bytes) -> list[Package]:
    """NVIDIA's Debian 12 packages: Debian-style names, one version per driver release."""
    v = version
    exact = f"(= {v})"
    return [
        Package("libcuda1", v, "NVIDIA CUDA Driver Library", files=doc("libcuda1", "libcuda.so.1")),
        Package(
            "libnvidia-ml1",
            v,
            "NVIDIA Management Library (NVML) runtime library",
            files=doc("libnvidia-ml1", "libnvidia-ml.so.1"),
        ),
        Package(
            "nvidia-smi",
            v,
            "NVIDIA System Management Interface",
            section="utils",
            depends=[f"libnvidia-ml1 {exact}"],
            files=nvidia_smi_files(nvidia_smi),
        ),
        persistenced(
            Package(
                "nvidia-persistenced",
                v,
                "daemon to maintain persistent software state in the NVIDIA driver",
                section="utils",
                depends=["adduser"],
            )
        ),
        driver_writer(
            Package(
                "nvidia-kernel-open-dkms",
                v,
                "NVIDIA binary kernel module DKMS source (open kernel module)",
                section="kernel",
                files=doc("nvidia-kernel-open-dkms", "Real package: open module sources for DKMS."),
            ).exclusive("nvidia-kernel-dkms-any"),
            "open",
            branch,
        ),
        driver_writer(
            Package(
                "nvidia-kernel-dkms",
                v,
                "NVIDIA binary kernel module DKMS source",
                section="kernel",
                files=doc(
                    "nvidia-kernel-dkms", "Real package: proprietary module sources for DKMS."
                ),
            ).exclusive("nvidia-kernel-dkms-any"),
            "proprietary",
            branch,
        ),
        Package(
            "nvidia-driver-cuda",
            v,
            "NVIDIA driver CUDA integration components",
            section="metapackages",
            depends=[
                f"nvidia-smi {exact}",
                f"libcuda1 {exact}",
                f"libnvidia-ml1 {exact}",
                f"nvidia-persistenced {exact}",
                f"nvidia-kernel-open-dkms {exact} | nvidia-kernel-dkms {exact}",
            ],
        ),
        Package(
            "nvidia-driver",
            v,
            "NVIDIA metapackage",
            section="metapackages",
            depends=[f"nvidia-driver-cuda {exact}"],
        ),
        Package(
            "nvidia-open",
            v,
            "NVIDIA open kernel module driver metapackage",
            section="metapackages",
            depends=[f"nvidia-driver {exact}", f"nvidia-kernel-open-dkms {exact}"],
        ),
        Package(
            "cuda-drivers",
            v,
            "CUDA Driver native Libraries",
            section="metapackages",
            depends=[f"nvidia-driver {exact}", f"nvidia-kernel-dkms {exact}"],
        ),
        Package(
            f"cuda-drivers-{branch}",
            v,
            "CUDA Driver native Libraries",
            section="metapackages",
            depends=[f"cuda-drivers {exact}"],
        ),
        fabricmanager(f"nvidia-fabricmanager-{branch}", v),
        nscq(f"libnvidia-nscq-{branch}", v),
        Package(
            f"cuda-drivers-fabricmanager-{branch}",
            v,
            "Meta-package for FM and Driver",
            section="metapackages",
            depends=[
                f"cuda-drivers-{branch} {exact}",
                f"nvidia-fabricmanager-{branch} {exact}",
                f"libnvidia-nscq-{branch} {exact}",
            ],
        ),
    ]


def debian_archive(nvidia_smi: bytes) -> list[Package]:
    """Debian 12's NVIDIA packages (branch 535) in contrib, non-free and non-free-firmware."""
    v = DEBIAN_DRIVER
    exact = f"(= {v})"
    return [
        Package(
            "libcuda1",
            v,
            "NVIDIA CUDA Driver Library",
            component="non-free",
            files=doc("libcuda1", "libcuda.so.1"),
        ),
        Package(
            "libnvidia-ml1",
            v,
            "NVIDIA Management Library (NVML) runtime library",
            component="non-free",
            files=doc("libnvidia-ml1", "libnvidia-ml.so.1"),
        ),
        Package(
            "nvidia-smi",
            v,
            "NVIDIA System Management Interface",
            section="utils",
            component="non-free",
            depends=[f"libnvidia-ml1 {exact}"],
            files=nvidia_smi_files(nvidia_smi),
        ),
        Package(
            "firmware-nvidia-gsp",
            v,
            "NVIDIA GSP firmware",
            section="kernel",
            component="non-free-firmware",
            files=doc("firmware-nvidia-gsp", "Real package: GSP firmware for the open modules."),
        ),
        driver_writer(
            Package(
                "nvidia-open-kernel-dkms",
                v,
                "NVIDIA open kernel module DKMS source",
                section="kernel",
                component="contrib",
                depends=[f"firmware-nvidia-gsp {exact}"],
                files=doc("nvidia-open-kernel-dkms", "Real package: open module sources for DKMS."),
            ).exclusive("nvidia-kernel-dkms-any"),
            "open",
            "535",
        ),
        driver_writer(
            Package(
                "nvidia-kernel-dkms",
                v,
                "NVIDIA binary kernel module DKMS source",
                section="kernel",
                component="non-free",
                files=doc(
                    "nvidia-kernel-dkms", "Real package: proprietary module sources for DKMS."
                ),
            ).exclusive("nvidia-kernel-dkms-any"),
            "proprietary",
            "535",
        ),
        persistenced(
            Package(
                "nvidia-persistenced",
                DEBIAN_PERSISTENCED,
                "daemon to maintain persistent software state in the NVIDIA driver",
                section="utils",
                component="contrib",
                depends=["adduser"],
            )
        ),
        Package(
            "nvidia-driver",
            v,
            "NVIDIA metapackage",
            section="metapackages",
            component="non-free",
            depends=[
                f"nvidia-smi {exact}",
                f"libcuda1 {exact}",
                f"nvidia-kernel-dkms {exact} | nvidia-open-kernel-dkms {exact}",
            ],
        ),
    ]


def cuda_keyring(distro: str, key: bytes) -> Package:
    listing = (
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
        f"{KEYRING_UPSTREAM}/{distro}/x86_64/ /\n"
    ).encode()
    return Package(
        "cuda-keyring",
        "1.1-1",
        "GPG keyring for the CUDA repository",
        arch="all",
        section="misc",
        files={
            "/usr/share/keyrings/cuda-archive-keyring.gpg": (key, 0o644),
            f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list": (listing, 0o644),
        },
        conffiles=[f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list"],
    )


# ------------------------------------------------------------------ the repositories


def cuda_repository(distro: str, nvidia_smi: bytes, key: bytes) -> list[Package]:
    packages: list[Package] = [cuda_keyring(distro, key)]
    for branch, releases in CUDA_RELEASES.items():
        for release in releases:
            if distro == "debian12":
                packages += debian_cuda_release(branch, f"{release}-1", nvidia_smi)
            else:
                version = f"{release}-0ubuntu1"
                packages += ubuntu_branch(branch, version, nvidia_smi, server=False)
                packages += ubuntu_cuda_metapackages(branch, version)
    return packages


def ubuntu_archive(suite: str, nvidia_smi: bytes) -> list[Package]:
    packages: list[Package] = []
    for branch, releases in UBUNTU_RELEASES.items():
        for release in releases:
            version = f"{release}-0ubuntu0.{UBUNTU_SUITES[suite]}.1"
            packages += ubuntu_branch(
                branch,
                version,
                nvidia_smi,
                server=True,
                driver_component="restricted",
                fm_component="multiverse",
                kernel=UBUNTU_KERNELS[suite] if release == releases[-1] else None,
            )
    return packages
