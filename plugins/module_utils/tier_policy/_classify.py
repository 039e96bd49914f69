# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Host classification: a probe report becomes a HostPlan (status, tier, vars, groups).

classify() reads what the probe found (driver state, GPUs, MIG, unified memory), decides
which devices count, asks the fit decision for a tier and words the reasons and warnings
an operator sees; unreachable_plan() covers hosts that could not be read. Pure standard
library, Python 3.9+.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    MEMORY_ABSENT,
    MEMORY_REPORTED,
    MEMORY_UNIFIED,
    QUERY_COMMAND,
    STATUS_DRIVER_NOT_LOADED,
    STATUS_GARBAGE,
    STATUS_NO_DEVICES,
    STATUS_NOT_INSTALLED,
    STATUS_VERSION_MISMATCH,
    GpuDevice,
    PciDevice,
    ProbeReport,
    clip,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    PINNED_VERSION,
    ReleaseError,
    driver_branch,
    driver_floor,
)

from ._catalog import (
    DEFAULT_POLICY,
    OVERRIDE_VARS,
    Overrides,
    Policy,
    PolicyError,
    bus_key,
    gpu_matches,
)
from ._fit import SERVICE_VARS, Decision, GpuSlot, decide, describe_slots

# ------------------------------------------------------------------------------ host classification

STATUS_GPU = "gpu"  # models on GPU
STATUS_CPU = "cpu"  # models on CPU (no usable GPU)
STATUS_DRIVER_NEEDED = "driver_needed"  # NVIDIA GPUs on PCI, no working driver: no tier yet
STATUS_UNREACHABLE = "unreachable"  # could not probe or read the host: no tier


@dataclass(frozen=True)
class HostPlan:
    """The classification of one host: what the inventory plugin turns into vars and groups."""

    status: str
    reason: str
    decision: Decision | None = None
    devices: tuple[dict[str, Any], ...] = ()
    gpu_count: int | None = None
    gpu_memory_mib_total: int | None = None
    nvswitch: bool | None = None
    cpu_count: int | None = None
    memory_mib: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # A driver is installed but nvidia-smi cannot read the GPUs (not loaded, mismatch, no
    # devices): the host needs the driver fixed AND could not be read, so it is in both groups.
    driver_failing: bool = False

    @property
    def tier(self) -> str | None:
        return self.decision.tier if self.decision else None

    @property
    def unreadable(self) -> bool:
        """Whether the host could not be read (probe failed, or the driver cannot read the
        GPUs): such a host is in gpu_unreachable and its probe is not worth caching."""
        return self.status == STATUS_UNREACHABLE or self.driver_failing

    @property
    def groups(self) -> list[str]:
        groups = {
            STATUS_GPU: ["gpu"],
            STATUS_CPU: ["cpu"],
            STATUS_DRIVER_NEEDED: ["gpu", "gpu_driver_needed"],
            STATUS_UNREACHABLE: ["gpu_unreachable"],
        }[self.status]
        if self.driver_failing:
            groups.append("gpu_unreachable")
        if self.decision:
            groups.append("tier_" + self.decision.tier)
        return groups

    def to_vars(self) -> dict[str, Any]:
        """The host variables (names documented in docs/inventory.md)."""
        decision = self.decision
        return {
            "gpu_devices": [dict(d) for d in self.devices],
            "gpu_count": self.gpu_count,
            "gpu_memory_mib_total": self.gpu_memory_mib_total,
            "gpu_nvswitch": self.nvswitch,
            "gpu_tier": decision.tier if decision else None,
            "gpu_tier_reason": self.reason,
            "gpu_tier_num_ctx": decision.num_ctx if decision else None,
            **(decision.service_vars() if decision else dict.fromkeys(SERVICE_VARS)),
            "gpu_probe_status": self.status,
            # None, not []: a role must not read "no models" (and prune) from an unread host.
            "ollama_models": [m.to_var() for m in decision.models] if decision else None,
            "host_cpu_count": self.cpu_count,
            "host_memory_mib": self.memory_mib,
        }

    def to_json(self) -> dict[str, Any]:
        """The shape scripts/gpu-tier prints."""
        decision = self.decision
        return {
            "gpus": [
                {"name": d.get("name"), "memory_mib": d.get("memory_mib")} for d in self.devices
            ],
            "gpu_count": self.gpu_count,
            "gpu_memory_mib_total": self.gpu_memory_mib_total,
            "gpu_nvswitch": self.nvswitch,
            "status": self.status,
            "tier": decision.tier if decision else None,
            "models": [m.name for m in decision.models] if decision else [],
            "num_ctx": decision.num_ctx if decision else None,
            "left_out": list(decision.left_out) if decision else [],
            "service": decision.service_vars() if decision else None,
            "reason": self.reason,
            "error": None if self.status in (STATUS_GPU, STATUS_CPU) else self.reason,
        }


