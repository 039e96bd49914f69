"""Which packages a host gets and at which version: nvidia_driver.package_plan and the
resolution of what apt and dnf offer against what is installed.

Before these functions the answers lived in Jinja regexes that only the lab exercised, and
the RHEL path not even there. The command outputs below have the shapes apt-cache and dnf
print (names, versions and sources as in NVIDIA's CUDA repository, Ubuntu's and Debian's
archives, and the lab mirror that stands in for them).
"""

from __future__ import annotations

import re

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_driver import (
    PackageError,
    apt_sources,
    dnf_module_streams,
    dnf_stream_check,
    fabricmanager_failure,
    package_plan,
    parse_dnf_list,
    parse_madison,
    resolve_apt,
    resolve_dnf,
    ubuntu_kernel_flavour,
)

CUDA_DEBIAN = "http://mirror:8080/compute/cuda/repos/debian12/x86_64"
CUDA_JAMMY = "http://mirror:8080/compute/cuda/repos/ubuntu2204/x86_64"
ARCHIVE_JAMMY = "http://mirror:8080/distro-archive/ubuntu jammy/restricted amd64 Packages"
KERNEL = "6.1.0-28-amd64"


def names(plan: dict) -> list[str]:
    return [p["name"] for p in plan["packages"]]


def installed(**versions: str) -> dict[str, list[dict[str, str]]]:
    """ansible_facts.packages as package_facts reports it."""
    return {name.replace("_", "-"): [{"version": v}] for name, v in versions.items()}


def madison(*rows: tuple[str, str, str]) -> str:
    """apt-cache madison prints the name right-aligned in ten columns."""
    return "\n".join(f"{name:>10} | {version} | {source}" for name, version, source in rows)


def flat(url: str) -> str:
    return f"{url}  Packages"


# ------------------------------------------------------------------------------ the plan


def test_debian_from_nvidia_gets_the_cuda_names_all_pinned_and_the_kernel_headers():
    plan = package_plan("Debian", "550", "open", fabricmanager=True, kernel=KERNEL)
    assert names(plan) == [
        "nvidia-driver-cuda",
        "nvidia-kernel-open-dkms",
        "nvidia-smi",
        "libcuda1",
        "libnvidia-ml1",
        "nvidia-persistenced",
        f"linux-headers-{KERNEL}",
        "nvidia-fabricmanager-550",
        "libnvidia-nscq-550",
    ]
    assert [p["name"] for p in plan["packages"] if not p["pin"]] == [f"linux-headers-{KERNEL}"]
    assert plan["version_package"] == "nvidia-driver-cuda"
    assert plan["branch_prefix"] == ""


def test_debian_archive_names_its_open_modules_apart_and_versions_persistenced_alone():
    plan = package_plan("Debian", "535", "open", source="distro", kernel=KERNEL)
    assert "nvidia-open-kernel-dkms" in names(plan)
    assert "firmware-nvidia-gsp" in names(plan)
    assert "nvidia-driver-cuda" not in names(plan)
    persistenced = next(p for p in plan["packages"] if p["name"] == "nvidia-persistenced")
    assert persistenced["pin"] is False
    assert plan["version_package"] == "nvidia-open-kernel-dkms"


def test_debian_proprietary_and_full_driver():
    plan = package_plan("Debian", "535", "proprietary", source="distro", headless=False)
    assert "nvidia-kernel-dkms" in names(plan)
    assert "firmware-nvidia-gsp" not in names(plan)
    assert "nvidia-driver" in names(plan)
    assert plan["version_package"] == "nvidia-kernel-dkms"


UBUNTU_PLAN = package_plan(
    "Ubuntu",
    "570",
    "open",
    source="distro",
    fabricmanager=True,
    kernel="5.15.0-126-generic",
    distribution_version="22.04",
    precompiled=True,
)


