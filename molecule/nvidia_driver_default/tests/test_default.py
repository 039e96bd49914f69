"""nvidia_driver on the lab: one host per situation (see molecule.yml).

Package names and versions are the real ones the lab mirror's stand-in repositories carry
(tests/lab/nvidia-apt). The playbook-level checks (check mode, a missing branch, the reboot
decision) run ansible-playbook against the scenario's hosts through molecule/shared/lab_checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from lab_checks import PlaybookRun, ansible_env, project_dir, run_playbook

# host -> what the role must have left there (None: a host without NVIDIA GPUs)
EXPECTED = {
    "nvd-h100x8-debian12": {
        "version": "550.163.01",  # newest 550 while 570 is newer: the branch is pinned
        "flavour": "open",
        "fabricmanager": ["nvidia-fabricmanager-550", "libnvidia-nscq-550"],
        "packages": [
            "nvidia-driver-cuda",
            "nvidia-kernel-open-dkms",
            "nvidia-smi",
            "nvidia-persistenced",
            "cuda-keyring",
        ],
        "absent": ["nvidia-kernel-dkms"],
        "gpus": 8,
    },
    "nvd-h100x8-ubuntu2204": {
        "version": "570.172.08",
        "flavour": "open",
        "fabricmanager": ["nvidia-fabricmanager-570", "libnvidia-nscq-570"],
        "packages": [
            "nvidia-headless-no-dkms-570-server-open",
            "nvidia-utils-570-server",
            "nvidia-compute-utils-570-server",
        ],
        "absent": [
            "nvidia-dkms-570-server-open",
            "nvidia-headless-no-dkms-570-server",
            "cuda-keyring",
        ],
        "gpus": 8,
    },
    "nvd-rtx4090-ubuntu2404": {
        "version": "570.133.20",  # an exact, older release of the branch
        "flavour": "open",
        "fabricmanager": [],
        "packages": [
            "nvidia-headless-570-open",
            "nvidia-dkms-570-open",
            "nvidia-utils-570",
            "cuda-keyring",
        ],
        "absent": ["nvidia-fabricmanager-570", "libnvidia-nscq-570"],
        "gpus": 1,
    },
    "nvd-t4-debian12": {
        "version": "535.247.01",  # Debian 12's own archive
        "flavour": "proprietary",
        "fabricmanager": [],
        "packages": ["nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "nvidia-persistenced"],
        "absent": ["nvidia-open-kernel-dkms", "firmware-nvidia-gsp", "cuda-keyring"],
        "own_version": ["nvidia-persistenced"],
        "gpus": 1,
    },
    "nvd-nodriver-debian12": {
        "version": "570.172.08",  # the role's default branch, newest release
        "flavour": "open",
        "fabricmanager": [],
        "packages": ["nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-smi", "cuda-keyring"],
        "absent": ["nvidia-fabricmanager-570"],
        "gpus": 1,
    },
    "nvd-cpu-debian12": None,
}


@pytest.fixture
def expected(host):
    return EXPECTED[host.backend.get_hostname()]


@pytest.fixture
def gpu_host(expected):
    if expected is None:
        pytest.skip("a host without NVIDIA GPUs")
    return expected


def upstream(version: str) -> str:
    return version.rsplit(":", maxsplit=1)[-1].rsplit("-", 1)[0]


def installed(host, name: str) -> str | None:
    result = host.run("dpkg-query -W -f '${Status} ${Version}' %s", name)
    if result.rc != 0 or not result.stdout.startswith("install ok installed"):
        return None
    return result.stdout.split()[-1]


def test_nvidia_smi_answers_with_the_pinned_driver(host, gpu_host):
    result = host.run("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.split() == [gpu_host["version"]] * gpu_host["gpus"]


def test_driver_packages_are_installed_at_that_version(host, gpu_host):
    for name in gpu_host["packages"]:
        version = installed(host, name)
        assert version is not None, f"{name} is not installed"
        # cuda-keyring has its own version; so has Debian's own nvidia-persistenced.
        if name not in gpu_host.get("own_version", ["cuda-keyring"]):
            assert upstream(version) == gpu_host["version"], f"{name} {version}"
    for name in gpu_host["absent"]:
        assert installed(host, name) is None, f"{name} should not be installed"


def test_kernel_modules_have_the_expected_flavour(host, gpu_host):
    record = json.loads(host.file("/etc/localllm-lab/driver.json").content_string)
    assert record["flavour"] == gpu_host["flavour"]
    assert "Kernel driver in use: nvidia" in host.check_output("lspci -k -d 10de:")


def test_the_driver_is_held_against_upgrades(host, gpu_host):
    # The repositories hold newer releases (570.x beside 550.x); a plain upgrade keeps the driver.
    simulated = host.check_output("apt-get --simulate upgrade")
    assert not re.search(r"^Inst (lib)?nvidia|^Inst libcuda", simulated, re.MULTILINE), simulated
    pin = host.file("/etc/apt/preferences.d/localllm-fleet-nvidia-driver.pref")
    assert f"Pin: version {gpu_host['version']}-*" in pin.content_string


def test_persistenced_runs_with_persistence_mode(host, gpu_host):
    service = host.service("nvidia-persistenced")
    assert service.is_enabled
    assert service.is_running
    modes = host.check_output("nvidia-smi --query-gpu=persistence_mode --format=csv,noheader")
    assert set(modes.split()) == {"Enabled"}


def test_fabric_manager_only_with_nvswitch_and_at_the_drivers_version(host, gpu_host):
    service = host.service("nvidia-fabricmanager")
    if not gpu_host["fabricmanager"]:
        assert not host.file("/lib/systemd/system/nvidia-fabricmanager.service").exists
        return
    for name in gpu_host["fabricmanager"]:
        version = installed(host, name)
        assert version is not None, f"{name} is not installed"
        assert upstream(version) == gpu_host["version"], f"{name} {version}"
    assert service.is_enabled
    assert service.is_running
    assert (
        "Successfully configured all the available NVSwitches"
        in host.file("/var/log/fabricmanager.log").content_string
    )


def test_nouveau_is_blacklisted(host, gpu_host):
    blacklist = host.file("/etc/modprobe.d/localllm-fleet-blacklist-nouveau.conf")
    assert "blacklist nouveau" in blacklist.content_string
    assert "options nouveau modeset=0" in blacklist.content_string


def test_cuda_repository_points_at_the_mirror(host, gpu_host):
    lists = host.run("cat /etc/apt/sources.list.d/cuda-*.list").stdout
    if "cuda-keyring" not in gpu_host["packages"]:
        assert lists == ""
        return
    assert "http://mirror:8080/compute/cuda/repos/" in lists
    assert "cuda-repo.invalid" not in lists  # the keyring's own upstream URL was replaced


def test_no_reboot_was_attempted(host, expected):
    # A reboot of a container would restart its PID 1 (or stop the container).
    recorded = host.file("/etc/localllm-lab/pid1-start").content_string.strip()
    assert host.check_output("awk '{print $22}' /proc/1/stat") == recorded
    # In a container no reboot is pending either: it has no kernel of its own.
    assert not host.file("/run/localllm-fleet/nvidia-driver.reboot-required").exists


def test_a_host_without_gpus_gets_nothing(host, expected):
    if expected is not None:
        pytest.skip("a GPU host")
    assert not host.exists("nvidia-smi")
    assert host.run("dpkg -l | grep -E ' (lib)?nvidia|cuda-keyring'").stdout == ""
    for path in (
        "/etc/apt/preferences.d/localllm-fleet-nvidia-driver.pref",
        "/etc/modprobe.d/localllm-fleet-blacklist-nouveau.conf",
        "/etc/apt/sources.list.d/cuda-debian12-x86_64.list",
        "/etc/modules-load.d/localllm-fleet-nvidia.conf",
    ):
        assert not host.file(path).exists, path


def test_cuda_kernel_modules_load_at_boot(host, gpu_host):
    modules = host.file("/etc/modules-load.d/localllm-fleet-nvidia.conf")
    assert (modules.user, modules.group, modules.mode) == ("root", "root", 0o644)
    lines = [line for line in modules.content_string.splitlines() if not line.startswith("#")]
    assert lines == ["nvidia-uvm"]


# ------------------------------------------------------------------ playbook-level checks


def gpu_tier_source() -> Path:
    """The gpu_tier inventory over the scenario's hosts, written by prepare.yml."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "gpu_tier" / "lab.gpu_tier.yml"


