"""localllm.fleet.gpu_facts: the facts it reports from the probe, and the module end to end.

The end-to-end tests run the module through `ansible` on the controller with the lab's
nvidia-smi and lspci stand-ins first in PATH, answering from a hardware profile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lab_hardware import ANSIBLE, lab_env, run_module

from ansible_collections.localllm.fleet.plugins.modules import gpu_facts

PROBES = Path(__file__).resolve().parent / "fixtures" / "nvidia" / "probe"
GPU_FACTS = "localllm.fleet.gpu_facts"


def from_probe(name: str) -> dict:
    return gpu_facts.complete(gpu_facts.facts_from_probe((PROBES / f"lab-{name}.txt").read_text()))


def test_h100x8_reports_eight_hoppers_behind_nvswitch():
    facts = from_probe("h100x8")
    assert facts["gpu_count"] == 8
    assert facts["architectures"] == ["hopper"]
    assert facts["nvswitch"] is True
    assert facts["nvswitch_count"] == 4
    assert facts["driver_version"] == "550.54.15"
    assert facts["nvidia_smi"]["status"] == "ok"


def test_rtx4090_has_no_fabric():
    facts = from_probe("rtx4090")
    assert facts["gpu_count"] == 1
    assert facts["architectures"] == ["ada"]
    assert facts["nvswitch"] is False


def test_nodriver_host_is_known_from_pci_only():
    facts = from_probe("nodriver")
    assert facts["nvidia_smi"]["status"] == "not_installed"
    assert facts["gpu_count"] == 1
    assert facts["gpus"][0]["name"] == "AD102GL [L40S]"
    assert facts["architectures"] == ["ada"]
    assert facts["driver_version"] is None


def test_cpu_host_has_nothing():
    facts = from_probe("cpu")
    assert facts["gpu_count"] == 0
    assert facts["nvswitch"] is False


def test_broken_driver_still_lists_the_gpu():
    facts = from_probe("broken")
    assert facts["nvidia_smi"]["status"] == "driver_not_loaded"
    assert facts["gpu_count"] == 1
    assert facts["architectures"] == ["ampere"]


def test_unreadable_probe_output_raises():
    with pytest.raises(gpu_facts.ProbeError, match="not recognised"):
        gpu_facts.facts_from_probe("Welcome to host!\n")


def test_inventory_devices_are_taken_as_given():
    devices = [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_cap": "9.0", "driver": "570.133.20"}
    ]
    facts = gpu_facts.complete(gpu_facts.facts_from_inventory(devices, True))
    assert facts["source"] == "inventory"
    assert facts["nvswitch"] is True
    assert facts["architectures"] == ["hopper"]
    assert facts["driver_version"] == "570.133.20"


# ---------------------------------------------------------------------------- end to end


@pytest.mark.controller
@pytest.mark.skipif(not ANSIBLE.exists(), reason="needs the project venv (scripts/setup)")
def test_module_decides_open_modules_for_the_nodriver_profile(tmp_path):
    env = lab_env(tmp_path, "nodriver")
    rc, result = run_module(env, GPU_FACTS, "module_flavour=auto branch=570")
    assert rc == 0, result
    assert result["changed"] is False
    assert result["gpu_count"] == 1
    assert result["nvidia_smi"]["status"] == "not_installed"
    assert result["module_flavour"]["flavour"] == "open"
    # The running kernel, read on every run (the role's plan installs its headers; cached
    # facts may predate a reboot into a new kernel).
    assert result["kernel"] == os.uname().release


@pytest.mark.controller
@pytest.mark.skipif(not ANSIBLE.exists(), reason="needs the project venv (scripts/setup)")
def test_module_fails_with_the_reason_when_the_flavour_cannot_work(tmp_path):
    env = lab_env(tmp_path, "h100x8")
    rc, result = run_module(env, GPU_FACTS, "module_flavour=open branch=470")
    assert rc != 0
    assert "branch 470 has no open modules" in result["msg"]


# ---------------------------------------------------------------------------- devices given


def given(devices: list) -> dict:
    from ollama_module_testing import run

    return run("gpu_facts", {"devices": devices, "nvswitch": False, "module_flavour": "auto"})


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ({"index": 0, "memory_mib": 24564}, "devices[0]: needs a name"),
        ({"index": 0, "name": "", "memory_mib": 24564}, "devices[0]: needs a name"),
        ({"index": 0, "name": "RTX 4090", "memory_mib": -1}, "memory_mib -1 is not"),
        ({"index": 0, "name": "RTX 4090", "memory_mib": "lots"}, "memory_mib 'lots' is not"),
        ({"index": 0, "name": "RTX 4090", "memory_mib": True}, "memory_mib True is not"),
        ({"index": 0, "name": "RTX 4090", "memory_mib": 10**25}, "is not"),
        ({"index": -3, "name": "RTX 4090"}, "index -3 is not"),
        ({"index": 0, "name": "RTX 4090", "compute_cap": "nine"}, "compute_cap 'nine' is not"),
        ({"index": 0, "name": "RTX 4090", "architecture": "quantum"}, "architecture 'quantum'"),
        ({"index": 0, "name": "x" * 200}, "name is longer than"),
        ({"index": 0, "name": ["RTX 4090"]}, "needs a name"),
    ],
)
def test_devices_that_cannot_be_a_gpu_are_refused(device, match):
    result = given([device])
    assert result.get("failed") is True, result
    assert match in result["msg"]
    assert "module_flavour" not in result


def test_devices_as_gpu_tier_writes_them_are_accepted():
    devices = [
        {
            "index": 0,
            "name": "NVIDIA GeForce RTX 4090",
            "memory_mib": 24564,
            "memory_status": "reported",
            "uuid": "GPU-5b0a4c7e-2d1f-9a7b-3c4d-8e9f0a1b2c3d",
            "pci_bus_id": "00000000:01:00.0",
            "driver": "550.54.15",
            "compute_cap": "8.9",
            "architecture": "ada",
            "mig_enabled": False,
            "mig_devices": [],
            "pci_device_id": "2684",
        },
        {"index": None, "name": "AD102GL [L40S]", "memory_mib": None, "pci_bus_id": "0000:3b:00.0"},
    ]
    result = given(devices)
    assert result.get("failed") is not True, result
    assert result["gpu_count"] == 2
    assert result["module_flavour"]["flavour"] == "open"