def test_ubuntu_archive_with_canonicals_signed_modules_has_no_dkms_and_no_headers():
    plan = UBUNTU_PLAN
    assert names(plan) == [
        "nvidia-utils-570-server",
        "nvidia-compute-utils-570-server",
        "nvidia-headless-no-dkms-570-server-open",
        "linux-modules-nvidia-570-server-open-generic",
        "nvidia-fabricmanager-570",
        "libnvidia-nscq-570",
    ]
    assert plan["branch_prefix"] == "nvidia-utils-"
    assert plan["kernel_flavour"] == "generic"


def test_ubuntu_from_nvidia_uses_dkms_even_when_precompiled_is_asked():
    # Canonical's signed modules exist in Ubuntu's archive only.
    plan = package_plan("Ubuntu", "570", "open", kernel="6.8.0-49-generic", precompiled=True)
    assert names(plan) == [
        "nvidia-utils-570",
        "nvidia-compute-utils-570",
        "nvidia-headless-570-open",
        "nvidia-dkms-570-open",
        "linux-headers-6.8.0-49-generic",
    ]


def test_ubuntu_full_driver_keeps_the_headless_and_dkms_packages_it_depends_on():
    plan = package_plan("Ubuntu", "570", "proprietary", headless=False, kernel="6.8.0-49-generic")
    assert "nvidia-driver-570" in names(plan)
    assert set(plan["keep"]) == {
        "nvidia-headless-no-dkms-570",
        "nvidia-headless-570",
        "nvidia-dkms-570",
    }


@pytest.mark.parametrize(
    ("kernel", "requested", "installed_names", "flavour"),
    [
        ("5.15.0-126-generic", "", [], "generic"),
        ("5.15.0-126-generic", "", ["linux-generic-hwe-22.04"], "generic-hwe-22.04"),
        ("6.8.0-1017-aws", "", ["linux-generic-hwe-22.04"], "aws"),
        ("5.15.0-126-generic", "lowlatency", ["linux-generic-hwe-22.04"], "lowlatency"),
    ],
)
def test_the_signed_modules_follow_the_kernel_flavour(kernel, requested, installed_names, flavour):
    assert ubuntu_kernel_flavour(kernel, "22.04", requested, installed_names) == flavour


def test_the_hwe_flavour_names_the_modules_and_their_alternatives():
    plan = package_plan(
        "Ubuntu",
        "570",
        "open",
        source="distro",
        kernel="6.8.0-49-generic",
        distribution_version="22.04",
        precompiled=True,
        installed={"linux-generic-hwe-22.04": [{"version": "6.8.0.49.49~22.04.1"}]},
    )
    assert "linux-modules-nvidia-570-server-open-generic-hwe-22.04" in names(plan)
    # another branch's signed modules for this flavour go; another flavour's are left alone
    other = "linux-modules-nvidia-550-server-open-generic-hwe-22.04"
    assert any(re.match(pattern, other) for pattern in plan["alternatives"])
    assert not any(re.match(p, other.replace("-hwe-22.04", "")) for p in plan["alternatives"])


@pytest.mark.parametrize("distribution", ["RedHat", "Rocky", "AlmaLinux"])
def test_rhel_takes_a_module_stream_and_the_kmod_packages(distribution):
    plan = package_plan(distribution, "570", "open", fabricmanager=True)
    assert plan["module_stream"] == "nvidia-driver:570-open"
    assert names(plan) == [
        "nvidia-driver-cuda",
        "kmod-nvidia-open-dkms",
        "nvidia-persistenced",
        "kernel-devel-matched",
        "kernel-headers",
        "nvidia-fabric-manager",
        "libnvidia-nscq-570",
    ]
    proprietary = package_plan(distribution, "550", "proprietary", headless=False)
    assert proprietary["module_stream"] == "nvidia-driver:550-dkms"
    assert "kmod-nvidia-latest-dkms" in names(proprietary)
    assert "nvidia-driver" in names(proprietary)


