# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Decisions the NVIDIA driver role makes from what a host reports, as pure functions.

- which GPU generation a device is (from its compute capability, PCI device id or chip
  codename), and from the generations on a host whether the kernel modules must, may or
  cannot be the open ones (`decide_module_flavour`);
- the `gpu_devices`-shaped list of GPUs from one probe run (`devices_from_probe`), the same
  shape the gpu_tier inventory plugin sets, so the role reads both alike;
- the Secure Boot state from `mokutil --sb-state` or the SecureBoot EFI variable.

Facts used (NVIDIA's driver installation guide, see docs/reference/nvidia.md): open modules
support Turing and newer and are NVIDIA's default from R560; Grace Hopper and Blackwell
require them; Maxwell, Pascal and Volta require the proprietary ones, and so does a host that
mixes such a GPU with newer ones. Open modules exist from R515.

Pure standard library, Python 3.8+ (it runs on managed hosts inside the gpu_facts module).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    MAX_GPU_MEMORY_MIB,
    ProbeReport,
    architecture_from_codename,
    architecture_from_compute_cap,
)

__all__ = [
    "ARCHITECTURES",
    "OPEN_MODULES_FIRST_BRANCH",
    "PACKAGING",
    "FlavourDecision",
    "FlavourError",
    "PackageError",
    "PlannedPackage",
    "SecureBoot",
    "apt_sources",
    "architecture_from_pci_device_id",
    "decide_module_flavour",
    "device_architecture",
    "devices_from_probe",
    "dnf_module_streams",
    "dnf_stream_check",
    "fabricmanager_failure",
    "normalize_bus_id",
    "package_plan",
    "parse_dnf_list",
    "parse_madison",
    "resolve_apt",
    "resolve_dnf",
    "secure_boot_state",
    "ubuntu_kernel_flavour",
    "upstream_version",
    "validate_devices",
]

#: GPU generations, oldest first.
ARCHITECTURES = (
    "kepler",
    "maxwell",
    "pascal",
    "volta",
    "turing",
    "ampere",
    "ada",
    "hopper",
    "blackwell",
)
_PROPRIETARY_ONLY = frozenset({"kepler", "maxwell", "pascal", "volta"})
_OPEN_ONLY = frozenset({"blackwell"})
#: The first driver branch that ships the open kernel modules.
OPEN_MODULES_FIRST_BRANCH = 515
#: The branch from which NVIDIA installs the open modules by default.
OPEN_MODULES_DEFAULT_BRANCH = 560

# PCI device id ranges (inclusive) per generation, from the ids NVIDIA assigns per chip
# family (GK1xx 0x0fc0-0x12ff ... GB2xx 0x2900 and up). A host whose pci.ids is too old to
# name a chip still prints its id (`Device 2330`); this table reads it. Overlaps are
# resolved by order: the narrower, later ranges (GV100 in GP10x's span, GH100 in GA10x's)
# come first.
_PCI_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x1D81, 0x1D81, "volta"),  # TITAN V
    (0x1DB0, 0x1DBF, "volta"),  # GV100: V100 SXM2/PCIe/SXM3
    (0x1DF0, 0x1DFF, "volta"),  # GV100: V100S, V100 PCIe 32GB
    (0x2300, 0x23FF, "hopper"),  # GH100: H100, H200, H800, GH200
    (0x0FC0, 0x12FF, "kepler"),
    (0x1340, 0x17FF, "maxwell"),  # GM107/GM108/GM20x (GP100 0x15f0-0x15ff below wins)
    (0x1B00, 0x1DFF, "pascal"),  # GP102-GP108
    (0x1E00, 0x1FFF, "turing"),  # TU102/TU104/TU106/TU117
    (0x2180, 0x21FF, "turing"),  # TU116
    (0x2080, 0x20FF, "ampere"),  # GA100: A100, A30, A800
    (0x2200, 0x25FF, "ampere"),  # GA102-GA107
    (0x2600, 0x28FF, "ada"),  # AD102-AD107: RTX 40xx, L4, L40, L40S
    (0x2900, 0x2FFF, "blackwell"),  # GB100/GB102 (B200, GB200), GB20x (RTX 50xx)
)
_PCI_EXCEPTIONS = {0x15F0: "pascal", 0x15F7: "pascal", 0x15F8: "pascal", 0x15F9: "pascal"}
# Grace Hopper superchips: the GPU is a GH100 but the platform needs the open modules.
_GRACE_HOPPER_IDS = frozenset({0x2342, 0x2348})
_GRACE_NAME_RE = re.compile(r"\bG[HB]\d{3}\b")  # GH200, GB200, GB300 ("NVIDIA GH200 480GB")


def architecture_from_pci_device_id(device_id: str | None) -> str | None:
    """GPU generation from its PCI device id (`2330`, `0x2330`, `10de:2330`), None if unknown.

    Ids above the last known range are read as Blackwell or newer: every generation after
    Hopper requires the open modules, so the decision they feed stays right.
    """
    if not device_id:
        return None
    text = str(device_id).strip().lower()
    text = text.split(":")[-1]
    text = text[2:] if text.startswith("0x") else text
    if not re.fullmatch(r"[0-9a-f]{4}", text):
        return None
    value = int(text, 16)
    if value in _PCI_EXCEPTIONS:
        return _PCI_EXCEPTIONS[value]
    for first, last, architecture in _PCI_RANGES:
        if first <= value <= last:
            return architecture
    if value > 0x2FFF:
        return "blackwell"
    return None