def drivers_playbook(*args: str) -> PlaybookRun:
    """playbooks/drivers.yml through the gpu_tier inventory, as operators run it."""
    playbook = project_dir() / "playbooks" / "drivers.yml"
    return run_playbook(playbook, *args, inventory=gpu_tier_source())


def gpu_tier_groups(listing: dict) -> dict[str, set[str]]:
    return {
        name: set(group.get("hosts", []))
        for name, group in listing.items()
        if isinstance(group, dict) and name != "_meta"
    }


@pytest.fixture(scope="session")
def check_run():
    # Every host (nvidia_driver_hosts=all), with the GPU facts gpu_tier set: the role's
    # inventory path; the converge and idempotence runs took the local-detection path.
    return drivers_playbook("--check", "--diff", "-e", "nvidia_driver_hosts=all")


@pytest.fixture(scope="session")
def gpu_tier_listings():
    before = json.loads((gpu_tier_source().parent / "before.json").read_text())
    result = subprocess.run(
        ["ansible-inventory", "-i", str(gpu_tier_source()), "--list"],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=300,
        check=True,
    )
    return before, json.loads(result.stdout)


def test_gpu_tier_moves_the_nodriver_host_from_driver_needed_to_a_tier(host, gpu_tier_listings):
    name = host.backend.get_hostname()
    if name != "nvd-nodriver-debian12":
        pytest.skip("the host that had no driver")
    before, after = gpu_tier_listings
    groups_before, groups_after = gpu_tier_groups(before), gpu_tier_groups(after)
    assert name in groups_before["gpu_driver_needed"]
    assert not any(
        name in hosts for group, hosts in groups_before.items() if group.startswith("tier_")
    )
    assert name not in groups_after.get("gpu_driver_needed", set())
    assert name in groups_after["gpu"]
    tiers = [
        group
        for group, hosts in groups_after.items()
        if group.startswith("tier_") and name in hosts
    ]
    assert tiers == ["tier_large"], tiers  # one L40S, 46068 MiB
    status = after["_meta"]["hostvars"][name]["gpu_probe_status"]
    # ansible-inventory marks probe output as unsafe: {"__ansible_unsafe": "gpu"}
    assert (status.get("__ansible_unsafe") if isinstance(status, dict) else status) == "gpu"