@pytest.mark.parametrize("distribution", ["Debian", "Ubuntu", "RedHat"])
def test_a_container_gets_no_kernel_package(distribution):
    plan = package_plan(distribution, "570", "open", kernel=KERNEL, container=True)
    assert plan["packages"]
    assert not [p for p in plan["packages"] if p["kernel"]]
    assert not [n for n in names(plan) if n.startswith(("linux-", "kernel-"))]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"distribution": "Arch"}, "no NVIDIA driver packages known for 'Arch'"),
        ({"branch": "57"}, "not a branch number"),
        ({"flavour": "auto"}, "not open or proprietary"),
        ({"source": "ppa"}, "source 'ppa' is not one of cuda, distro"),
        ({"distribution": "Rocky", "source": "distro"}, "Rocky has no NVIDIA driver of its own"),
    ],
)
def test_a_plan_that_cannot_be_made_says_why(arguments, message):
    call = {"distribution": "Debian", "branch": "570", "flavour": "open", **arguments}
    with pytest.raises(PackageError, match=message):
        package_plan(call.pop("distribution"), call.pop("branch"), call.pop("flavour"), **call)


# --------------------------------------------------------------------------- apt: reading


def test_madison_lines_are_read_in_order_and_source_packages_skipped():
    text = "\n".join(
        [
            "nvidia-persistenced | 535.171.04-1~deb12u1 | http://deb.example/debian "
            "bookworm/contrib amd64 Packages",
            "nvidia-persistenced | 535.171.04-1~deb12u1 | http://deb.example/debian "
            "bookworm/contrib Sources",
            "N: Unable to locate package nvidia-nothing",
        ]
    )
    lines = parse_madison(text)
    assert [(line.name, line.version) for line in lines] == [
        ("nvidia-persistenced", "535.171.04-1~deb12u1")
    ]


def test_the_archives_sources_are_named_from_apt_cache_policy():
    policy = """Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://mirror:8080/distro-archive/ubuntu jammy/multiverse amd64 Packages
     release v=22.04,o=Ubuntu,a=jammy,n=jammy,l=Ubuntu,c=multiverse,b=amd64
 500 http://mirror:8080/distro-archive/ubuntu jammy/restricted amd64 Packages
 500 http://mirror:8080/distro-archive/ubuntu jammy/restricted i386 Packages
 500 http://mirror:8080/compute/cuda/repos/ubuntu2204/x86_64  Packages
Pinned packages:
"""
    assert apt_sources(policy) == [
        "http://mirror:8080/distro-archive/ubuntu jammy/multiverse",
        "http://mirror:8080/distro-archive/ubuntu jammy/restricted",
    ]


# ------------------------------------------------------------------------ apt: resolution

DEBIAN_PLAN = package_plan("Debian", "550", "open", fabricmanager=True, kernel=KERNEL)


def debian_cuda_madison(*releases: str) -> str:
    rows = []
    for package in names(DEBIAN_PLAN):
        if package.startswith("linux-headers"):
            rows.append(
                (package, "6.1.119-1", "http://deb.example/debian bookworm/main amd64 Packages")
            )
            continue
        for release in releases:
            if package.endswith("-550") and not release.startswith("550."):
                continue
            rows.append((package, f"{release}-1", flat(CUDA_DEBIAN)))
    return madison(*rows)


MADISON_DEBIAN = debian_cuda_madison("570.172.08", "570.133.20", "550.163.01", "550.54.15")