def _is_grace(device: Mapping[str, Any]) -> bool:
    name = str(device.get("name") or "")
    if _GRACE_NAME_RE.search(name):
        return True
    device_id = str(device.get("pci_device_id") or "").lower().split(":")[-1]
    device_id = device_id[2:] if device_id.startswith("0x") else device_id
    return bool(re.fullmatch(r"[0-9a-f]{4}", device_id)) and int(device_id, 16) in (
        _GRACE_HOPPER_IDS
    )


def device_architecture(device: Mapping[str, Any]) -> tuple[str | None, str]:
    """The generation of one `gpu_devices` entry and where it was read from.

    Order: the entry's own `architecture`, its compute capability, its PCI device id, the
    chip codename in its name (lspci's `GH100 [H100 SXM5 80GB]`).
    """
    known = device.get("architecture")
    if isinstance(known, str) and known.lower() in ARCHITECTURES:
        return known.lower(), "architecture"
    architecture = architecture_from_compute_cap(device.get("compute_cap"))
    if architecture:
        return architecture, f"compute capability {device.get('compute_cap')}"
    architecture = architecture_from_pci_device_id(device.get("pci_device_id"))
    if architecture:
        return architecture, f"PCI id 10de:{str(device.get('pci_device_id')).lower()}"
    architecture = architecture_from_codename(str(device.get("name") or ""))
    if architecture:
        return architecture, "chip name"
    return None, "unknown"


def _describe(device: Mapping[str, Any]) -> str:
    name = device.get("name") or "NVIDIA GPU"
    where = device.get("pci_bus_id")
    if device.get("index") is not None:
        return f"GPU {device['index']} ({name})"
    return f"{name} at {where}" if where else str(name)


class FlavourError(ValueError):
    """The requested kernel-module flavour cannot drive this host's GPUs (message says why)."""


@dataclass(frozen=True)
class FlavourDecision:
    flavour: str | None  # "open", "proprietary", or None on a host without GPUs
    reason: str
    architectures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "reason": self.reason,
            "architectures": list(self.architectures),
        }


def _branch_number(branch: str | int | None) -> int | None:
    if branch is None or branch == "":
        return None
    match = re.match(r"^(\d{3})", str(branch).strip())
    return int(match.group(1)) if match else None


def decide_module_flavour(
    requested: str, devices: Sequence[Mapping[str, Any]], branch: str | int | None = None
) -> FlavourDecision:
    """open or proprietary kernel modules for these GPUs; FlavourError when none can work.

    `requested` is `auto`, `open` or `proprietary`. auto: proprietary when any GPU needs it
    (Maxwell/Pascal/Volta, alone or mixed with newer ones, as NVIDIA advises), or when the
    branch predates the open modules; open otherwise (Turing and newer; required on
    Grace Hopper and Blackwell). A GPU whose generation cannot be told stops `auto` with a
    message naming it: guessing wrong leaves a host whose driver never loads.
    """
    if requested not in ("auto", "open", "proprietary"):
        raise FlavourError(f"module flavour {requested!r} is not one of auto, open, proprietary")
    if not devices:
        return FlavourDecision(None, "no NVIDIA GPU: no kernel modules needed")
    branch_number = _branch_number(branch)
    needs_proprietary: list[str] = []
    needs_open: list[str] = []
    unknown: list[str] = []
    architectures: list[str] = []
    for device in devices:
        architecture, _source = device_architecture(device)
        label = _describe(device)
        if architecture is None:
            unknown.append(label)
            continue
        architectures.append(architecture)
        if architecture in _PROPRIETARY_ONLY:
            needs_proprietary.append(f"{label}: {architecture}")
        elif architecture in _OPEN_ONLY or _is_grace(device):
            kind = "Grace platform" if _is_grace(device) else architecture
            needs_open.append(f"{label}: {kind}")
    generations = tuple(sorted(set(architectures), key=ARCHITECTURES.index))
    summary = ", ".join(generations) or "unknown generation"

    if needs_open and needs_proprietary:
        raise FlavourError(
            "no kernel-module flavour drives all GPUs of this host: {} need the open modules "
            "and {} the proprietary ones; split them across hosts".format(
                "; ".join(needs_open), "; ".join(needs_proprietary)
            )
        )
    if needs_open and branch_number is not None and branch_number < OPEN_MODULES_FIRST_BRANCH:
        raise FlavourError(
            f"{'; '.join(needs_open)} need the open kernel modules, which branch "
            f"{branch_number} does not have (first: {OPEN_MODULES_FIRST_BRANCH}); pick a newer "
            "nvidia_driver_branch"
        )

    if requested == "open":
        if needs_proprietary:
            raise FlavourError(
                "nvidia_driver_module_flavour is open but the open modules do not support "
                f"{'; '.join(needs_proprietary)} (Turing and newer only); use proprietary or auto"
            )
        if branch_number is not None and branch_number < OPEN_MODULES_FIRST_BRANCH:
            raise FlavourError(
                f"nvidia_driver_module_flavour is open but branch {branch_number} has no open "
                f"modules (first: {OPEN_MODULES_FIRST_BRANCH})"
            )
        note = f" ({len(unknown)} GPU(s) of unknown generation)" if unknown else ""
        return FlavourDecision(
            "open", f"open modules as requested for {summary}{note}", generations
        )
    if requested == "proprietary":
        if needs_open:
            raise FlavourError(
                "nvidia_driver_module_flavour is proprietary but "
                f"{'; '.join(needs_open)} require the open modules; use open or auto"
            )
        note = f" ({len(unknown)} GPU(s) of unknown generation)" if unknown else ""
        return FlavourDecision(
            "proprietary", f"proprietary modules as requested for {summary}{note}", generations
        )

    if unknown:
        raise FlavourError(
            "cannot tell the generation of {} (no compute capability, PCI id or chip name "
            "known to this role); set nvidia_driver_module_flavour to open (Turing and newer) "
            "or proprietary (Maxwell, Pascal, Volta)".format("; ".join(unknown))
        )
    if needs_proprietary:
        mixed = len(generations) > 1
        return FlavourDecision(
            "proprietary",
            "proprietary modules: {} {}".format(
                "; ".join(needs_proprietary),
                "mixed with newer GPUs (NVIDIA: keep the proprietary driver on mixed hosts)"
                if mixed
                else "predate the open modules (Turing and newer only)",
            ),
            generations,
        )
    if branch_number is not None and branch_number < OPEN_MODULES_FIRST_BRANCH:
        return FlavourDecision(
            "proprietary",
            f"proprietary modules: branch {branch_number} predates the open modules",
            generations,
        )
    if needs_open:
        return FlavourDecision(
            "open", f"open modules: required by {'; '.join(needs_open)}", generations
        )
    return FlavourDecision(
        "open",
        f"open modules: {summary} support them and NVIDIA recommends them (default from R"
        f"{OPEN_MODULES_DEFAULT_BRANCH})",
        generations,
    )


