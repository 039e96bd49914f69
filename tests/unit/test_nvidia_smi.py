"""Parsing what the GPU probe prints: nvidia-smi query shapes, failures, lspci, the probe."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import nvidia_smi as ns

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ------------------------------------------------------------------------------ query output


def test_reference_query_without_header_or_units_reads_eight_h100():
    result = ns.parse_query(fixture("query-h100x8-legacy-noheader-nounits.txt"))
    assert result.ok
    assert [g.index for g in result.gpus] == list(range(8))
    assert {g.name for g in result.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g.memory_mib for g in result.gpus} == {81559}
    assert {g.driver_version for g in result.gpus} == {"550.54.15"}


def test_header_with_units_strips_mib_and_reads_every_probe_field():
    (gpu,) = ns.parse_query(fixture("query-rtx4090-header-units.txt")).gpus
    assert gpu.memory_mib == 24564
    assert gpu.uuid == "GPU-5b0a4c7e-2d1f-9a7b-3c4d-8e9f0a1b2c3d"
    assert gpu.pci_bus_id == "00000000:01:00.0"
    assert gpu.compute_cap == "8.9"
    assert gpu.architecture == "ada"
    assert gpu.mig_enabled is False


def test_header_columns_in_any_order():
    (gpu,) = ns.parse_query(fixture("query-a10g-header-reordered.txt")).gpus
    assert (gpu.index, gpu.name, gpu.memory_mib) == (0, "NVIDIA A10G", 23028)
    assert gpu.driver_version == "535.183.01"
    assert gpu.uuid is None


def test_probe_order_without_header_mixed_cards_and_two_part_driver():
    result = ns.parse_query(fixture("query-mixed-3090-t4-noheader.txt"))
    assert [(g.name, g.memory_mib) for g in result.gpus] == [
        ("NVIDIA GeForce RTX 3090", 24576),
        ("Tesla T4", 15360),
    ]
    assert {g.driver_version for g in result.gpus} == {"595.80"}
    assert [g.architecture for g in result.gpus] == ["ampere", "turing"]


def test_explicit_field_order_overrides_the_width_guess():
    fields = ("name", "index", "memory.total", "driver_version")
    (gpu,) = ns.parse_query("Tesla T4, 0, 15360, 535.183.01\n", fields=fields).gpus
    assert (gpu.index, gpu.name) == (0, "Tesla T4")


@pytest.mark.parametrize(
    "cell", ["[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "[Insufficient Permissions]"]
)
def test_unknown_memory_spellings_become_none_with_a_note(cell):
    text = f"index, name, memory.total [MiB], driver_version\n0, NVIDIA GB10, {cell}, 580.95.05\n"
    (gpu,) = ns.parse_query(text).gpus
    assert gpu.memory_mib is None
    assert "memory.total" in gpu.notes[0]


def test_old_driver_bare_na_and_not_supported_values():
    first, second = ns.parse_query(fixture("query-old-driver-bare-na.txt")).gpus
    assert first.memory_mib == 11441
    assert second.memory_mib is None
    assert second.driver_version is None


def test_gb10_reports_memory_na():
    (gpu,) = ns.parse_query(fixture("query-gb10-memory-na.txt")).gpus
    assert gpu.memory_mib is None
    assert gpu.architecture == "blackwell"


def test_mig_mode_is_read_from_the_query():
    result = ns.parse_query(fixture("query-a100-mig.txt"))
    assert [g.mig_enabled for g in result.gpus] == [True, True]
    assert [g.memory_mib for g in result.gpus] == [81920, 81920]


@pytest.mark.parametrize(
    ("name", "rc", "status"),
    [
        ("fail-driver-not-loaded.txt", 9, ns.STATUS_DRIVER_NOT_LOADED),
        ("fail-no-devices.txt", 6, ns.STATUS_NO_DEVICES),
        ("fail-version-mismatch.txt", 18, ns.STATUS_VERSION_MISMATCH),
        ("fail-command-not-found.txt", 127, ns.STATUS_NOT_INSTALLED),
    ],
)
def test_every_failure_shape_is_classified(name, rc, status):
    result = ns.parse_query(fixture(name), rc)
    assert result.status == status
    assert not result.ok
    assert result.gpus == ()


def test_an_unknown_failure_keeps_exit_code_and_text():
    result = ns.parse_query("Segmentation fault\n", 139)
    assert result.status == ns.STATUS_FAILED
    assert "Segmentation fault" in result.message


def test_a_gpu_that_fell_off_the_bus_is_reported_not_dropped_silently():
    result = ns.parse_query(fixture("fail-lost-gpu.txt"))
    assert result.ok
    assert [g.name for g in result.gpus] == ["NVIDIA L40S"]
    assert result.lost_gpus == ("0000:3b:00.0",)
    assert "gpu_tier_exclude_gpus" in result.problems[0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0, NVIDIA H100, 81559, 550.54.15\n1, NVIDIA H100, 815", "3 fields where 4"),  # partial
        ("index, name, memory.total [MiB]\n0, NVIDIA A10G\n", "2 fields where 3"),
        ("x, NVIDIA A10G, 23028, 550.54.15\n", "index 'x' is not a number"),
        ("0, NVIDIA A10G, lots, 550.54.15\n", "is not a MiB figure"),
        ("0, A, 1, 550.54.15\n0, B, 1, 550.54.15\n", "indexes repeat"),
        ("hello world\n", "cannot tell the columns"),
        ("", "listed no GPU"),
        ("index, uuid\n0, GPU-12345678\n", "lacks name and memory.total"),
    ],
)
def test_garbage_is_refused_with_the_reason(text, match):
    result = ns.parse_query(text)
    assert result.status == ns.STATUS_GARBAGE
    assert match in result.message


def test_garbage_in_optional_cells_is_dropped_not_trusted():
    text = "index, name, uuid, pci.bus_id, memory.total [MiB], driver_version, compute_cap\n"
    text += "0, NVIDIA A10G, {{ 7*7 }}, nowhere, 23028, 5.5.5.5.5, [N/A]\n"
    (gpu,) = ns.parse_query(text).gpus
    assert (gpu.uuid, gpu.pci_bus_id, gpu.driver_version, gpu.compute_cap) == (None,) * 4
    assert len(gpu.notes) == 3


# ------------------------------------------------------------------------------ fail closed


FULLWIDTH_8_9 = "\uff18.\uff19"


@pytest.mark.parametrize("cell", ["nine", "8.9.1", "89", "8,9", FULLWIDTH_8_9, "-1.0", "8.9 x"])
def test_an_unparsable_compute_capability_refuses_the_line_instead_of_passing_as_capable(cell):
    text = "index, name, memory.total [MiB], compute_cap\n"
    text += f"0, NVIDIA A10G, 23028, {cell}\n"
    result = ns.parse_query(text)
    assert result.status == ns.STATUS_GARBAGE
    assert "compute_cap" in result.message
    assert "not a compute capability" in result.message


@pytest.mark.parametrize("cell", ["[N/A]", "N/A", "[Not Supported]", ""])
def test_a_compute_capability_the_driver_does_not_report_stays_unknown(cell):
    text = f"index, name, memory.total [MiB], compute_cap\n0, Tesla K80, 11441, {cell}\n"
    (gpu,) = ns.parse_query(text).gpus
    assert gpu.compute_cap is None


@pytest.mark.parametrize(
    "memory", ["10000000000000000000000000", "4194305", "99999999999999999999999999999 MiB"]
)
def test_an_absurd_memory_size_is_refused(memory):
    result = ns.parse_query(f"index, name, memory.total [MiB]\n0, NVIDIA H100, {memory}\n")
    assert result.status == ns.STATUS_GARBAGE
    assert "memory.total" in result.message
    assert "more than any GPU has" in result.message or "not a MiB figure" in result.message


def test_the_largest_plausible_memory_is_still_read():
    (gpu,) = ns.parse_query("index, name, memory.total [MiB]\n0, Future GPU, 4194304\n").gpus
    assert gpu.memory_mib == 4194304


@pytest.mark.parametrize(
    "text",
    [
        "index, name, memory.total [MiB]\n0, NVIDIA H100, \uff18\uff11\uff15\uff15\uff19\n",
        "index, name, memory.total [MiB]\n0, NVIDIA H100, +81559\n",
        "index, name, memory.total [MiB]\n\u0660, NVIDIA H100, 81559\n",  # Arabic-Indic zero
        "index, name, memory.total [MiB]\n\u00b2, NVIDIA H100, 81559\n",  # int() refuses "²"
        "index, name, memory.total [MiB]\n0, NVIDIA H100, \u00b2\n",
    ],
)
def test_only_ascii_digits_are_numbers(text):
    result = ns.parse_query(text)
    assert result.status == ns.STATUS_GARBAGE


def test_numbers_too_long_for_int_are_refused_not_raised():
    digits = "9" * 5000  # past Python's int() digit limit
    assert ns.parse_query(f"{digits}, T4, 15360, 535.1\n").status == ns.STATUS_GARBAGE
    assert ns.parse_query(f"0, T4, {digits}, 535.1\n").status == ns.STATUS_GARBAGE
    assert ns.parse_nproc(digits) is None
    assert ns.parse_meminfo(f"MemTotal: {digits} kB\n") is None
    mig = f"GPU {digits}: A100 (UUID: GPU-1)\n  MIG 1g.{digits}gb Device 0:\n"
    assert ns.parse_mig_list(mig) == {}
    with pytest.raises(ns.ProbeError):
        ns.parse_probe_output(f"@@localllm-probe 1\n@@begin nvidia-smi-query\n@@rc {digits}\n")


# ------------------------------------------------------------------------------ GPUs by identity

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"
HEADER = "index, name, uuid, pci.bus_id, memory.total [MiB], driver_version\n"


def test_a_gpu_listed_twice_under_the_same_uuid_is_counted_once():
    text = HEADER
    text += f"0, NVIDIA H100, {UUID_A}, 00000000:18:00.0, 81559, 550.54.15\n"
    text += f"1, NVIDIA H100, {UUID_A}, 00000000:18:00.0, 81559, 550.54.15\n"
    result = ns.parse_query(text)
    assert result.ok
    assert [g.index for g in result.gpus] == [0]
    assert "counted once" in result.notes[0]


def test_a_pasted_output_repeated_whole_is_one_set_of_gpus():
    rows = f"0, NVIDIA H100, {UUID_A}, 00000000:18:00.0, 81559, 550.54.15\n"
    rows += f"1, NVIDIA H100, {UUID_B}, 00000000:2a:00.0, 81559, 550.54.15\n"
    result = ns.parse_query(HEADER + rows + rows)
    assert result.ok
    assert [g.uuid for g in result.gpus] == [UUID_A, UUID_B]


def test_the_same_bus_id_with_another_uuid_is_one_gpu_too():
    text = HEADER
    text += f"0, NVIDIA H100, {UUID_A}, 00000000:18:00.0, 81559, 550.54.15\n"
    text += "1, NVIDIA H100, [N/A], 0000:18:00.0, 81559, 550.54.15\n"
    result = ns.parse_query(text)
    assert [g.index for g in result.gpus] == [0]


def test_the_same_identity_with_different_figures_is_refused():
    text = HEADER
    text += f"0, NVIDIA H100, {UUID_A}, 00000000:18:00.0, 81559, 550.54.15\n"
    text += f"1, NVIDIA H200, {UUID_A}, 00000000:18:00.0, 143771, 550.54.15\n"
    result = ns.parse_query(text)
    assert result.status == ns.STATUS_GARBAGE
    assert "same GPU" in result.message


# ------------------------------------------------------------------------------ pasted queries


def test_a_header_without_index_takes_the_row_order():
    text = "name, memory.total [MiB]\nNVIDIA A10G, 23028\nTesla T4, 15360\n"
    result = ns.parse_query(text)
    assert result.ok
    assert [(g.index, g.name) for g in result.gpus] == [(0, "NVIDIA A10G"), (1, "Tesla T4")]


def test_a_query_without_memory_counts_the_gpus_and_says_memory_is_unknown():
    result = ns.parse_query("index, name\n0, NVIDIA A10G\n1, NVIDIA A10G\n")
    assert result.ok
    assert [g.memory_mib for g in result.gpus] == [None, None]
    assert {g.memory_status for g in result.gpus} == {"absent"}
    assert "the query did not ask for it" in result.gpus[0].notes[0]


@pytest.mark.parametrize(
    ("cell", "status"),
    [
        ("[N/A]", "unified"),
        ("N/A", "unified"),
        ("[Not Supported]", "unsupported"),
        ("[Unknown Error]", "error"),
        ("[Insufficient Permissions]", "error"),
        ("[GPU is lost]", "error"),
        ("", "error"),
        ("24564", "reported"),
    ],
)
def test_the_memory_status_says_why_there_is_no_figure(cell, status):
    (gpu,) = ns.parse_query(f"index, name, memory.total [MiB]\n0, G, {cell}\n").gpus
    assert gpu.memory_status == status
    assert gpu.to_dict()["memory_status"] == status
    assert (gpu.memory_mib is None) is (status != "reported")


def test_gb10_memory_na_is_unified_not_an_error():
    result = ns.parse_query(fixture("query-gb10-memory-na.txt"))
    assert result.ok
    (gpu,) = result.gpus
    assert (gpu.memory_mib, gpu.memory_status, gpu.compute_cap) == (None, "unified", "12.1")


def test_mig_list_reads_instances_per_gpu_and_sizes_them_down():
    migs = ns.parse_mig_list(fixture("list-a100-mig.txt"))
    assert [m.profile for m in migs[0]] == ["3g.40gb", "2g.20gb", "1g.10gb"]
    assert migs[0][0].memory_mib == 38146  # 40 GB, never more than the slice
    assert migs[1][0].uuid.startswith("MIG-")


@pytest.mark.parametrize(
    ("compute_cap", "architecture"),
    [
        ("3.7", "kepler"),
        ("5.2", "maxwell"),
        ("6.1", "pascal"),
        ("7.0", "volta"),
        ("7.5", "turing"),
        ("8.0", "ampere"),
        ("8.6", "ampere"),
        ("8.9", "ada"),
        ("9.0", "hopper"),
        ("10.0", "blackwell"),
        ("12.0", "blackwell"),
        (None, None),
        ("x", None),
    ],
)
def test_architecture_from_compute_capability(compute_cap, architecture):
    assert ns.architecture_from_compute_cap(compute_cap) == architecture


# ------------------------------------------------------------------------------ lspci


def test_lspci_default_format_finds_gpus_and_nvswitch_bridges():
    devices = ns.parse_lspci(fixture("lspci-h100x8-default.txt"))
    assert [d.kind for d in devices].count("nvswitch") == 4
    gpus = [d for d in devices if d.kind == "gpu"]
    assert len(gpus) == 8
    assert gpus[0].address == "18:00.0"
    assert gpus[0].description == "GH100 [H100 SXM5 80GB]"
    assert gpus[0].architecture == "hopper"


def test_lspci_nn_reads_class_and_device_ids_and_skips_audio_functions():
    devices = ns.parse_lspci(fixture("lspci-rtx4090x2-nn.txt"))
    assert [(d.kind, d.class_code, d.device_id) for d in devices] == [
        ("gpu", "0300", "2684"),
        ("other", "0403", "22ba"),
        ("gpu", "0300", "2684"),
        ("other", "0403", "22ba"),
    ]
    assert devices[0].description == "AD102 [GeForce RTX 4090]"


def test_full_lspci_with_domains_keeps_only_nvidia():
    (device,) = ns.parse_lspci(fixture("lspci-full-domain-mixed-vendors.txt"))
    assert (device.address, device.kind, device.description) == (
        "0000:3b:00.0",
        "gpu",
        "TU104GL [Tesla T4]",
    )


def test_lspci_numeric_format():
    bridge, gpu = ns.parse_lspci(fixture("lspci-numeric-n.txt"))
    assert (bridge.kind, bridge.device_id) == ("nvswitch", "22a3")
    assert (gpu.kind, gpu.device_id) == ("gpu", "2330")


def test_lspci_with_an_old_pci_ids_database_and_warnings():
    gpu, bridge = ns.parse_lspci(fixture("lspci-old-pciids.txt"))
    assert (gpu.kind, gpu.device_id, gpu.description) == ("gpu", "2330", "Device 2330")
    assert bridge.kind == "nvswitch"


def test_sysfs_listing():
    devices = ns.parse_sysfs_pci(
        "0000:18:00.0 0x030200 0x2330\n0000:05:00.0 0x068000 0x22a3\ngarbage\n"
    )
    assert [(d.address, d.kind) for d in devices] == [
        ("0000:18:00.0", "gpu"),
        ("0000:05:00.0", "nvswitch"),
    ]


def test_topology_all_pairs_nvlink():
    lab = fixture("probe/lab-h100x8.txt")
    topo = lab.split("@@begin nvidia-smi-topo\n", 1)[1].split("@@rc", 1)[0]
    assert ns.parse_topology(topo) is True
    assert ns.parse_topology("\tGPU0\tGPU1\nGPU0\t X \tPHB\nGPU1\tPHB\t X \n") is False
    assert ns.parse_topology("nothing here") is None


def test_cpu_count_and_memory():
    assert ns.parse_nproc("64\n") == 64
    assert ns.parse_nproc("") is None
    assert ns.parse_meminfo("MemTotal: 263842340 kB\n") == 257658


# ------------------------------------------------------------------------------ the whole probe


@pytest.mark.parametrize(
    ("profile", "status", "gpus", "pci_gpus", "nvswitch"),
    [
        ("h100x8", ns.STATUS_OK, 8, 8, True),
        ("rtx4090", ns.STATUS_OK, 1, 1, False),
        ("rtx4090x2", ns.STATUS_OK, 2, 2, False),
        ("t4", ns.STATUS_OK, 1, 1, False),
        ("cpu", ns.STATUS_NOT_INSTALLED, 0, 0, False),
        ("broken", ns.STATUS_DRIVER_NOT_LOADED, 0, 1, False),
        ("nodriver", ns.STATUS_NOT_INSTALLED, 0, 1, False),
    ],
)
def test_lab_profiles_parse(profile, status, gpus, pci_gpus, nvswitch):
    report = ns.parse_probe_output(fixture(f"probe/lab-{profile}.txt"))
    assert report.nvidia_smi.status == status
    assert len(report.nvidia_smi.gpus) == gpus
    assert len(report.pci.gpus) == pci_gpus
    assert report.nvswitch is nvswitch
    assert report.cpu_count == 2
    assert report.memory_mib == 24683656 // 1024


def _probe(query: str, rc: int = 0, extra: str = "") -> str:
    return (
        "@@localllm-probe 1\n@@begin nvidia-smi-query\n"
        f"{query}@@rc {rc}\n{extra}@@begin lspci\n@@rc 0\n@@end\n"
    )


def test_probe_output_after_a_login_banner_is_still_read():
    report = ns.parse_probe_output("Welcome to gpu07!\n" + _probe("0, Tesla T4, 15360, 535.1\n"))
    assert report.nvidia_smi.gpus[0].name == "Tesla T4"
    assert "printed before the probe" in report.notes[0]


def test_mig_instances_are_attached_to_their_gpu():
    query = fixture("query-a100-mig.txt")
    listing = "@@begin nvidia-smi-list\n" + fixture("list-a100-mig.txt") + "@@rc 0\n"
    report = ns.parse_probe_output(_probe(query, 0, listing))
    assert [len(g.mig_devices) for g in report.nvidia_smi.gpus] == [3, 1]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no output"),
        ("Permission denied\n", "begins with 'Permission denied'"),
        ("@@localllm-probe 1\n@@begin nvidia-smi-query\n0, A", "truncated"),
        ("@@localllm-probe 7\n@@end\n", "probe format '7'"),
        ("@@localllm-probe 1\n@@begin evil\n@@end\n", "unexpected probe section"),
        ("@@localllm-probe 1\n@@begin lspci\n@@rc 0\n@@end\n", "lacks a complete nvidia-smi"),
        ("@@localllm-probe 1\n@@begin lspci\n@@rc zero\n@@end\n", "bad exit code"),
    ],
)
def test_unreadable_probe_output_raises_with_the_reason(text, match):
    with pytest.raises(ns.ProbeError, match=match):
        ns.parse_probe_output(text)


def test_sysfs_fallback_when_lspci_is_missing():
    text = (
        "@@localllm-probe 1\n@@begin nvidia-smi-query\n@@rc 127\n@@begin lspci\n@@rc 127\n"
        "@@begin sysfs-pci\n0000:ca:00.0 0x030200 0x26b9\n@@rc 0\n@@end\n"
    )
    report = ns.parse_probe_output(text)
    assert (report.pci.available, report.pci.source) == (True, "sysfs")
    assert report.pci.gpus[0].device_id == "26b9"


def test_no_pci_listing_at_all_is_reported_as_unavailable():
    text = (
        "@@localllm-probe 1\n@@begin nvidia-smi-query\n@@rc 127\n@@begin lspci\n@@rc 127\n@@end\n"
    )
    report = ns.parse_probe_output(text)
    assert report.pci.available is False
    assert "lspci is not installed" in report.pci.error


def test_section_size_is_bounded():
    huge = "0, Tesla T4, 15360, 535.1\n" * 10000
    report = ns.parse_probe_output(_probe(huge))
    assert report.nvidia_smi.status == ns.STATUS_GARBAGE


# ------------------------------------------------------------------------------ the script itself


def _fake_tools(directory: Path, tools: dict[str, str]) -> None:
    directory.mkdir()
    for name, body in tools.items():
        path = directory / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


SHELLS = [s for s in ("dash", "bash", "busybox") if shutil.which(s)]


@pytest.mark.parametrize("shell", SHELLS)
def test_probe_script_runs_under_posix_shells_and_round_trips(tmp_path, shell):
    query = fixture("query-a100-mig.txt")
    listing = fixture("list-a100-mig.txt")
    _fake_tools(
        tmp_path / "bin",
        {
            "nvidia-smi": (
                'case "$1" in\n'
                f"  -L) cat <<'X'\n{listing}X\n;;\n"
                f"  *) cat <<'X'\n{query}X\n;;\n"
                "esac\n"
            ),
            "lspci": f"cat <<'X'\n{fixture('lspci-h100x8-default.txt')}X\n",
        },
    )
    argv = {"dash": ["dash"], "bash": ["bash", "--posix"], "busybox": ["busybox", "sh"]}[shell]
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [*argv, "-c", ns.PROBE_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    report = ns.parse_probe_output(result.stdout)
    assert [len(g.mig_devices) for g in report.nvidia_smi.gpus] == [3, 1]
    assert report.nvswitch is True
    assert report.cpu_count == os.cpu_count()


def test_probe_script_falls_back_to_the_minimal_query_on_an_old_driver(tmp_path):
    _fake_tools(
        tmp_path / "bin",
        {
            "nvidia-smi": (
                'case "$1" in\n'
                "  *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.'; "
                "exit 2;;\n"
                "  *) echo 'index, name, uuid, pci.bus_id, memory.total [MiB], driver_version'\n"
                "     echo '0, Tesla P100-PCIE-16GB, GPU-11112222-3333, 00000000:04:00.0, 16384, "
                "470.82.01';;\n"
                "esac\n"
            ),
            "lspci": "exit 0\n",
        },
    )
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/bin/sh", "-c", ns.PROBE_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    (gpu,) = ns.parse_probe_output(result.stdout).nvidia_smi.gpus
    assert (gpu.name, gpu.memory_mib, gpu.compute_cap) == ("Tesla P100-PCIE-16GB", 16384, None)


def test_probe_script_reports_exit_codes_of_failing_tools(tmp_path):
    _fake_tools(
        tmp_path / "bin",
        {
            "nvidia-smi": "echo 'Failed to initialize NVML: Driver/library version mismatch'\n"
            "exit 18\n",
            "lspci": "echo '3b:00.0 3D controller: NVIDIA Corporation TU104GL [Tesla T4] "
            "(rev a1)'\n",
        },
    )
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/bin/sh", "-c", ns.PROBE_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    report = ns.parse_probe_output(result.stdout)
    assert report.nvidia_smi.status == ns.STATUS_VERSION_MISMATCH
    assert report.nvidia_smi.rc == 18
    assert report.pci.gpus[0].description == "TU104GL [Tesla T4]"


def test_a_comma_inside_a_gpu_name_stays_in_the_name():
    text = "index, name, memory.total [MiB], driver_version\n0, Acme, Inc. GPU, 16384, 550.54.15\n"
    (gpu,) = ns.parse_query(text).gpus
    assert (gpu.name, gpu.memory_mib) == ("Acme, Inc. GPU", 16384)


@pytest.mark.parametrize("name", ["NVIDIA \x1b[2J\x1b]0;pwned\x07 H100", "A\x00B", "T4\x7fx"])
def test_a_gpu_name_with_control_characters_is_refused(name):
    result = ns.parse_query(f"index, name, memory.total [MiB]\n0, {name}, 81559\n")
    assert result.status == ns.STATUS_GARBAGE
    assert "control character" in result.message
    assert "\x1b" not in result.message


def test_lspci_descriptions_lose_their_control_characters():
    line = "18:00.0 3D controller [0302]: NVIDIA Corporation GH100 \x1b[31m[H100] [10de:2330]\n"
    (device,) = ns.parse_lspci(line)
    assert "\x1b" not in device.description
    assert device.description.startswith("GH100 ")