def test_a_pinned_branch_gets_its_newest_release_while_a_newer_branch_exists():
    result = resolve_apt(MADISON_DEBIAN, DEBIAN_PLAN, {}, cuda_repo_url=CUDA_DEBIAN)
    assert result["problem"] == ""
    assert result["version"] == "550.163.01"
    assert result["offered"] == ["550.163.01", "550.54.15"]
    assert result["specs"][0] == "nvidia-driver-cuda=550.163.01-1"
    assert "nvidia-fabricmanager-550=550.163.01-1" in result["specs"]
    # the kernel's headers are not held at the driver's version, and come from any source
    assert f"linux-headers-{KERNEL}" in result["specs"]
    assert f"linux-headers-{KERNEL}" not in result["pinned"]
    assert result["repository"] == f"NVIDIA's CUDA repository {CUDA_DEBIAN}/"


def test_the_installed_release_of_the_branch_stays_unless_upgrading():
    have = installed(nvidia_driver_cuda="550.54.15-1", nvidia_smi="550.54.15-1")
    kept = resolve_apt(MADISON_DEBIAN, DEBIAN_PLAN, have, cuda_repo_url=CUDA_DEBIAN)
    assert kept["version"] == "550.54.15"
    assert "nvidia-smi=550.54.15-1" in kept["specs"]
    upgraded = resolve_apt(
        MADISON_DEBIAN, DEBIAN_PLAN, have, upgrade=True, cuda_repo_url=CUDA_DEBIAN
    )
    assert upgraded["version"] == "550.163.01"
    assert "nvidia-smi=550.163.01-1" in upgraded["specs"]


def test_an_installed_driver_of_another_branch_does_not_hold_the_version():
    have = installed(nvidia_driver_cuda="570.172.08-1")
    result = resolve_apt(MADISON_DEBIAN, DEBIAN_PLAN, have, cuda_repo_url=CUDA_DEBIAN)
    assert result["version"] == "550.163.01"


def test_an_exact_older_release_is_installed_at_that_version():
    result = resolve_apt(
        MADISON_DEBIAN, DEBIAN_PLAN, {}, requested="550.54.15", cuda_repo_url=CUDA_DEBIAN
    )
    assert result["problem"] == ""
    assert result["version"] == "550.54.15"
    assert "libcuda1=550.54.15-1" in result["specs"]


def test_epochs_are_read_and_kept_in_the_install_spec():
    text = madison(
        ("nvidia-driver-cuda", "1:570.172.08-1", flat(CUDA_DEBIAN)),
        ("nvidia-driver-cuda", "1:570.133.20-1", flat(CUDA_DEBIAN)),
        ("nvidia-smi", "1:570.172.08-1", flat(CUDA_DEBIAN)),
    )
    plan = {**DEBIAN_PLAN, "branch": "570", "packages": DEBIAN_PLAN["packages"][:1]}
    plan["packages"] = [{"name": "nvidia-driver-cuda", "pin": True, "kernel": False}]
    result = resolve_apt(text, plan, {}, cuda_repo_url=CUDA_DEBIAN)
    assert result["offered"] == ["570.172.08", "570.133.20"]
    assert result["specs"] == ["nvidia-driver-cuda=1:570.172.08-1"]
    have = installed(nvidia_driver_cuda="1:570.133.20-1")
    assert resolve_apt(text, plan, have, cuda_repo_url=CUDA_DEBIAN)["version"] == "570.133.20"


def test_a_missing_branch_names_the_branches_the_repository_has():
    plan = package_plan("Debian", "999", "open", kernel=KERNEL)
    result = resolve_apt(MADISON_DEBIAN, plan, {}, cuda_repo_url=CUDA_DEBIAN)
    assert result["version"] == ""
    assert result["problem"] == (
        f"driver branch 999 is not in NVIDIA's CUDA repository {CUDA_DEBIAN}/: "
        "nvidia-driver-cuda has no 999.x release there (branches it offers: 550, 570). "
        "Nothing was installed or removed."
    )


def test_a_requested_release_that_is_not_there_is_refused_naming_the_releases():
    result = resolve_apt(
        MADISON_DEBIAN, DEBIAN_PLAN, {}, requested="550.99.01", cuda_repo_url=CUDA_DEBIAN
    )
    assert result["problem"] == (
        f"driver 550.99.01 is not in NVIDIA's CUDA repository {CUDA_DEBIAN}/ (releases of "
        "branch 550 there: 550.163.01, 550.54.15). Nothing was installed or removed."
    )