def normalize_bus_id(address: str | None) -> str | None:
    """`00000000:18:00.0` (nvidia-smi), `0000:18:00.0` and `18:00.0` (lspci) -> `18:00.0`."""
    if not address:
        return None
    match = re.search(r"([0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])$", address.strip())
    return match.group(1).lower() if match else None


def devices_from_probe(report: ProbeReport) -> list[dict[str, Any]]:
    """The host's GPUs as gpu_tier's `gpu_devices` entries, from one probe run.

    With a working nvidia-smi: its GPUs, each completed with the PCI device id lspci shows
    at the same bus address (and the generation read from it when the driver is too old to
    report a compute capability). Without one: the GPUs on the PCI bus, with what lspci
    knows (no index, memory or driver yet).
    """
    pci_by_bus = {normalize_bus_id(d.address): d for d in report.pci.gpus}
    result: list[dict[str, Any]] = []
    if report.nvidia_smi.ok:
        for gpu in report.nvidia_smi.gpus:
            entry = gpu.to_dict()
            device = pci_by_bus.get(normalize_bus_id(gpu.pci_bus_id))
            entry["pci_device_id"] = device.device_id if device else None
            if entry.get("architecture") is None:
                entry["architecture"], _ = device_architecture(entry)
                if entry["architecture"] is None and device is not None:
                    entry["architecture"] = device.architecture
            result.append(entry)
        return result
    for device in report.pci.gpus:
        entry = device.as_gpu_device()
        if entry["architecture"] is None:
            entry["architecture"] = architecture_from_pci_device_id(device.device_id)
        result.append(entry)
    return result


@dataclass(frozen=True)
class SecureBoot:
    """enabled, disabled, unsupported (no UEFI / no Secure Boot), or unknown."""

    state: str
    detail: str

    @property
    def enforcing(self) -> bool:
        return self.state == "enabled"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "enforcing": self.enforcing, "detail": self.detail}


def secure_boot_state(
    mokutil_rc: int | None,
    mokutil_output: str,
    efi_present: bool,
    efivar: bytes | None,
) -> SecureBoot:
    """Whether the firmware enforces module signatures.

    `mokutil --sb-state` is read first (rc None: mokutil is not installed). Its answers:
    "SecureBoot enabled" (maybe followed by "SecureBoot validation is disabled in shim",
    in which case unsigned modules load), "SecureBoot disabled", "This system doesn't
    support Secure Boot", "EFI variables are not supported on this system". Without
    mokutil, the SecureBoot-8be4df61-... EFI variable: 4 attribute bytes, then 1 (on) or 0.
    Without /sys/firmware/efi the host booted in legacy BIOS mode: no Secure Boot.
    """
    text = (mokutil_output or "").strip()
    lowered = text.lower()
    if mokutil_rc is not None and text:
        if "validation is disabled in shim" in lowered:
            return SecureBoot("disabled", "mokutil: Secure Boot on, but shim validation is off")
        if re.search(r"secureboot enabled", lowered):
            return SecureBoot("enabled", "mokutil: SecureBoot enabled")
        if re.search(r"secureboot disabled", lowered):
            return SecureBoot("disabled", "mokutil: SecureBoot disabled")
        if "doesn't support secure boot" in lowered or "not supported" in lowered:
            return SecureBoot("unsupported", "mokutil: " + text.splitlines()[0][:120])
    if not efi_present:
        return SecureBoot("unsupported", "legacy BIOS boot (no /sys/firmware/efi)")
    if efivar is not None:
        if len(efivar) >= 5:
            on = efivar[4] == 1
            return SecureBoot(
                "enabled" if on else "disabled",
                f"EFI variable SecureBoot = {1 if on else efivar[4]}",
            )
        return SecureBoot("unknown", "EFI variable SecureBoot is truncated")
    if mokutil_rc is not None and text:
        return SecureBoot("unknown", "mokutil: " + text.splitlines()[0][:120])
    return SecureBoot(
        "unknown",
        "UEFI boot, but neither mokutil nor the SecureBoot EFI variable could be read",
    )


_FM_RELEVANT = re.compile(r"fabric manager|nvswitch|driver", re.IGNORECASE)
_FM_SYSTEMD = re.compile(
    r"^(Starting|Started|Stopped|Failed to start|nvidia-fabricmanager\.service: )"
)