def test_gpu_tier_keeps_the_host_with_driver_535_out_of_the_tiers(host, gpu_tier_listings):
    name = host.backend.get_hostname()
    if name != "nvd-t4-debian12":
        pytest.skip("the host with driver 535")
    for listing in gpu_tier_listings:  # its profile's 535 before, Debian's 535 after
        groups = gpu_tier_groups(listing)
        assert name in groups["gpu_driver_needed"]
        assert not any(
            name in hosts for group, hosts in groups.items() if group.startswith("tier_")
        )
        reason = listing["_meta"]["hostvars"][name]["gpu_tier_reason"]
        reason = reason.get("__ansible_unsafe") if isinstance(reason, dict) else reason
        assert re.search(
            r"GPU 0 \(Tesla T4, compute capability 7\.5\) has driver 535\.\d+\.\d+ "
            r"\(branch 535\); Ollama 0\.32\.15 needs 550 or newer",
            reason,
        ), reason


@pytest.fixture(scope="session")
def floor_run():
    return run_playbook(
        "converge.yml",
        extra_vars={"nvidia_driver_check_ollama_floor": True},
        limit="nvd-t4-debian12",
    )


def test_branch_535_is_refused_for_ollama_0_32_15(host, floor_run):
    name = host.backend.get_hostname()
    if name != "nvd-t4-debian12":
        pytest.skip("the host with driver 535")
    assert floor_run.rc != 0
    assert floor_run.recap[name]["failed"] == 1
    assert floor_run.recap[name]["changed"] == 0
    text = " ".join(floor_run.output.split())
    assert (
        "nvidia_driver_branch 535 is older than Ollama 0.32.15 needs on nvd-t4-debian12's "
        "GPUs (turing): 550 or newer" in text
    ), floor_run.output[-3000:]
    assert "Debian 12's own archive only has branch 535: use nvidia_driver_source: cuda" in text
    assert "Nothing was changed." in text
    assert installed(host, "nvidia-kernel-dkms") is not None


def test_drivers_playbook_targets_the_gpu_hosts_of_gpu_tier(host):
    if host.backend.get_hostname() != "nvd-cpu-debian12":
        pytest.skip("listed once")
    listed = drivers_playbook("--list-hosts").output
    hosts = set(re.findall(r"^\s+(nvd-\S+)$", listed, re.MULTILINE))
    assert hosts == {name for name, expected in EXPECTED.items() if expected}, listed


@pytest.fixture(scope="session")
def missing_branch_run():
    return run_playbook(
        "converge.yml",
        extra_vars={"nvidia_driver_branch": "999"},
        limit="nvd-h100x8-debian12,nvd-h100x8-ubuntu2204",
    )