def test_a_requested_release_that_is_installed_but_gone_from_the_repository_stays():
    have = {
        name: [{"version": "550.40.07-1"}]
        for name in names(DEBIAN_PLAN)
        if not name.startswith("linux-")
    }
    result = resolve_apt(
        MADISON_DEBIAN, DEBIAN_PLAN, have, requested="550.40.07", cuda_repo_url=CUDA_DEBIAN
    )
    assert result["problem"] == ""
    assert "nvidia-driver-cuda=550.40.07-1" in result["specs"]


def test_a_package_missing_at_the_version_stops_before_anything_is_removed():
    text = "\n".join(
        line
        for line in MADISON_DEBIAN.splitlines()
        if "libnvidia-nscq-550 | 550.163.01" not in line
    )
    have = installed(nvidia_kernel_dkms="550.54.15-1")
    result = resolve_apt(text, DEBIAN_PLAN, have, cuda_repo_url=CUDA_DEBIAN)
    assert result["missing"] == ["libnvidia-nscq-550"]
    assert result["problem"] == (
        "libnvidia-nscq-550 not available at driver 550.163.01 in NVIDIA's CUDA repository "
        f"{CUDA_DEBIAN}/ (libnvidia-nscq-550 offers 550.54.15). Every driver package, Fabric "
        "Manager and libnvidia-nscq must be installed at exactly the same version, or CUDA "
        "does not initialise. Nothing was installed or removed."
    )


def test_missing_kernel_headers_are_reported_as_offering_nothing():
    text = "\n".join(line for line in MADISON_DEBIAN.splitlines() if "linux-headers" not in line)
    result = resolve_apt(text, DEBIAN_PLAN, {}, cuda_repo_url=CUDA_DEBIAN)
    assert result["missing"] == [f"linux-headers-{KERNEL}"]
    assert f"linux-headers-{KERNEL} offers nothing" in result["problem"]


def test_other_flavours_and_unneeded_fabric_manager_are_removed():
    plan = package_plan("Debian", "550", "open", kernel=KERNEL)
    have = installed(
        nvidia_kernel_dkms="550.54.15-1",
        nvidia_fabricmanager_550="550.54.15-1",
        libnvidia_nscq_550="550.54.15-1",
        nvidia_kernel_open_dkms="550.54.15-1",
        nvidia_smi="550.54.15-1",
    )
    result = resolve_apt(MADISON_DEBIAN, plan, have, cuda_repo_url=CUDA_DEBIAN)
    assert result["remove"] == [
        "libnvidia-nscq-550",
        "nvidia-fabricmanager-550",
        "nvidia-kernel-dkms",
    ]


ARCHIVE_VERSION = "570.172.08-0ubuntu0.22.04.1"
MADISON_UBUNTU = madison(
    *(
        (name, ARCHIVE_VERSION, ARCHIVE_JAMMY)
        for name in names(UBUNTU_PLAN)
        if not name.startswith("linux-modules")
    ),
    ("linux-modules-nvidia-570-server-open-generic", "5.15.0-126.136", ARCHIVE_JAMMY),
    # NVIDIA's repository is configured too: its lines are not the archive's
    ("nvidia-fabricmanager-570", "570.172.08-0ubuntu1", flat(CUDA_JAMMY)),
    ("nvidia-fabricmanager-570", "570.133.20-0ubuntu1", flat(CUDA_JAMMY)),
)
POLICY_UBUNTU = f" 500 {ARCHIVE_JAMMY}\n 500 {flat(CUDA_JAMMY)}\n"
PKGNAMES = "\n".join(
    [
        "nvidia-utils-550-server",
        "nvidia-utils-570-server",
        "nvidia-utils-570",
        "nvidia-utils-570-server-open",
    ]
)


