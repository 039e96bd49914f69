"""The installed packages as the nvidia_driver role reads them: a dpkg-query or rpm listing
(the role's _nvidia_driver_installed_query) parsed into package_facts' shape by
nvidia_driver.installed_packages, so that the plan and the resolution read it as before
while nothing of it lands in the fact cache (which Ansible decodes again for every task).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_nvidia_driver_packages import CUDA_DEBIAN, KERNEL, MADISON_DEBIAN

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_driver import (
    INSTALLED_QUERY,
    PackageError,
    installed_packages,
    package_plan,
    resolve_apt,
)

ROOT = Path(__file__).resolve().parents[2]
QUERY = yaml.safe_load((ROOT / "roles/nvidia_driver/vars/main.yml").read_text())[
    "_nvidia_driver_installed_query"
]


def test_the_role_runs_the_query_the_parser_is_written_for():
    # fleet_tls_state runs INSTALLED_QUERY itself: the role's copy must not drift from it.
    assert QUERY == INSTALLED_QUERY


def test_the_roles_dpkg_query_on_this_debian_machine_parses_and_agrees_with_dpkg():
    # CI and the lab run Debian: dpkg-query is there, and this is the very command the role runs.
    assert shutil.which("dpkg-query"), "dpkg-query is missing: this test runs on Debian or Ubuntu"
    listing = subprocess.run(QUERY["apt"], capture_output=True, text=True, check=True).stdout
    packages = installed_packages(listing, "apt")
    dpkg_version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    assert packages["dpkg"][0]["version"] == dpkg_version
    assert len(packages) > 50


def test_apt_keeps_installed_states_and_leaves_removed_and_unknown_ones_out():
    listing = "\t".join(["ii ", "nvidia-kernel-open-dkms", "1:570.172.08-1", "amd64"]) + "\n"
    listing += "\t".join(["rc ", "nvidia-kernel-dkms", "550.54.15-1", "amd64"]) + "\n"
    listing += "\t".join(["un ", "nvidia-smi", "", ""]) + "\n"
    listing += "\t".join(["iU ", "libnvidia-compute-570", "570.172.08-1", "amd64"]) + "\n"
    listing += "\t".join(["ii ", "libnvidia-compute-570", "570.172.08-1", "i386"]) + "\n\n"
    packages = installed_packages(listing, "apt")
    assert sorted(packages) == ["libnvidia-compute-570", "nvidia-kernel-open-dkms"]
    assert packages["nvidia-kernel-open-dkms"] == [
        {
            "name": "nvidia-kernel-open-dkms",
            "version": "1:570.172.08-1",
            "arch": "amd64",
            "source": "apt",
        }
    ]
    assert [e["arch"] for e in packages["libnvidia-compute-570"]] == ["amd64", "i386"]


def test_rpm_keeps_epoch_version_and_release_apart_as_package_facts_does():
    listing = (
        "kmod-nvidia-open-dkms\t3\t570.172.08\t1.el9\tx86_64\n"
        "nvidia-driver\t(none)\t570.172.08\t1.el9\tx86_64\n"
    )
    packages = installed_packages(listing, "dnf")
    assert packages["kmod-nvidia-open-dkms"][0]["epoch"] == 3
    assert packages["nvidia-driver"] == [
        {
            "name": "nvidia-driver",
            "epoch": None,
            "version": "570.172.08",
            "release": "1.el9",
            "arch": "x86_64",
            "source": "rpm",
        }
    ]


def test_a_parsed_listing_drives_the_removals_as_package_facts_did():
    plan = package_plan("Debian", "550", "open", kernel=KERNEL)
    listing = "".join(
        f"ii \t{name}\t550.54.15-1\tamd64\n"
        for name in (
            "nvidia-kernel-dkms",
            "nvidia-fabricmanager-550",
            "nvidia-kernel-open-dkms",
            "nvidia-smi",
        )
    )
    result = resolve_apt(
        MADISON_DEBIAN, plan, installed_packages(listing, "apt"), cuda_repo_url=CUDA_DEBIAN
    )
    assert result["remove"] == ["nvidia-fabricmanager-550", "nvidia-kernel-dkms"]


@pytest.mark.parametrize(
    ("listing", "family", "words"),
    [
        ("ii \tnvidia-smi\t570\n", "apt", "line 1 of the installed-package list"),
        ("ii \tdpkg\t1.21\tamd64\nii \t\t570\tamd64\n", "apt", "line 2 of"),
        ("nvidia-driver\t570.172.08\t1.el9\n", "dnf", "5 tab-separated fields"),
        ("", "zypper", "apt or dnf"),
    ],
)
def test_a_listing_of_another_shape_is_refused_naming_the_line(listing, family, words):
    with pytest.raises(PackageError, match=words):
        installed_packages(listing, family)
