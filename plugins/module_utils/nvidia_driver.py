# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Decisions the NVIDIA driver role makes from what a host reports, as pure functions.

- which GPU generation a device is (from its compute capability, PCI device id or chip
  codename), and from the generations on a host whether the kernel modules must, may or
  cannot be the open ones (`decide_module_flavour`);
- the `gpu_devices`-shaped list of GPUs from one probe run (`devices_from_probe`), the same
  shape the gpu_tier inventory plugin sets, so the role reads both alike;
- the Secure Boot state from `mokutil --sb-state` or the SecureBoot EFI variable.

Facts used (shared/reference/nvidia.md; NVIDIA's driver installation guide): open modules
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
    "FlavourDecision",
    "FlavourError",
    "SecureBoot",
    "architecture_from_pci_device_id",
    "decide_module_flavour",
    "device_architecture",
    "devices_from_probe",
    "normalize_bus_id",
    "secure_boot_state",
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