def resolve_ubuntu(**arguments):
    return resolve_apt(
        arguments.pop("madison", MADISON_UBUNTU),
        arguments.pop("plan", UBUNTU_PLAN),
        arguments.pop("installed", {}),
        source="distro",
        cuda_repo_url=CUDA_JAMMY,
        pkgnames=PKGNAMES,
        policy=POLICY_UBUNTU,
        sources_hint="Ubuntu's archive with the restricted and multiverse components enabled",
        **arguments,
    )


def test_the_archive_is_read_without_nvidias_repository():
    result = resolve_ubuntu()
    assert result["problem"] == ""
    assert result["version"] == "570.172.08"
    assert f"nvidia-fabricmanager-570={ARCHIVE_VERSION}" in result["specs"]
    # the pre-signed modules follow the kernel's version, not the driver's
    assert "linux-modules-nvidia-570-server-open-generic" in result["specs"]
    assert "linux-modules-nvidia-570-server-open-generic" not in result["pinned"]


def test_a_missing_archive_branch_names_the_sources_and_the_branches_of_the_same_kind():
    plan = package_plan(
        "Ubuntu", "999", "open", source="distro", kernel="5.15.0-126-generic", precompiled=True
    )
    result = resolve_ubuntu(plan=plan)
    assert result["problem"] == (
        "driver branch 999 is not in the distribution archive (Ubuntu's archive with the "
        "restricted and multiverse components enabled; apt sources: "
        "http://mirror:8080/distro-archive/ubuntu jammy/restricted): nvidia-utils-999-server "
        "has no 999.x release there (branches it offers: 550, 570). Nothing was installed or "
        "removed."
    )


def test_the_archive_without_sources_says_none():
    plan = package_plan("Ubuntu", "999", "open", source="distro", kernel="5.15.0-126-generic")
    result = resolve_apt(
        "", plan, {}, source="distro", cuda_repo_url=CUDA_JAMMY, sources_hint="hint"
    )
    assert "(hint; apt sources: none)" in result["problem"]
    assert "(branches it offers: none)" in result["problem"]


def test_nvidias_releases_do_not_satisfy_the_archive_and_vice_versa():
    # Only NVIDIA's repository has 570.133.20: asked from the archive, it is not there.
    result = resolve_ubuntu(requested="570.133.20")
    assert "driver 570.133.20 is not in the distribution archive" in result["problem"]
    assert "(releases of branch 570 there: 570.172.08)" in result["problem"]


def test_a_repository_url_with_a_trailing_slash_is_the_same_repository():
    text = madison(("nvidia-driver-cuda", "570.172.08-1", f"{CUDA_DEBIAN}/  Packages"))
    plan = {**DEBIAN_PLAN, "branch": "570"}
    plan["packages"] = [{"name": "nvidia-driver-cuda", "pin": True, "kernel": False}]
    assert resolve_apt(text, plan, {}, cuda_repo_url=CUDA_DEBIAN)["version"] == "570.172.08"
    other = madison(("nvidia-driver-cuda", "570.172.08-1", f"{CUDA_DEBIAN}-mirror  Packages"))
    assert resolve_apt(other, plan, {}, cuda_repo_url=CUDA_DEBIAN)["version"] == ""


def test_another_ubuntu_variant_installed_is_removed_and_the_plans_dependencies_kept():
    have = installed(
        nvidia_headless_no_dkms_570_server_open=ARCHIVE_VERSION,
        nvidia_headless_no_dkms_570_server="570.172.08-0ubuntu0.22.04.1",
        nvidia_dkms_570_server_open=ARCHIVE_VERSION,
        nvidia_utils_550_server="550.163.01-0ubuntu0.22.04.1",
        linux_modules_nvidia_550_server_open_generic="5.15.0-126.136",
        linux_modules_nvidia_550_server_open_aws="5.15.0-126.136",
    )
    result = resolve_ubuntu(installed=have)
    assert result["remove"] == [
        "linux-modules-nvidia-550-server-open-generic",
        "nvidia-dkms-570-server-open",
        "nvidia-headless-no-dkms-570-server",
        "nvidia-utils-550-server",
    ]


