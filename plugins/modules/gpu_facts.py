#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.gpu_facts: what NVIDIA hardware and driver a host has."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Report a host's NVIDIA GPUs, NVSwitch fabric, driver and Secure Boot state
version_added: "0.1.0"
description:
  - Runs the same one-round-trip probe the C(localllm.fleet.gpu_tier) inventory plugin runs
    over SSH (C(nvidia-smi) query, C(nvidia-smi topo -m) on 8+ GPU hosts, C(lspci -nn -d 10de:)
    or sysfs) and reports the GPUs in the shape of gpu_tier's C(gpu_devices) host variable.
  - Tells whether an NVSwitch fabric is present (NVSwitch bridges on the PCI bus as on HGX
    H100, or NVLink between every GPU pair of an 8+ GPU board as on HGX B200), which decides
    whether Fabric Manager is needed.
  - With O(module_flavour), decides the kernel-module flavour (open or proprietary) from the
    GPUs' generations and fails with the reason when the requested flavour cannot drive them.
  - With O(devices), trusts the GPU list it is given (gpu_tier's C(gpu_devices)) instead of
    probing, so that a play run with the gpu_tier inventory decides from the same facts.
  - Read-only; never changes the host.
author:
  - localllm.fleet contributors
options:
  devices:
    description:
      - GPUs as gpu_tier's C(gpu_devices) host variable. When given, the hardware is not
        probed and O(nvswitch) says whether the host has an NVSwitch fabric.
      - Each element needs a C(name); C(index) and C(memory_mib) are whole numbers (or null),
        C(compute_cap) looks like C(8.9), C(architecture) is a known generation. An element
        that cannot describe a GPU fails the task before anything is decided from it.
    type: list
    elements: dict
  nvswitch:
    description:
      - With O(devices), whether the host has an NVSwitch fabric (gpu_tier's C(gpu_nvswitch)).
        Ignored when the module probes.
    type: bool
  module_flavour:
    description:
      - Decide the kernel-module flavour for these GPUs. V(auto) picks V(open) for Turing and
        newer and V(proprietary) for Maxwell, Pascal and Volta (or hosts mixing them with newer
        GPUs); V(open) and V(proprietary) are checked against the GPUs.
      - Omitted, no decision is made.
    type: str
    choices: [auto, open, proprietary]
  branch:
    description:
      - The driver branch the flavour is for (open modules exist from branch 515).
    type: str
  secure_boot:
    description:
      - Also report whether the firmware enforces module signatures (Secure Boot), from
        C(mokutil --sb-state) or the SecureBoot EFI variable.
    type: bool
    default: false
notes:
  - Supports check mode; the module only reads.
  - C(nvidia-smi) and C(lspci) are looked up in C(PATH), C(/usr/sbin) and C(/usr/local/bin).
seealso:
  - plugin: localllm.fleet.gpu_tier
    plugin_type: inventory
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: What NVIDIA hardware does this host have?
  localllm.fleet.gpu_facts:
  register: gpu

- name: Decide the kernel modules from the gpu_tier inventory's facts
  localllm.fleet.gpu_facts:
    devices: "{{ gpu_devices }}"
    nvswitch: "{{ gpu_nvswitch }}"
    module_flavour: auto
    branch: "570"
  when: gpu_devices is defined

- name: Probe locally, decide, and read Secure Boot
  localllm.fleet.gpu_facts:
    module_flavour: "{{ nvidia_driver_module_flavour }}"
    branch: "{{ nvidia_driver_branch }}"
    secure_boot: true
  register: gpu

- name: Fabric Manager only where there is an NVSwitch fabric
  ansible.builtin.debug:
    msg: "{{ 'Fabric Manager needed' if gpu.nvswitch else 'no NVSwitch' }}"
"""

RETURN = r"""
source:
  description: Where the GPU list came from, V(probe) or V(inventory).
  returned: always
  type: str
  sample: probe
gpus:
  description:
    - The GPUs, as gpu_tier's C(gpu_devices). Without a working driver they come from the
      PCI bus (no index, memory or driver yet).
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      name: NVIDIA H100 80GB HBM3
      memory_mib: 81559
      uuid: GPU-3c8a4e51-8f0e-5a3a-9d7b-1f2e3d4c5b6a
      pci_bus_id: 00000000:18:00.0
      driver: 550.54.15
      compute_cap: "9.0"
      architecture: hopper
      mig_enabled: false
      mig_devices: []
      pci_device_id: "2330"
gpu_count:
  description: The number of NVIDIA GPUs.
  returned: always
  type: int
  sample: 8
architectures:
  description: The GPU generations present, oldest first (unknown ones left out).
  returned: always
  type: list
  elements: str
  sample: [hopper]
nvswitch:
  description:
    - Whether an NVSwitch fabric is present; V(null) when it could not be told (PCI bus not
      readable, or O(devices) given without O(nvswitch)).
  returned: always
  type: bool
  sample: true
nvswitch_count:
  description:
    - NVSwitch chips listed on the PCI bus (0 on HGX B200, whose switches are not PCI devices).
  returned: always
  type: int
  sample: 4
nvidia_smi:
  description:
    - What C(nvidia-smi) said. C(status) is one of V(ok), V(not_installed), V(driver_not_loaded),
      V(no_devices), V(version_mismatch), V(failed), V(garbage), or V(not_probed) with O(devices).
  returned: always
  type: dict
  sample: {status: ok, rc: 0, message: "", driver_versions: ["550.54.15"]}
driver_version:
  description: The driver version every GPU reports, or V(null) when there is none or they differ.
  returned: always
  type: str
  sample: 550.54.15
pci:
  description: Whether the PCI bus could be listed, and how.
  returned: always
  type: dict
  sample: {available: true, source: lspci, error: ""}
module_flavour:
  description: The kernel-module decision, when O(module_flavour) was given.
  returned: when module_flavour is given
  type: dict
  sample:
    flavour: open
    reason: "open modules: hopper support them and NVIDIA recommends them (default from R560)"
    architectures: [hopper]
notes:
  description:
    - Remarks about the probe's output (for example lines a login script printed before it).
  returned: always
  type: list
  elements: str
  sample: []
kernel:
  description:
    - The release of the kernel running now (C(uname -r)), read on every run. The driver's
      plan installs this kernel's headers, and a host may have rebooted into a new kernel
      since its facts were cached.
  returned: always
  type: str
  sample: 6.1.0-28-amd64
secure_boot:
  description:
    - Secure Boot, when O(secure_boot) is true. C(state) is V(enabled), V(disabled),
      V(unsupported) (legacy BIOS or no Secure Boot) or V(unknown).
  returned: when secure_boot is true
  type: dict
  sample: {state: enabled, enforcing: true, detail: "mokutil: SecureBoot enabled"}
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.local_tier import (
    EXTRA_PATHS,
    probe_path,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_driver import (
    ARCHITECTURES,
    FlavourError,
    decide_module_flavour,
    device_architecture,
    devices_from_probe,
    secure_boot_state,
    validate_devices,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    PROBE_SCRIPT,
    ProbeError,
    parse_probe_output,
)

EFI_DIR = "/sys/firmware/efi"
SECURE_BOOT_VARIABLE = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0f6bf0b0d33"
ARGUMENT_SPEC = {
    "devices": {"type": "list", "elements": "dict"},
    "nvswitch": {"type": "bool"},
    "module_flavour": {"type": "str", "choices": ["auto", "open", "proprietary"]},
    "branch": {"type": "str"},
    "secure_boot": {"type": "bool", "default": False},
}


def facts_from_probe(output: str) -> dict:
    """The module's result from the probe's output (ProbeError when it is unreadable)."""
    report = parse_probe_output(output)
    devices = devices_from_probe(report)
    smi = report.nvidia_smi
    versions = sorted({g.driver_version for g in smi.gpus if g.driver_version})
    return {
        "source": "probe",
        "gpus": devices,
        "nvswitch": report.nvswitch if (smi.ok or report.pci.available) else None,
        "nvswitch_count": len(report.pci.nvswitches),
        "nvidia_smi": {
            "status": smi.status,
            "rc": smi.rc,
            "message": smi.message,
            "driver_versions": versions,
        },
        "driver_version": versions[0] if len(versions) == 1 else None,
        "pci": {
            "available": report.pci.available,
            "source": report.pci.source,
            "error": report.pci.error,
        },
        "notes": list(report.notes),
    }


def facts_from_inventory(devices: list[dict], nvswitch: bool | None) -> dict:
    versions = sorted({str(d["driver"]) for d in devices if d.get("driver")})
    return {
        "source": "inventory",
        "gpus": [dict(d) for d in devices],
        "nvswitch": nvswitch,
        "nvswitch_count": 0,
        "nvidia_smi": {"status": "not_probed", "rc": None, "message": "", "driver_versions": []},
        "driver_version": versions[0] if len(versions) == 1 else None,
        "pci": {"available": False, "source": None, "error": "not probed (devices given)"},
        "notes": [],
    }


def complete(result: dict) -> dict:
    """Add the derived fields every result carries."""
    architectures = []
    for device in result["gpus"]:
        architecture, _ = device_architecture(device)
        if architecture and architecture not in architectures:
            architectures.append(architecture)
    result["architectures"] = sorted(architectures, key=ARCHITECTURES.index)
    result["gpu_count"] = len(result["gpus"])
    return result


def read_secure_boot(module: AnsibleModule) -> dict:
    mokutil = module.get_bin_path("mokutil", opt_dirs=list(EXTRA_PATHS))
    rc, output = None, ""
    if mokutil:
        rc, out, err = module.run_command([mokutil, "--sb-state"], environ_update={"LC_ALL": "C"})
        output = out or err
    efivar = None
    matches = glob.glob(SECURE_BOOT_VARIABLE)
    if matches:
        try:
            with open(matches[0], "rb") as handle:
                efivar = handle.read(16)
        except OSError:
            efivar = None
    return secure_boot_state(rc, output, os.path.isdir(EFI_DIR), efivar).to_dict()


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["devices"] is not None:
        try:
            devices = validate_devices(params["devices"])
        except FlavourError as error:
            module.fail_json(msg=f"cannot use the GPUs given: {error}")
        result = facts_from_inventory(devices, params["nvswitch"])
    else:
        rc, out, err = module.run_command(
            ["/bin/sh", "-c", PROBE_SCRIPT],
            environ_update={"PATH": probe_path(os.environ.get("PATH"))},
        )
        try:
            result = facts_from_probe(out)
        except ProbeError as error:
            module.fail_json(
                msg=f"cannot read this host's NVIDIA hardware: {error}",
                rc=rc,
                stderr=err[-2000:],
            )
    result = complete(result)
    result["kernel"] = os.uname().release

    if params["module_flavour"]:
        try:
            decision = decide_module_flavour(
                params["module_flavour"], result["gpus"], params["branch"]
            )
        except FlavourError as error:
            module.fail_json(msg=str(error), **result)
        result["module_flavour"] = decision.to_dict()
    if params["secure_boot"]:
        result["secure_boot"] = read_secure_boot(module)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