def unreachable_plan(
    reason: str, policy: Policy = DEFAULT_POLICY, overrides: Overrides | None = None, **facts: Any
) -> HostPlan:
    """A host that could not be read: no tier, unless the operator pinned one (gpu_tier_pin).

    A pinned host stays in gpu_unreachable (nothing was verified) but gets the pinned tier
    and models, so that an operator can serve hosts the probe cannot reach.
    """
    if overrides is not None and overrides.tier:
        decision = decide(policy, (), overrides, None, "not read: " + reason, placement="unknown")
        return HostPlan(STATUS_UNREACHABLE, decision.reason, decision, **facts)
    return HostPlan(STATUS_UNREACHABLE, reason, **facts)


_ACTIONS = {
    STATUS_NOT_INSTALLED: "no NVIDIA driver (nvidia-smi not found): install it "
    "(playbooks/drivers.yml), then refresh the inventory",
    STATUS_DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded (nvidia-smi cannot communicate "
    "with it): check `dmesg | grep -i nvidia`, nouveau, Secure Boot module signing "
    "(`mokutil --sb-state`), or reboot after the install",
    STATUS_VERSION_MISMATCH: "the loaded kernel module and the user-space library differ (driver "
    "updated without a reboot): reboot the host",
    STATUS_NO_DEVICES: "the driver sees none of them: check `dmesg` for Xid / 'fallen off the bus' "
    "errors and that this driver branch supports the GPU",
}


def _pci_summary(devices: Iterable[PciDevice]) -> str:
    counts: dict[str, int] = {}
    for device in devices:
        counts[device.description] = counts.get(device.description, 0) + 1
    return ", ".join(f"{n} x {name}" for name, n in counts.items())


def _cc_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def classify(
    report: ProbeReport,
    policy: Policy = DEFAULT_POLICY,
    overrides: Overrides | None = None,
    ollama_version: str | None = PINNED_VERSION,
) -> HostPlan:
    """Turn what the probe saw into a HostPlan. Never guesses a tier for a host it cannot read.

    `ollama_version` is the release the host will run (its inventory's ollama_version): a GPU
    whose driver is older than that release needs (ollama_release.DRIVER_FLOORS) does not
    count, and a host left with no GPU that way needs its driver upgraded (driver_needed),
    not a tier. None skips that check. Raises FitRefused for a pin the host cannot hold.
    """
    overrides = overrides or Overrides()
    if ollama_version is not None:
        try:
            driver_floor(ollama_version)
        except ReleaseError as error:
            raise PolicyError("ollama_version", str(error)) from None
    smi = report.nvidia_smi
    pci = report.pci
    nvswitch = report.nvswitch if (smi.ok or pci.available) else None
    common = {"cpu_count": report.cpu_count, "memory_mib": report.memory_mib}

    if smi.ok:
        return _classify_gpus(report, policy, overrides, nvswitch, common, ollama_version)

    if smi.status == STATUS_GARBAGE:
        return HostPlan(
            STATUS_UNREACHABLE,
            f"nvidia-smi output is not readable: {smi.message}",
            **common,
        )
    smi_text = "nvidia-smi: {}".format(
        "not installed"
        if smi.status == STATUS_NOT_INSTALLED
        else clip(smi.message or f"exit {smi.rc}", 140)
    )
    if pci.available and pci.gpus:
        action = _ACTIONS.get(
            smi.status,
            f"nvidia-smi failed (exit {smi.rc}): {clip(smi.message, 120)}; fix the driver, "
            "then refresh the inventory",
        )
        devices = tuple(d.as_gpu_device() for d in pci.gpus)
        return HostPlan(
            STATUS_DRIVER_NEEDED,
            "no tier until the driver works: {} NVIDIA GPU(s) on PCI ({}){} but {}".format(
                len(pci.gpus),
                _pci_summary(pci.gpus),
                f" with {len(pci.nvswitches)} NVSwitch" if pci.nvswitches else "",
                action,
            ),
            devices=devices,
            gpu_count=len(pci.gpus),
            gpu_memory_mib_total=None,
            nvswitch=nvswitch,
            driver_failing=smi.status != STATUS_NOT_INSTALLED,
            **common,
        )
    if pci.available:
        detail = f"no NVIDIA GPU on the PCI bus ({pci.source})"
        if smi.status != STATUS_NOT_INSTALLED:
            detail += f", {smi_text}"
        decision = decide(policy, (), overrides, report.memory_mib, detail)
        return HostPlan(
            STATUS_CPU,
            decision.reason,
            decision,
            (),
            0,
            0,
            nvswitch,
            warnings=_fit_warnings(decision),
            **common,
        )
    return unreachable_plan(
        "cannot tell whether this host has GPUs: {}, and the PCI bus could not be listed ({}); "
        "install pciutils, fix the driver, or pin a tier with {}".format(
            smi_text, pci.error, OVERRIDE_VARS["tier"]
        ),
        policy,
        overrides,
        **common,
    )


def _fit_warnings(decision: Decision) -> tuple[str, ...]:
    if decision.fits:
        return ()
    return (
        "{}: {}".format(
            "pinned choice does not fit" if decision.pinned else "does not fit", decision.reason
        ),
    )


#: GpuDevice.memory_status values the tier side reads (the nvidia-smi parser sets them: see
#: gpu_memory_status). A GPU with no MiB figure is sized from the host's RAM only when it is
#: "unified"; every other reason leaves the host unread.


def gpu_memory_status(gpu: GpuDevice) -> str:
    """Why `gpu` has (no) memory figure: its `memory_status` as the nvidia-smi parser records it
    (reported, unified, unsupported, error, absent); "unknown" for a GPU record without that
    field and without a figure."""
    status = getattr(gpu, "memory_status", None)
    if status == MEMORY_REPORTED and gpu.memory_mib is None:
        return "unknown"  # a record that says it has a figure and has none
    if isinstance(status, str) and status:
        return status
    return MEMORY_REPORTED if gpu.memory_mib is not None else "unknown"


def _unsized_reason(gpu: GpuDevice, status: str, count: int) -> str:
    pin = "pin a tier with {} or exclude it with {}".format(
        OVERRIDE_VARS["tier"], OVERRIDE_VARS["exclude_gpus"]
    )
    if status == MEMORY_ABSENT:
        return (
            f"{count} GPU(s) counted, memory unknown: the nvidia-smi query has no memory.total "
            f"column; query it too (the probe's query: {QUERY_COMMAND}), or {pin}"
        )
    return "GPU {} ({}) reports {}: its memory cannot be sized; {}".format(
        gpu.index, gpu.name, "; ".join(gpu.notes) or "no memory.total", pin
    )


def _driver_texts(old: Sequence[tuple[GpuDevice, int, int]], ollama_version: str) -> list[str]:
    """One line per kind of GPU whose driver is too old (8 identical GPUs: one line)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for gpu, branch, floor in old:
        key = (gpu.name, gpu.compute_cap, gpu.driver_version, branch, floor)
        groups.setdefault(key, []).append(gpu.index)
    texts = []
    for (name, compute_cap, version, branch, floor), indexes in groups.items():
        capability = f", compute capability {compute_cap}" if compute_cap else ""
        which = ", ".join(str(i) for i in indexes)
        texts.append(
            f"GPU {which} ({name}{capability}) {'has' if len(indexes) == 1 else 'have'} driver "
            f"{version} (branch {branch}); Ollama {ollama_version} needs {floor} or newer"
        )
    return texts


def _classify_gpus(  # noqa: PLR0917 - the probe, the policy and what classify worked out
    report: ProbeReport,
    policy: Policy,
    overrides: Overrides,
    nvswitch: bool | None,
    common: dict[str, Any],
    ollama_version: str | None = PINNED_VERSION,
) -> HostPlan:
    smi = report.nvidia_smi
    gpus = smi.gpus
    pci_by_bus = {bus_key(d.address): d for d in report.pci.gpus}
    devices = tuple(_smi_gpu_entry(g, pci_by_bus) for g in gpus)
    warnings: list[str] = []
    if report.pci.available and report.pci.source == "lspci" and len(report.pci.gpus) > len(gpus):
        warnings.append(
            f"lspci lists {len(report.pci.gpus)} NVIDIA GPU(s) but nvidia-smi only {len(gpus)}: "
            "check the missing ones (`nvidia-smi -q`, dmesg)"
        )
    memories = [g.memory_mib for g in gpus]
    total = sum(m for m in memories if m is not None) if None not in memories else None
    facts = {
        "devices": devices,
        "gpu_count": len(gpus),
        "gpu_memory_mib_total": total,
        "nvswitch": nvswitch,
    }

    lost = [
        bus
        for bus in smi.lost_gpus
        if not any(bus_key(bus) == bus_key(e) for e in overrides.exclude_gpus)
    ]
    if lost:
        problems = [p for p in smi.problems if any(bus_key(b) in p.lower() for b in lost)] or list(
            smi.problems
        )
        return HostPlan(STATUS_UNREACHABLE, "; ".join(problems), **facts, **common)

    min_cc = _cc_tuple(policy.min_compute_capability)
    # Without compute_cap or bus ids (a pasted legacy query), lspci's chip names still tell
    # the generation when every GPU on the bus is of one.
    bus_architectures = {d.architecture for d in report.pci.gpus}
    bus_architecture = bus_architectures.pop() if len(bus_architectures) == 1 else None
    excluded: list[str] = []
    too_old: list[tuple[GpuDevice, int, int]] = []
    slots: list[GpuSlot] = []
    mig_slots: list[GpuSlot] = []
    unified: list[GpuDevice] = []
    unknown_memory: list[int] = []
    for gpu in gpus:
        if any(gpu_matches(gpu, selector) for selector in overrides.exclude_gpus):
            excluded.append(
                "GPU {} excluded by {}".format(gpu.index, OVERRIDE_VARS["exclude_gpus"])
            )
            continue
        if gpu.compute_cap and _cc_tuple(gpu.compute_cap) < min_cc:
            excluded.append(
                f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_cap} < "
                f"{policy.min_compute_capability} (Ollama cannot use it)"
            )
            continue
        architecture = devices[gpus.index(gpu)]["architecture"] or bus_architecture
        floor = (
            driver_floor(ollama_version, gpu.compute_cap, architecture) if ollama_version else None
        )
        branch = driver_branch(gpu.driver_version)
        if floor is not None and branch is not None and branch < floor:
            # Ollama filters such a GPU (discover/cuda_compat.go) and serves on the CPU.
            too_old.append((gpu, branch, floor))
            continue
        if gpu.memory_mib is None:
            status = gpu_memory_status(gpu)
            if status == MEMORY_UNIFIED:
                unified.append(gpu)
                continue
            if overrides.tier:
                unknown_memory.append(gpu.index)
                excluded.append(f"GPU {gpu.index} memory unknown")
                continue
            return HostPlan(
                STATUS_UNREACHABLE, _unsized_reason(gpu, status, len(gpus)), **facts, **common
            )
        if gpu.mig_enabled:
            sizes = [m.memory_mib for m in gpu.mig_devices if m.memory_mib]
            if sizes:
                mig_slots.append(GpuSlot(f"{gpu.name} MIG {max(sizes)} MiB", max(sizes)))
            excluded.append(
                f"GPU {gpu.index} in MIG mode ({len(gpu.mig_devices)} instance(s); "
                "one CUDA process uses one)"
            )
            continue
        slots.append(GpuSlot(gpu.name, gpu.memory_mib))
    if mig_slots:
        # A process (Ollama) enumerates a single MIG instance: count the largest one, once.
        slots.append(max(mig_slots, key=lambda s: s.memory_mib))
    if unified and report.memory_mib is None and overrides.tier:
        # The operator's pin decides; the shared memory cannot be sized without MemTotal.
        for gpu in unified:
            unknown_memory.append(gpu.index)
            excluded.append(f"GPU {gpu.index} memory unknown (unified, MemTotal unread)")
        unified = []
    if unified:
        gpu = unified[0]
        if report.memory_mib is None:
            return HostPlan(
                STATUS_UNREACHABLE,
                f"GPU {gpu.index} ({gpu.name}) shares the host's memory (memory.total [N/A]) "
                "but MemTotal could not be read to size it; pin a tier with "
                f"{OVERRIDE_VARS['tier']}",
                **facts,
                **common,
            )
        # The GPUs share one pool of RAM: it counts once, whatever the number of GPUs.
        shared = max(report.memory_mib - policy.unified_memory_reserve_mib, 0)
        slots.append(GpuSlot(gpu.name, shared))
        excluded.append(
            "GPU {} sized from unified memory: {} MiB RAM - {} MiB unified_memory_reserve_mib "
            "= {} MiB".format(
                ", ".join(str(g.index) for g in unified),
                report.memory_mib,
                policy.unified_memory_reserve_mib,
                shared,
            )
        )
    driver_texts = _driver_texts(too_old, str(ollama_version))
    if too_old and not slots and not unknown_memory:
        return HostPlan(
            STATUS_DRIVER_NEEDED,
            "no tier until the driver is upgraded: {}; Ollama would leave the GPU(s) out and "
            "run on the CPU. Install a newer branch (playbooks/drivers.yml with "
            "nvidia_driver_branch at or above it), then refresh the inventory".format(
                "; ".join(driver_texts)
            ),
            **facts,
            **common,
        )
    for text in driver_texts:
        excluded.append(f"{text}: left out")
        warnings.append(f"{text}: Ollama leaves it out; upgrade the driver")

    summary = describe_slots([GpuSlot(g.name, g.memory_mib or 0) for g in gpus])
    summary += " ({} MiB{})".format(
        total if total is not None else "?", ", NVSwitch" if nvswitch else ""
    )
    if excluded:
        summary += " [{}]".format("; ".join(excluded))
    placement = "unknown" if unknown_memory and not slots else None
    decision = decide(policy, slots, overrides, report.memory_mib, summary, placement)
    status = STATUS_CPU if decision.placement == "cpu" else STATUS_GPU
    warnings.extend(_fit_warnings(decision))
    return HostPlan(status, decision.reason, decision, warnings=tuple(warnings), **facts, **common)


def _smi_gpu_entry(gpu: GpuDevice, pci_by_bus: Mapping[str, PciDevice]) -> dict[str, Any]:
    entry = gpu.to_dict()
    device = pci_by_bus.get(bus_key(gpu.pci_bus_id)) if gpu.pci_bus_id else None
    entry["pci_device_id"] = device.device_id if device else None
    if entry["architecture"] is None and device is not None:
        entry["architecture"] = device.architecture  # old drivers lack compute_cap
    return entry