# ------------------------------------------------------------------------------------ dnf

STREAMS = """CUDA repository for rhel9 x86_64
Name           Stream             Profiles                           Summary
nvidia-driver  latest             default [d], fm, ks, src   Nvidia driver for latest
nvidia-driver  latest-dkms [d][e] default [d], fm, ks        Nvidia driver for latest-dkms
nvidia-driver  550-dkms           default [d], fm, ks, src   Nvidia driver for 550-dkms
nvidia-driver  570-open [e]       default [d], fm, ks, src   Nvidia driver for 570-open
nvidia-driver  570-dkms           default [d], fm, ks, src   Nvidia driver for 570-dkms

Hint: [d]efault, [e]nabled, [x]disabled, [i]nstalled
"""
RHEL_PLAN = package_plan("Rocky", "570", "open", fabricmanager=True)
REPOSITORY = "NVIDIA's CUDA repository http://mirror/rhel9/x86_64/"


def test_module_streams_and_their_enabled_flags_are_read():
    found = dnf_module_streams(STREAMS)
    assert found["streams"] == ["latest", "latest-dkms", "550-dkms", "570-open", "570-dkms"]
    assert found["enabled"] == ["latest-dkms", "570-open"]


def test_the_plans_stream_is_found_or_the_streams_there_are_named():
    found = dnf_stream_check(STREAMS, RHEL_PLAN, REPOSITORY)
    assert (found["enabled"], found["problem"]) == (True, "")
    check = dnf_stream_check(STREAMS, package_plan("RedHat", "550", "open"), REPOSITORY)
    assert check["enabled"] is False
    assert check["problem"] == (
        f"driver branch 550 is not in {REPOSITORY}: no module stream nvidia-driver:550-open "
        "(streams: latest, latest-dkms, 550-dkms, 570-open, 570-dkms). Nothing was installed "
        "or removed."
    )
    assert dnf_stream_check("", RHEL_PLAN, REPOSITORY)["problem"].endswith(
        "(streams: none). Nothing was installed or removed."
    )


DNF_LIST = """Available Packages
kernel-devel-matched.x86_64            5.14.0-503.14.1.el9_5             baseos
kernel-headers.x86_64                  5.14.0-503.14.1.el9_5             appstream
kmod-nvidia-open-dkms.noarch           3:570.86.15-1.el9                 cuda-rhel9-x86_64
kmod-nvidia-open-dkms.noarch           3:570.124.06-1.el9                cuda-rhel9-x86_64
libnvidia-nscq-570.x86_64              570.86.15-1                       cuda-rhel9-x86_64
libnvidia-nscq-570.x86_64              570.124.06-1                      cuda-rhel9-x86_64
nvidia-driver-cuda.x86_64              3:570.86.15-1.el9                 cuda-rhel9-x86_64
nvidia-driver-cuda.x86_64              3:570.124.06-1.el9                cuda-rhel9-x86_64
nvidia-fabric-manager.x86_64           570.86.15-1                       cuda-rhel9-x86_64
nvidia-fabric-manager.x86_64           570.124.06-1                      cuda-rhel9-x86_64
nvidia-persistenced.x86_64             3:570.86.15-1.el9                 cuda-rhel9-x86_64
nvidia-persistenced.x86_64
                                       3:570.124.06-1.el9                cuda-rhel9-x86_64
"""


def test_dnf_list_is_read_with_epochs_and_wrapped_lines():
    versions = parse_dnf_list(DNF_LIST)
    assert versions["nvidia-persistenced"] == ["570.86.15", "570.124.06"]
    assert versions["kernel-headers"] == ["5.14.0"]
    assert "Available" not in versions