def fabricmanager_failure(journal: str, fallback: str = "") -> str:
    """Why Fabric Manager did not start, from its journal (`journalctl --output cat`): its
    own last line about Fabric Manager, NVSwitches or the driver (systemd's lines about the
    unit say nothing new), else `fallback`; without the final full stops."""
    lines = [
        line
        for line in (journal or "").splitlines()
        if _FM_RELEVANT.search(line) and not _FM_SYSTEMD.match(line)
    ]
    reason = lines[-1] if lines else (fallback or "nothing logged")
    return reason.rstrip(".")


def upstream_version(package_version: str) -> str:
    """The driver version inside a package version: `1:550.54.15-0ubuntu1` -> `550.54.15`.

    Debian (`epoch:upstream-revision`) and RPM (`epoch:version-release`) shapes alike.
    """
    text = (package_version or "").strip()
    if ":" in text:
        text = text.split(":", 1)[1]
    if "-" in text:
        text = text.rsplit("-", 1)[0]
    return text


# --------------------------------------------------------------------------- given devices

_MAX_NAME = 96
_CC_TEXT = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$", re.ASCII)


def _count(value: Any, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def validate_devices(devices: Sequence[Any]) -> list[dict[str, Any]]:
    """`gpu_devices` entries given to a module (gpu_tier's shape), checked before they decide
    anything: FlavourError names the first element that cannot describe a GPU."""
    checked: list[dict[str, Any]] = []
    for number, device in enumerate(devices):
        where = f"devices[{number}]"
        if not isinstance(device, Mapping):
            raise FlavourError(
                f"{where}: a GPU is a mapping (gpu_tier's gpu_devices), not {device!r}"
            )
        name = device.get("name")
        if not isinstance(name, str) or not name.strip():
            raise FlavourError(
                f"{where}: needs a name (the GPU's model, as nvidia-smi or lspci says)"
            )
        if len(name) > _MAX_NAME:
            raise FlavourError(f"{where}: name is longer than {_MAX_NAME} characters")
        for key, maximum in (("index", 4095), ("memory_mib", MAX_GPU_MEMORY_MIB)):
            value = device.get(key)
            if value is not None and not _count(value, maximum):
                raise FlavourError(
                    f"{where}: {key} {value!r} is not a whole number from 0 to {maximum} (or null)"
                )
        compute_cap = device.get("compute_cap")
        if compute_cap is not None and not (
            isinstance(compute_cap, str) and _CC_TEXT.match(compute_cap)
        ):
            raise FlavourError(
                f"{where}: compute_cap {compute_cap!r} is not a compute capability such as 8.9"
            )
        architecture = device.get("architecture")
        if architecture is not None and str(architecture).lower() not in ARCHITECTURES:
            raise FlavourError(
                f"{where}: architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
            )
        for key in ("driver", "uuid", "pci_bus_id", "pci_device_id"):
            value = device.get(key)
            if value is not None and not (isinstance(value, str) and len(value) <= _MAX_NAME):
                raise FlavourError(f"{where}: {key} {value!r} is not a short text (or null)")
        checked.append(dict(device))
    return checked


# ------------------------------------------------------------------ packages: plan, resolution
#
# Which packages a host gets, and at which version, answered in one place: `package_plan`
# names them for a distribution, branch, module flavour, headless/full, Fabric Manager and
# source; `resolve_apt` and `resolve_dnf` read what the repositories offer (`apt-cache
# madison`, `dnf list --showduplicates`) against what is installed and settle one driver
# version, the install specs, what is missing and what must go. The role runs the commands
# and installs; every decision between them is here. Package names follow NVIDIA's driver
# installation guide and the distributions' archives (docs/nvidia-driver.md cites them).


class PackageError(ValueError):
    """A plan that cannot be made from these settings (the message says which)."""


# The installed packages come from a command (the role's _nvidia_driver_installed_query),
# not package_facts: facts live in the fact cache, and Ansible decodes a host's whole entry
# there again for each of its later tasks (a server's package list is hundreds of KB).

# The query for each package family, one line a package and architecture, tab-separated
# fields (dpkg-query and rpm expand the \t and \n themselves), that installed_packages
# parses. The driver role runs it (its _nvidia_driver_installed_query must equal this: a test
# checks it) and so does fleet_tls_state, so that "installed" means the same everywhere.
INSTALLED_QUERY = {
    "apt": [
        "dpkg-query",
        "-W",
        "-f",
        r"${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
    ],
    "dnf": ["rpm", "-qa", "--qf", r"%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"],
}

# dpkg's second status letter (dpkg-query(1)): not-installed and config-files are not
# installed; every other state (installed, unpacked, half-configured, half-installed,
# triggers-awaited, triggers-pending) has files of that version on the host.
_DPKG_NOT_INSTALLED = ("n", "c")


def installed_packages(listing: str, family: str) -> dict[str, list[dict[str, Any]]]:
    """The output of INSTALLED_QUERY[family] -> {name: [{version,
    arch, ...}]}, the shape package_facts reports (a name may be installed for several
    architectures). apt: the version is dpkg's whole version (epoch:upstream-revision), as
    package_facts gives it; dnf: version, release and epoch (None without one) apart, as
    package_facts gives them. A line that is not the query's shape raises PackageError
    naming it."""
    if family not in ("apt", "dnf"):
        raise PackageError(
            f"no installed-package query for the package family {family!r} (apt or dnf)"
        )
    fields = 4 if family == "apt" else 5
    packages: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(listing.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != fields or not parts[1 if family == "apt" else 0]:
            raise PackageError(
                f"line {number} of the installed-package list is not the query's shape "
                f"({fields} tab-separated fields): {line[:200]!r}"
            )
        if family == "apt":
            status, name, version, arch = parts
            if len(status) < 2 or status[1] in _DPKG_NOT_INSTALLED:
                continue
            entry: dict[str, Any] = {
                "name": name,
                "version": version,
                "arch": arch,
                "source": "apt",
            }
        else:
            name, epoch, version, release, arch = parts
            entry = {
                "name": name,
                "epoch": int(epoch) if epoch.isdigit() else None,
                "version": version,
                "release": release,
                "arch": arch,
                "source": "rpm",
            }
        packages.setdefault(name, []).append(entry)
    return packages


#: ansible_facts distribution -> the packaging the plan follows.
PACKAGING = {
    "Debian": "debian",
    "Ubuntu": "ubuntu",
    "RedHat": "rhel",
    "Rocky": "rhel",
    "AlmaLinux": "rhel",
}
_SOURCES = ("cuda", "distro")
_KERNEL_ABI = re.compile(r"^[0-9.]+-[0-9]+-")


@dataclass(frozen=True)
class PlannedPackage:
    """One package of the plan. pin: held at exactly the driver's version; kernel: follows
    the running kernel (headers, pre-signed modules), so a container, which has no kernel of
    its own, skips it."""

    name: str
    pin: bool = True
    kernel: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pin": self.pin, "kernel": self.kernel}


def ubuntu_kernel_flavour(
    kernel: str, distribution_version: str, requested: str = "", installed: Any = ()
) -> str:
    """The kernel flavour Canonical's pre-signed module packages follow.

    `requested` wins; else the running kernel's (`5.15.0-126-generic` -> `generic`), and on
    a generic kernel with `linux-generic-hwe-<version>` installed the HWE one
    (`generic-hwe-22.04`).
    """
    if requested:
        return requested
    flavour = _KERNEL_ABI.sub("", kernel or "")
    hwe = f"linux-generic-hwe-{distribution_version}"
    if flavour == "generic" and hwe in (installed or ()):
        return f"generic-hwe-{distribution_version}"
    return flavour


def package_plan(
    distribution: str,
    branch: str | int,
    flavour: str,
    *,
    source: str = "cuda",
    headless: bool = True,
    fabricmanager: bool = False,
    kernel: str = "",
    distribution_version: str = "",
    kernel_flavour: str = "",
    precompiled: bool = False,
    container: bool = False,
    installed: Any = (),
) -> dict[str, Any]:
    """The packages this host gets, and how the repositories are asked about them.

    `flavour` is `open` or `proprietary` (decide_module_flavour); `precompiled` (Ubuntu's
    archive only) takes Canonical's pre-signed module packages instead of DKMS; `installed`
    is the installed package names (Ubuntu's HWE kernel flavour reads them). Returns:
    packages ([{name, pin, kernel}], kernel packages left out in a container), version_package
    (whose releases say which driver versions exist), branch_prefix (`apt-cache pkgnames`
    lists the other branches by it; empty: read them from version_package's releases),
    module_stream (dnf), alternatives (patterns of installed packages of another branch,
    flavour or source: removed unless planned or kept) and keep.
    """
    packaging = PACKAGING.get(str(distribution))
    if packaging is None:
        raise PackageError(
            f"no NVIDIA driver packages known for {distribution!r}; "
            f"known: {', '.join(sorted(PACKAGING))}"
        )
    branch = str(branch)
    if not re.fullmatch(r"[0-9]{3}", branch):
        raise PackageError(f"driver branch {branch!r} is not a branch number such as 570")
    if flavour not in ("open", "proprietary"):
        raise PackageError(f"module flavour {flavour!r} is not open or proprietary")
    if source not in _SOURCES:
        raise PackageError(f"source {source!r} is not one of {', '.join(_SOURCES)}")
    if packaging == "rhel" and source != "cuda":
        raise PackageError(f"{distribution} has no NVIDIA driver of its own: use source cuda")
    is_open = flavour == "open"
    plan: dict[str, Any] = {
        "packaging": packaging,
        "branch": branch,
        "branch_prefix": "",
        "module_stream": "",
        "keep": [],
    }
    if packaging == "debian":
        packages, extra = _debian_plan(branch, is_open, source, headless, kernel)
    elif packaging == "ubuntu":
        packages, extra = _ubuntu_plan(
            branch,
            is_open,
            source,
            headless,
            kernel,
            ubuntu_kernel_flavour(kernel, distribution_version, kernel_flavour, installed),
            precompiled and source == "distro",
        )
    else:
        packages, extra = _rhel_plan(branch, is_open, headless)
    plan.update(extra)
    if fabricmanager:
        packages.append(
            PlannedPackage(
                "nvidia-fabric-manager" if packaging == "rhel" else f"nvidia-fabricmanager-{branch}"
            )
        )
        packages.append(PlannedPackage(f"libnvidia-nscq-{branch}"))
    plan["packages"] = [p.to_dict() for p in packages if not (container and p.kernel)]
    return plan


_FABRIC_ALTERNATIVES = ["^nvidia-fabricmanager-[0-9]+$", "^libnvidia-nscq-[0-9]+$"]


def _debian_plan(
    branch: str, is_open: bool, source: str, headless: bool, kernel: str
) -> tuple[list[PlannedPackage], dict[str, Any]]:
    # NVIDIA's repository uses Debian-style names without the branch (held by the apt pin);
    # Debian's archive names its open module package nvidia-open-kernel-dkms, ships the GSP
    # firmware apart, and versions nvidia-persistenced on its own.
    cuda = source == "cuda"
    if is_open:
        kmod = "nvidia-kernel-open-dkms" if cuda else "nvidia-open-kernel-dkms"
    else:
        kmod = "nvidia-kernel-dkms"
    packages = [PlannedPackage("nvidia-driver-cuda")] if cuda else []
    packages += [
        PlannedPackage(kmod),
        PlannedPackage("nvidia-smi"),
        PlannedPackage("libcuda1"),
        PlannedPackage("libnvidia-ml1"),
    ]
    if not cuda and is_open:
        packages.append(PlannedPackage("firmware-nvidia-gsp"))
    packages.append(PlannedPackage("nvidia-persistenced", pin=cuda))
    if not headless:
        packages.append(PlannedPackage("nvidia-driver"))
    packages.append(PlannedPackage(f"linux-headers-{kernel}", pin=False, kernel=True))
    return packages, {
        "version_package": "nvidia-driver-cuda" if cuda else kmod,
        "alternatives": ["^nvidia-(kernel|kernel-open|open-kernel)-dkms$", *_FABRIC_ALTERNATIVES],
    }


def _ubuntu_plan(  # noqa: PLR0917 - the settings that shape Ubuntu's names
    branch: str,
    is_open: bool,
    source: str,
    headless: bool,
    kernel: str,
    kernel_flavour: str,
    precompiled: bool,
) -> tuple[list[PlannedPackage], dict[str, Any]]:
    # Canonical's archive carries the `-server` branches and the pre-signed
    # linux-modules-nvidia-*; NVIDIA's repository the same names without `-server`.
    server = "-server" if source == "distro" else ""
    variant = f"{branch}{server}{'-open' if is_open else ''}"
    meta = "driver" if not headless else "headless-no-dkms" if precompiled else "headless"
    packages = [
        PlannedPackage(f"nvidia-utils-{branch}{server}"),
        PlannedPackage(f"nvidia-compute-utils-{branch}{server}"),
        PlannedPackage(f"nvidia-{meta}-{variant}"),
    ]
    if precompiled:
        packages.append(
            PlannedPackage(
                f"linux-modules-nvidia-{variant}-{kernel_flavour}", pin=False, kernel=True
            )
        )
    else:
        packages += [
            PlannedPackage(f"nvidia-dkms-{variant}"),
            PlannedPackage(f"linux-headers-{kernel}", pin=False, kernel=True),
        ]
    # Same-variant dependencies of the plan that match an alternative but stay.
    keep = [f"nvidia-headless-no-dkms-{variant}"]
    if not headless:
        keep += [f"nvidia-headless-{variant}", f"nvidia-dkms-{variant}"]
    return packages, {
        "version_package": f"nvidia-utils-{branch}{server}",
        "branch_prefix": "nvidia-utils-",
        "branch_pattern": f"^nvidia-utils-([0-9]+){server}$",
        "kernel_flavour": kernel_flavour,
        "alternatives": [
            "^nvidia-(driver|headless|headless-no-dkms|dkms|utils|compute-utils)"
            "-[0-9]+(-server)?(-open)?$",
            f"^linux-modules-nvidia-[0-9]+(-server)?(-open)?-{re.escape(kernel_flavour)}$",
            *_FABRIC_ALTERNATIVES,
        ],
        "keep": keep,
    }


def _rhel_plan(
    branch: str, is_open: bool, headless: bool
) -> tuple[list[PlannedPackage], dict[str, Any]]:
    # NVIDIA's repository only; the branch is a DNF module stream.
    packages = [
        PlannedPackage("nvidia-driver-cuda"),
        PlannedPackage("kmod-nvidia-open-dkms" if is_open else "kmod-nvidia-latest-dkms"),
        PlannedPackage("nvidia-persistenced"),
    ]
    if not headless:
        packages.append(PlannedPackage("nvidia-driver"))
    packages += [
        PlannedPackage("kernel-devel-matched", pin=False, kernel=True),
        PlannedPackage("kernel-headers", pin=False, kernel=True),
    ]
    return packages, {
        "version_package": "nvidia-driver-cuda",
        "module_stream": f"nvidia-driver:{branch}-{'open' if is_open else 'dkms'}",
        "alternatives": [
            "^kmod-nvidia-(open|latest)-dkms$",
            "^nvidia-fabric-manager$",
            "^libnvidia-nscq-[0-9]+$",
        ],
    }


# What a resolution says when the repositories cannot supply the plan; nothing has changed
# on the host when it is said.
_UNCHANGED = "Nothing was installed or removed."
_SAME_VERSION = (
    "Every driver package, Fabric Manager and libnvidia-nscq must be installed at exactly "
    "the same version"
)


def _installed_version(installed: Mapping[str, Any] | None, name: str) -> str:
    """The version package_facts reports for `name` (its first instance), '' when absent."""
    entries = (installed or {}).get(name) or []
    if isinstance(entries, Mapping):
        entries = [entries]
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("version"):
            return str(entry["version"])
    return ""


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _removals(plan: Mapping[str, Any], installed: Any, planned: Sequence[str]) -> list[str]:
    """Installed packages of another branch, flavour or source: the plan's alternatives that
    it neither installs nor keeps."""
    patterns = [re.compile(p) for p in plan.get("alternatives") or []]
    spare = set(planned) | set(plan.get("keep") or [])
    return sorted(
        name
        for name in (installed or {})
        if name not in spare and any(p.match(name) for p in patterns)
    )


def _settle(requested: str, installed_release: str, upgrade: bool, offered: Sequence[str]) -> str:
    """The driver version: the one asked for, else the branch's installed release (unless
    upgrading), else the newest the repository offers ('' when it offers none)."""
    if requested:
        return requested
    if installed_release and not upgrade:
        return installed_release
    return offered[0] if offered else ""


def _resolution(
    plan: Mapping[str, Any],
    installed: Any,
    packages: Sequence[dict[str, Any]],
    *,
    version: str,
    offered: Sequence[str],
    repository: str,
) -> dict[str, Any]:
    return {
        "version": version,
        "offered": list(offered),
        "repository": repository,
        "packages": list(packages),
        "specs": [p["spec"] for p in packages],
        "pinned": [p["name"] for p in packages if p["pin"]],
        "missing": [p["name"] for p in packages if p["missing"]],
        "remove": _removals(plan, installed, [p["name"] for p in packages]),
        "problem": "",
    }


def _branch_key(branch: str) -> tuple[int, str]:
    return (int(branch), branch) if branch.isdigit() else (0, branch)


@dataclass(frozen=True)
class MadisonLine:
    """One line of `apt-cache madison`: `name | version | <source> Packages`."""

    name: str
    version: str
    source: str


def parse_madison(text: str) -> list[MadisonLine]:
    """`apt-cache madison` output, in its order (newest release of each package first).

    Lines that are not three `|`-separated fields are skipped, and so are source packages
    (`... Sources`, printed where deb-src lines are configured): a source package can share
    its name with a binary one (Debian's nvidia-persistenced).
    """
    lines: list[MadisonLine] = []
    for raw in (text or "").splitlines():
        fields = raw.split("|")
        if len(fields) != 3:
            continue
        name, version, source = (f.strip() for f in fields)
        if name and version and " " not in version and not source.endswith("Sources"):
            lines.append(MadisonLine(name, version, source))
    return lines


def apt_sources(policy: str) -> list[str]:
    """The archive sources `apt-cache policy` lists (`<url> <suite>/<component>`), once each:
    what an operator recognises in a message."""
    found = re.findall(r"(?m)^\s*-?[0-9]+\s+(\S+://\S+\s+\S+)\s+\S+\s+Packages$", policy or "")
    return _unique([re.sub(r"\s+", " ", item) for item in found])


def _from_repository(line: MadisonLine, url: str) -> bool:
    return bool(re.match(re.escape(url) + r"/?\s", line.source + " "))


def _at_version(package_version: str, version: str) -> bool:
    """Whether a Debian package version (`[epoch:]upstream-revision`) is driver `version`."""
    return bool(re.fullmatch(r"(?:[0-9]+:)?" + re.escape(version) + r"-[^-]+", package_version))


def resolve_apt(
    madison: str,
    plan: Mapping[str, Any],
    installed: Mapping[str, Any] | None = None,
    *,
    requested: str = "",
    upgrade: bool = False,
    source: str = "cuda",
    cuda_repo_url: str = "",
    pkgnames: str = "",
    policy: str = "",
    sources_hint: str = "",
) -> dict[str, Any]:
    """One driver version for the plan on an apt host, and every package at it.

    `madison` is `apt-cache madison <every planned package>`; `pkgnames` is `apt-cache
    pkgnames <branch_prefix>` (Ubuntu), `policy` is `apt-cache policy` (to name the
    archive's sources in messages). The version: `requested`, else the installed release of
    the branch (unless `upgrade`), else the newest the chosen source offers. Pinned packages
    come from the chosen source only (NVIDIA's repository at `cuda_repo_url`, or everything
    else); the others (kernel headers) from any.

    Returns version, offered (the branch's releases there, newest first), repository (as
    messages name it), packages ([{name, pin, installed, spec, missing, offered}]), specs
    (for the install), pinned (names the apt pin holds), missing, remove (installed packages
    of other branches, flavours or sources) and problem: '' or why nothing may be installed.
    """
    branch = str(plan["branch"])
    version_package = plan["version_package"]
    every = parse_madison(madison)
    if source == "cuda":
        lines = [line for line in every if _from_repository(line, cuda_repo_url)]
        repository = f"NVIDIA's CUDA repository {cuda_repo_url}/"
    else:
        lines = [line for line in every if not _from_repository(line, cuda_repo_url)]
        repository = "the distribution archive ({}; apt sources: {})".format(
            sources_hint, ", ".join(apt_sources(policy)) or "none"
        )
    releases = [line.version for line in lines if line.name == version_package]
    offered = _unique([v for v in map(upstream_version, releases) if v.startswith(branch + ".")])
    have = _installed_version(installed, version_package)
    installed_release = upstream_version(have) if have else ""
    in_branch = bool(re.match(r"(?:[0-9]+:)?" + re.escape(branch) + r"\.", have))
    version = _settle(requested, installed_release if in_branch else "", upgrade, offered)

    resolved = []
    for package in plan["packages"]:
        name, pin = package["name"], bool(package["pin"])
        versions = [line.version for line in (lines if pin else every) if line.name == name]
        matching = [v for v in versions if _at_version(v, version)] if pin else versions
        current = _installed_version(installed, name)
        current_ok = bool(current) and (not pin or _at_version(current, version))
        if pin:
            spec = f"{name}={current if current_ok else (matching[0] if matching else '')}"
        else:
            spec = name
        resolved.append(
            {
                "name": name,
                "pin": pin,
                "installed": current,
                "spec": spec,
                "missing": not current_ok and not matching,
                "offered": _unique([upstream_version(v) for v in versions]),
            }
        )
    result = _resolution(
        plan, installed, resolved, version=version, offered=offered, repository=repository
    )
    missing = [p for p in resolved if p["missing"]]
    if not version:
        if plan.get("branch_prefix"):
            pattern = re.compile(plan["branch_pattern"])
            branches = [m.group(1) for m in map(pattern.match, (pkgnames or "").split()) if m]
        else:
            branches = [
                m.group(1) for m in (re.match(r"(?:[0-9]+:)?([0-9]+)\.", r) for r in releases) if m
            ]
        result["problem"] = (
            f"driver branch {branch} is not in {repository}: {version_package} has no "
            f"{branch}.x release there (branches it offers: "
            f"{', '.join(sorted(set(branches), key=_branch_key)) or 'none'}). {_UNCHANGED}"
        )
    elif requested and requested not in offered and requested != installed_release:
        result["problem"] = (
            f"driver {requested} is not in {repository} (releases of branch {branch} there: "
            f"{', '.join(offered) or 'none'}). {_UNCHANGED}"
        )
    elif missing:
        result["problem"] = (
            "{} not available at driver {} in {} ({}). {}, or CUDA does not initialise. {}".format(
                ", ".join(p["name"] for p in missing),
                version,
                repository,
                "; ".join(
                    f"{p['name']} offers {', '.join(p['offered']) or 'nothing'}" for p in missing
                ),
                _SAME_VERSION,
                _UNCHANGED,
            )
        )
    return result


def dnf_module_streams(text: str, module: str = "nvidia-driver") -> dict[str, list[str]]:
    """`dnf module list <module>`: the module's streams, and those enabled (`[e]`, also
    when printed with other flags, `[d][e]`). The repository's heading, the table's header
    and dnf's hint line are not streams."""
    streams: list[str] = []
    enabled: list[str] = []
    for raw in (text or "").splitlines():
        fields = raw.split()
        if len(fields) < 2 or fields[0] != module:
            continue
        streams.append(fields[1])
        if len(fields) > 2 and re.fullmatch(r"(\[[a-z]\])+", fields[2]) and "[e]" in fields[2]:
            enabled.append(fields[1])
    return {"streams": _unique(streams), "enabled": _unique(enabled)}


def dnf_stream_check(text: str, plan: Mapping[str, Any], repository: str) -> dict[str, Any]:
    """Whether the plan's module stream is in the repository (problem: '' or why not) and
    already enabled."""
    module, _, stream = str(plan["module_stream"]).partition(":")
    found = dnf_module_streams(text, module)
    problem = ""
    if stream not in found["streams"]:
        problem = (
            f"driver branch {plan['branch']} is not in {repository}: no module stream "
            f"{plan['module_stream']} (streams: {', '.join(found['streams']) or 'none'}). "
            f"{_UNCHANGED}"
        )
    return {"enabled": stream in found["enabled"], "problem": problem, "streams": found["streams"]}


def parse_dnf_list(text: str) -> dict[str, list[str]]:
    """`dnf list --showduplicates`: package name -> its versions (`[epoch:]version-release`
    -> version), in dnf's order. dnf puts the version on a line of its own after a name too
    long for its column; such a pair is read as one line. Headings are skipped."""
    rows: list[list[str]] = []
    for raw in (text or "").splitlines():
        fields = raw.split()
        if not fields:
            continue
        if raw[:1].isspace() and rows and len(rows[-1]) == 1:
            rows[-1].extend(fields)
        else:
            rows.append(fields)
    versions: dict[str, list[str]] = {}
    for fields in rows:
        if len(fields) < 2 or "." not in fields[0]:
            continue
        match = re.fullmatch(r"(?:[0-9]+:)?([^\s:-]+)-[^\s-]+", fields[1])
        if match:
            name = fields[0].rsplit(".", 1)[0]
            versions.setdefault(name, [])
            if match.group(1) not in versions[name]:
                versions[name].append(match.group(1))
    return versions


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def resolve_dnf(
    dnf_list: str,
    plan: Mapping[str, Any],
    installed: Mapping[str, Any] | None = None,
    *,
    repository: str = "",
    requested: str = "",
    upgrade: bool = False,
) -> dict[str, Any]:
    """resolve_apt for a dnf host, from `dnf list --showduplicates --available <packages>`
    (NVIDIA's repository, the module stream enabled). Specs are `name-version`; the
    package_facts versions compared are RPM versions (no epoch, no release)."""
    branch = str(plan["branch"])
    available = parse_dnf_list(dnf_list)
    offered = sorted(
        (
            v
            for v in available.get(plan["version_package"], [])
            if re.fullmatch(re.escape(branch) + r"\.[0-9.]+", v)
        ),
        key=_version_key,
        reverse=True,
    )
    have = _installed_version(installed, plan["version_package"])
    version = _settle(requested, have if have.startswith(branch + ".") else "", upgrade, offered)

    resolved = []
    for package in plan["packages"]:
        name, pin = package["name"], bool(package["pin"])
        versions = available.get(name, [])
        matching = [v for v in versions if v == version] if pin else versions
        current = _installed_version(installed, name)
        current_ok = bool(current) and (not pin or current == version)
        resolved.append(
            {
                "name": name,
                "pin": pin,
                "installed": current,
                "spec": f"{name}-{version}" if pin else name,
                "missing": not current_ok and not matching,
                "offered": versions,
            }
        )
    result = _resolution(
        plan, installed, resolved, version=version, offered=offered, repository=repository
    )
    missing = result["missing"]
    if not version or (requested and requested not in offered):
        result["problem"] = (
            f"driver {requested or 'branch ' + branch} is not in {repository} (releases of "
            f"branch {branch} there: {', '.join(offered) or 'none'}). {_UNCHANGED}"
        )
    elif missing:
        result["problem"] = (
            f"{', '.join(missing)} not available at driver {version} in {repository}. "
            f"{_SAME_VERSION}. {_UNCHANGED}"
        )
    return result