def test_check_mode_on_the_converged_host_changes_nothing(host, check_run):
    name = host.backend.get_hostname()
    assert check_run.rc == 0, check_run.output[-3000:]
    assert check_run.recap[name]["failed"] == 0
    assert check_run.recap[name]["changed"] == 0, check_run.output[-3000:]


def test_a_missing_branch_fails_naming_it_and_the_repository(host, missing_branch_run):
    name = host.backend.get_hostname()
    if name not in ("nvd-h100x8-debian12", "nvd-h100x8-ubuntu2204"):
        pytest.skip("checked on the two h100x8 hosts")
    assert missing_branch_run.rc != 0
    assert missing_branch_run.recap[name]["failed"] == 1
    assert missing_branch_run.recap[name]["changed"] == 0
    text = " ".join(missing_branch_run.output.split())
    if name == "nvd-h100x8-debian12":
        assert (
            "driver branch 999 is not in NVIDIA's CUDA repository "
            "http://mirror:8080/compute/cuda/repos/debian12/x86_64/" in text
        )
        assert "branches it offers: 550, 570" in text
    else:
        assert "driver branch 999 is not in the distribution archive" in text
        assert "http://mirror:8080/distro-archive/ubuntu jammy/restricted" in text
        assert "branches it offers: 550, 570" in text
    # Nothing was removed: the driver of the converge still answers.
    expected = EXPECTED[name]
    for package in expected["packages"] + expected["fabricmanager"]:
        assert installed(host, package) is not None, f"{package} was removed"
    assert (
        host.check_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader").split()[0]
        == expected["version"]
    )


def test_reboot_happens_only_when_allowed_and_needed(host):
    """The decision the role makes on a host with its own kernel after a driver change."""
    name = host.backend.get_hostname()
    if name != "nvd-t4-debian12":
        pytest.skip("decided once, on nvd-t4-debian12")
    run = run_playbook("reboot-decision.yml", limit=name)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap[name]["changed"] == 0
    text = " ".join(run.output.split())
    assert "DECISION reboot=true needed=True now=True skip=[]" in text
    assert (
        "DECISION reboot=false needed=True now=False skip=[nvidia_driver_reboot is false]" in text
    )


@pytest.fixture(scope="session")
def real_host_preflight_run():
    """Preflight and install on the two h100x8 hosts as if they had their own kernel and
    Secure Boot enforcing (facts forced; nothing kernel-related runs under these tags)."""
    forced = {
        "__nvidia_driver_container": False,
        "__nvidia_driver_secure_boot": {
            "state": "enabled",
            "enforcing": True,
            "detail": "mokutil: SecureBoot enabled",
        },
        "nvidia_driver_ubuntu_kernel_flavour": "generic",
    }
    return run_playbook(
        "converge.yml",
        "--tags",
        "nvidia_driver_preflight,nvidia_driver_install",
        extra_vars=forced,
        limit="nvd-h100x8-debian12,nvd-h100x8-ubuntu2204",
    )


def test_secure_boot_without_signed_modules_stops_with_the_enrolment_steps(
    host, real_host_preflight_run
):
    name = host.backend.get_hostname()
    if name != "nvd-h100x8-debian12":
        pytest.skip("checked on the host with NVIDIA's repository (DKMS)")
    run = real_host_preflight_run
    assert run.recap[name]["failed"] == 1
    assert run.recap[name]["changed"] == 0
    text = " ".join(run.output.split())
    assert (
        "Secure Boot is on (mokutil: SecureBoot enabled) and NVIDIA's CUDA repository ships "
        "no pre-signed" in text
    )
    assert "/var/lib/dkms/mok.pub does not exist yet. Nothing was changed." in text
    assert "sudo mokutil --import /var/lib/dkms/mok.pub" in text
    assert 'choose "Enroll MOK"' in text


def test_ubuntu_archive_uses_canonicals_signed_modules_on_a_host_with_its_own_kernel(
    host, real_host_preflight_run
):
    """Secure Boot needs nothing more there; no DKMS, and the
    linux-modules-nvidia-<branch>-server-open-<kernel flavour> package instead."""
    name = host.backend.get_hostname()
    if name != "nvd-h100x8-ubuntu2204":
        pytest.skip("checked on the Ubuntu archive host")
    run = real_host_preflight_run
    assert run.recap[name]["failed"] == 0, run.output[-3000:]
    assert installed(host, "linux-modules-nvidia-570-server-open-generic") is not None
    assert installed(host, "nvidia-dkms-570-server-open") is None
    assert installed(host, "nvidia-headless-no-dkms-570-server-open") is not None