def test_dnf_settles_the_newest_release_by_version_not_by_text():
    result = resolve_dnf(DNF_LIST, RHEL_PLAN, {}, repository=REPOSITORY)
    assert result["problem"] == ""
    # 570.124.06 is newer than 570.86.15 although "1" sorts before "8"
    assert result["offered"] == ["570.124.06", "570.86.15"]
    assert result["version"] == "570.124.06"
    assert result["specs"] == [
        "nvidia-driver-cuda-570.124.06",
        "kmod-nvidia-open-dkms-570.124.06",
        "nvidia-persistenced-570.124.06",
        "kernel-devel-matched",
        "kernel-headers",
        "nvidia-fabric-manager-570.124.06",
        "libnvidia-nscq-570-570.124.06",
    ]


def test_dnf_keeps_the_installed_release_unless_upgrading():
    have = installed(nvidia_driver_cuda="570.86.15")
    assert resolve_dnf(DNF_LIST, RHEL_PLAN, have, repository=REPOSITORY)["version"] == "570.86.15"
    upgraded = resolve_dnf(DNF_LIST, RHEL_PLAN, have, upgrade=True, repository=REPOSITORY)
    assert upgraded["version"] == "570.124.06"


@pytest.mark.parametrize(
    ("branch", "requested", "said"),
    [
        ("550", "", "driver branch 550 is not in {} (releases of branch 550 there: none)"),
        (
            "570",
            "570.99.01",
            "driver 570.99.01 is not in {} (releases of branch 570 there: 570.124.06, 570.86.15)",
        ),
    ],
)
def test_dnf_refuses_a_branch_or_release_that_is_not_there(branch, requested, said):
    plan = package_plan("RedHat", branch, "open")
    result = resolve_dnf(DNF_LIST, plan, {}, repository=REPOSITORY, requested=requested)
    assert result["problem"] == said.format(REPOSITORY) + ". Nothing was installed or removed."


def test_dnf_names_a_package_missing_at_the_version_and_what_goes():
    text = "\n".join(
        line for line in DNF_LIST.splitlines() if not line.startswith("libnvidia-nscq-570")
    )
    have = installed(kmod_nvidia_latest_dkms="570.86.15", nvidia_fabric_manager="570.86.15")
    result = resolve_dnf(text, RHEL_PLAN, have, repository=REPOSITORY)
    assert result["problem"] == (
        f"libnvidia-nscq-570 not available at driver 570.124.06 in {REPOSITORY}. Every driver "
        "package, Fabric Manager and libnvidia-nscq must be installed at exactly the same "
        "version. Nothing was installed or removed."
    )
    assert result["remove"] == ["kmod-nvidia-latest-dkms"]


# ---------------------------------------------------------------- Fabric Manager's reason

JOURNAL = """Starting NVIDIA fabric manager service...
fabric manager NVIDIA GPU driver interface version 570.172.08 don't match with driver version 570.133.20. Please update with matching NVIDIA driver package.
nvidia-fabricmanager.service: Control process exited, code=exited, status=1/FAILURE
Failed to start NVIDIA fabric manager service.
"""  # noqa: E501 - Fabric Manager's own line


def test_fabric_managers_own_reason_is_kept_and_systemds_lines_left_out():
    assert fabricmanager_failure(JOURNAL, "unit failed") == (
        "fabric manager NVIDIA GPU driver interface version 570.172.08 don't match with "
        "driver version 570.133.20. Please update with matching NVIDIA driver package"
    )


def test_without_a_reason_in_the_journal_the_tasks_message_is_said():
    assert fabricmanager_failure("Started NVIDIA fabric manager service.\n", "timeout...") == (
        "timeout"
    )
    assert fabricmanager_failure("", "") == "nothing logged"
