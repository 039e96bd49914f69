"""The NVIDIA driver role's decisions: GPU generation, module flavour, Secure Boot, versions.

Expected values follow NVIDIA's driver installation guide (docs/reference/nvidia.md):
open modules for Turing and newer (required on Grace Hopper and Blackwell), proprietary for
Maxwell, Pascal and Volta and for hosts that mix them with newer GPUs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_driver import (
    FlavourError,
    architecture_from_pci_device_id,
    decide_module_flavour,
    device_architecture,
    devices_from_probe,
    normalize_bus_id,
    secure_boot_state,
    upstream_version,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    parse_probe_output,
)

PROBES = Path(__file__).resolve().parent / "fixtures" / "nvidia" / "probe"


def gpu(name: str, **fields) -> dict:
    entry = {"index": fields.pop("index", 0), "name": name}
    entry.update(fields)
    return entry


# ---------------------------------------------------------------------------- generations


@pytest.mark.parametrize(
    ("device_id", "architecture"),
    [
        ("2330", "hopper"),  # H100 SXM5 80GB
        ("0x2335", "hopper"),  # H200
        ("2342", "hopper"),  # GH200 (a GH100 GPU)
        ("20b2", "ampere"),  # A100 SXM4 80GB
        ("2237", "ampere"),  # A10G
        ("2204", "ampere"),  # RTX 3090
        ("2684", "ada"),  # RTX 4090
        ("26b9", "ada"),  # L40S
        ("1eb8", "turing"),  # Tesla T4
        ("2182", "turing"),  # GTX 1660 Ti (TU116)
        ("1db1", "volta"),  # V100 SXM2 16GB
        ("1df6", "volta"),  # V100S
        ("1d81", "volta"),  # TITAN V
        ("15f8", "pascal"),  # P100 PCIe 16GB (GP100)
        ("1b38", "pascal"),  # Tesla P40
        ("13f2", "maxwell"),  # Tesla M60
        ("102d", "kepler"),  # Tesla K80
        ("2901", "blackwell"),  # B200
        ("2b85", "blackwell"),  # RTX 5090
        ("10de:2330", "hopper"),
        ("3180", "blackwell"),  # an id newer than the table: Blackwell or later
    ],
)
def test_pci_device_ids_name_their_generation(device_id, architecture):
    assert architecture_from_pci_device_id(device_id) == architecture


@pytest.mark.parametrize("device_id", [None, "", "zz", "12345", "0001"])
def test_unreadable_or_unknown_pci_ids_have_no_generation(device_id):
    assert architecture_from_pci_device_id(device_id) is None


def test_generation_comes_from_the_best_source_available():
    assert device_architecture({"architecture": "hopper", "compute_cap": "7.0"}) == (
        "hopper",
        "architecture",
    )
    assert device_architecture({"compute_cap": "7.0", "pci_device_id": "2330"}) == (
        "volta",
        "compute capability 7.0",
    )
    assert device_architecture({"pci_device_id": "1eb8"})[0] == "turing"
    assert device_architecture({"name": "GH100 [H100 SXM5 80GB]"})[0] == "hopper"
    assert device_architecture({"name": "Device 9999"}) == (None, "unknown")


# ---------------------------------------------------------------------------- flavour


def test_hopper_ada_ampere_turing_get_open_modules_by_default():
    devices = [
        gpu("NVIDIA H100 80GB HBM3", compute_cap="9.0"),
        gpu("NVIDIA GeForce RTX 4090", index=1, compute_cap="8.9"),
        gpu("Tesla T4", index=2, compute_cap="7.5"),
    ]
    decision = decide_module_flavour("auto", devices, "570")
    assert decision.flavour == "open"
    assert decision.architectures == ("turing", "ada", "hopper")
    assert "recommends" in decision.reason


def test_volta_needs_proprietary_modules():
    decision = decide_module_flavour("auto", [gpu("Tesla V100-SXM2-16GB", compute_cap="7.0")])
    assert decision.flavour == "proprietary"
    assert "volta" in decision.reason


def test_a_host_mixing_volta_with_newer_gpus_stays_proprietary():
    devices = [
        gpu("Tesla V100-SXM2-16GB", compute_cap="7.0"),
        gpu("NVIDIA A100-SXM4-80GB", index=1, compute_cap="8.0"),
    ]
    decision = decide_module_flavour("auto", devices, "550")
    assert decision.flavour == "proprietary"
    assert "mixed" in decision.reason


def test_blackwell_and_grace_hopper_require_open_modules():
    assert decide_module_flavour("auto", [gpu("NVIDIA B200", compute_cap="10.0")]).flavour == (
        "open"
    )
    grace = gpu("NVIDIA GH200 480GB", compute_cap="9.0")
    decision = decide_module_flavour("auto", [grace])
    assert decision.flavour == "open"
    assert "Grace" in decision.reason
    by_pci_id = {"index": None, "name": "Device 2342", "pci_device_id": "2342"}
    assert "Grace" in decide_module_flavour("auto", [by_pci_id]).reason


def test_proprietary_requested_for_blackwell_is_refused_with_the_reason():
    with pytest.raises(FlavourError, match=r"proprietary but GPU 0 \(NVIDIA B200\): blackwell"):
        decide_module_flavour("proprietary", [gpu("NVIDIA B200", compute_cap="10.0")])


def test_open_requested_for_pascal_is_refused():
    with pytest.raises(FlavourError, match=r"open modules do not support GPU 0 \(Tesla P40\)"):
        decide_module_flavour("open", [gpu("Tesla P40", compute_cap="6.1")])


def test_a_host_needing_both_flavours_cannot_be_served():
    devices = [gpu("NVIDIA B200", compute_cap="10.0"), gpu("Tesla P40", index=1, compute_cap="6.1")]
    with pytest.raises(FlavourError, match="no kernel-module flavour drives all GPUs"):
        decide_module_flavour("auto", devices)


def test_auto_refuses_to_guess_an_unknown_generation():
    device = {"index": None, "name": "Device 0001", "pci_bus_id": "41:00.0"}
    with pytest.raises(FlavourError, match=r"cannot tell the generation of Device 0001 at 41:00.0"):
        decide_module_flavour("auto", [device])
    # An explicit choice is honoured and the unknown GPU is mentioned.
    assert "unknown generation" in decide_module_flavour("open", [device]).reason


def test_branches_before_515_have_no_open_modules():
    turing = [gpu("Tesla T4", compute_cap="7.5")]
    assert decide_module_flavour("auto", turing, "470").flavour == "proprietary"
    with pytest.raises(FlavourError, match="branch 470 has no open modules"):
        decide_module_flavour("open", turing, "470")
    with pytest.raises(FlavourError, match="pick a newer nvidia_driver_branch"):
        decide_module_flavour("auto", [gpu("NVIDIA B200", compute_cap="10.0")], "470")


def test_requested_flavour_is_validated():
    with pytest.raises(FlavourError, match="'closed' is not one of auto, open, proprietary"):
        decide_module_flavour("closed", [gpu("Tesla T4", compute_cap="7.5")])


def test_no_gpus_no_flavour():
    decision = decide_module_flavour("auto", [])
    assert decision.flavour is None
    assert decision.to_dict()["flavour"] is None


def test_gpu_tier_entries_for_a_driverless_host_are_enough_to_decide():
    # What gpu_tier sets for a host in gpu_driver_needed: lspci's view only.
    entry = {
        "index": None,
        "name": "AD102GL [L40S]",
        "memory_mib": None,
        "compute_cap": None,
        "architecture": "ada",
        "pci_bus_id": "ca:00.0",
        "pci_device_id": "26b9",
    }
    assert decide_module_flavour("auto", [entry], "570").flavour == "open"


# ---------------------------------------------------------------------------- probe -> devices


def probe(name: str):
    return parse_probe_output((PROBES / f"lab-{name}.txt").read_text())


def test_devices_from_a_working_driver_carry_pci_ids_and_generations():
    devices = devices_from_probe(probe("h100x8"))
    assert len(devices) == 8
    assert {d["architecture"] for d in devices} == {"hopper"}
    assert {d["pci_device_id"] for d in devices} == {"2330"}
    assert devices[0]["driver"] == "550.54.15"


def test_devices_of_a_driverless_host_come_from_lspci():
    devices = devices_from_probe(probe("nodriver"))
    assert devices == [
        {
            "index": None,
            "name": "AD102GL [L40S]",
            "memory_mib": None,
            "uuid": None,
            "pci_bus_id": "ca:00.0",
            "driver": None,
            "compute_cap": None,
            "architecture": "ada",
            "mig_enabled": False,
            "mig_devices": [],
            "pci_device_id": "26b9",
        }
    ]


def test_a_cpu_host_has_no_devices():
    assert devices_from_probe(probe("cpu")) == []


def test_old_pci_ids_database_still_yields_a_generation():
    text = (
        "@@localllm-probe 1\n@@begin nvidia-smi-query\n@@rc 127\n@@begin lspci\n"
        "17:00.0 3D controller [0302]: NVIDIA Corporation Device 2330 [10de:2330] (rev a1)\n"
        "@@rc 0\n@@end\n"
    )
    devices = devices_from_probe(parse_probe_output(text))
    assert devices[0]["architecture"] == "hopper"


@pytest.mark.parametrize(
    ("address", "expected"),
    [("00000000:18:00.0", "18:00.0"), ("0000:DB:00.0", "db:00.0"), ("ca:00.0", "ca:00.0")],
)
def test_bus_ids_compare_across_tools(address, expected):
    assert normalize_bus_id(address) == expected


# ---------------------------------------------------------------------------- secure boot


def test_mokutil_enabled_means_signatures_are_enforced():
    state = secure_boot_state(0, "SecureBoot enabled\n", True, None)
    assert state.state == "enabled"
    assert state.enforcing


def test_shim_validation_off_means_unsigned_modules_load():
    state = secure_boot_state(
        0, "SecureBoot enabled\nSecureBoot validation is disabled in shim\n", True, None
    )
    assert state.state == "disabled"
    assert not state.enforcing


@pytest.mark.parametrize(
    ("rc", "output", "state"),
    [
        (0, "SecureBoot disabled\n", "disabled"),
        (255, "This system doesn't support Secure Boot\n", "unsupported"),
        (255, "EFI variables are not supported on this system\n", "unsupported"),
    ],
)
def test_other_mokutil_answers(rc, output, state):
    assert secure_boot_state(rc, output, True, None).state == state


def test_efi_variable_is_read_without_mokutil():
    attributes = b"\x06\x00\x00\x00"
    assert secure_boot_state(None, "", True, attributes + b"\x01").state == "enabled"
    assert secure_boot_state(None, "", True, attributes + b"\x00").state == "disabled"
    assert secure_boot_state(None, "", True, attributes).state == "unknown"


def test_legacy_bios_has_no_secure_boot():
    assert secure_boot_state(None, "", False, None).state == "unsupported"


def test_uefi_without_any_readable_source_is_unknown_not_disabled():
    assert secure_boot_state(None, "", True, None).state == "unknown"


# ---------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("package_version", "driver"),
    [
        ("550.54.15-1", "550.54.15"),
        ("570.172.08-0ubuntu0.22.04.1", "570.172.08"),
        ("535.247.01-1~deb12u1", "535.247.01"),
        ("3:550.54.15-1.el9", "550.54.15"),
        ("595.80", "595.80"),
    ],
)
def test_driver_version_inside_package_versions(package_version, driver):
    assert upstream_version(package_version) == driver
