"""The roles' checks of their own settings, run through ansible-playbook on localhost:
values that would change a systemd unit's meaning and sources that nothing authenticates
are refused before any host is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from role_testing import render_template
from role_testing import run_role_tasks as _run_role_tasks

pytestmark = pytest.mark.controller  # ansible-playbook runs the task files

UNIT = "etc/systemd/system/ollama.service.j2"
DROPIN = "etc/systemd/system/ollama.service.d/override.conf.j2"
PINNED = {"ollama_checksum": "ab" * 32}
# The ollama role checks the platform in the same step as its settings: the facts of a
# supported host, as if gathered (the role gathers only what the fact cache lacks).
DEBIAN_12 = {
    "service_mgr": "systemd",
    "distribution": "Debian",
    "distribution_version": "12.8",
    "distribution_major_version": "12",
    "os_family": "Debian",
    "architecture": "x86_64",
}


def run_role_tasks(tmp_path: Path, role: str, tasks_from: str, variables: dict, **kwargs):
    """role_testing's, with the ollama role given DEBIAN_12's facts unless a test brings its
    own."""
    if role == "ollama" and "ansible_facts" not in variables:
        variables = {"ansible_facts": DEBIAN_12, **variables}
    return _run_role_tasks(tmp_path, role, tasks_from, variables, **kwargs)


def test_a_carriage_return_in_the_environment_is_refused_before_anything_changes(tmp_path: Path):
    run = run_role_tasks(
        tmp_path,
        "ollama",
        "settings.yml",
        {
            **PINNED,
            "ollama_environment_extra": {
                "OLLAMA_ORIGINS": "http://app.example\rUser=root\rProtectSystem=no"
            },
        },
    )
    assert run.failed
    assert "OLLAMA_ORIGINS: the value of OLLAMA_ORIGINS contains a line break" in run.out
    assert "Nothing was changed" in run.out


def test_the_drop_in_cannot_be_rendered_with_a_carriage_return_either(tmp_path: Path):
    run = render_template(
        tmp_path,
        "ollama",
        DROPIN,
        {"ollama_environment_extra": {"OLLAMA_ORIGINS": "http://a\rUser=root"}},
    )
    assert run.rendered is None
    assert "line break or control character (U+000D)" in run.out


def test_a_path_with_whitespace_is_refused_by_the_settings_check(tmp_path: Path):
    run = run_role_tasks(
        tmp_path, "ollama", "settings.yml", {**PINNED, "ollama_store_dir": "/srv/models 100%h"}
    )
    assert run.failed
    assert "ollama_store_dir: ollama_store_dir '/srv/models 100%h' contains whitespace" in run.out


def test_the_store_s_old_names_are_honoured_and_named_for_renaming(tmp_path: Path):
    """An inventory still on ollama_models_dir(_mode) keeps its store (the unit, the drop-in
    and the later plays get it as ollama_store_dir) and is told what to rename."""
    show = {
        "name": "Show the store the role uses",
        "ansible.builtin.debug": {
            "msg": "store={{ ollama_store_dir }} mode={{ ollama_store_dir_mode }}"
        },
    }
    old = {"ollama_models_dir": "/srv/old-store", "ollama_models_dir_mode": "0770"}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", {**PINNED, **old}, after=[show])
    assert not run.failed, run.out
    out = " ".join(run.out.split())  # the callback wraps long messages
    assert "store=/srv/old-store mode=0770" in out
    assert "DEPRECATED: ollama_models_dir is the old name of ollama_store_dir" in out
    assert "This run uses its value, /srv/old-store, as ollama_store_dir" in out
    assert "DEPRECATED: ollama_models_dir_mode is the old name of ollama_store_dir_mode" in out


def test_the_old_store_name_goes_through_the_same_checks(tmp_path: Path):
    run = run_role_tasks(
        tmp_path, "ollama", "settings.yml", {**PINNED, "ollama_models_dir": "/srv/old store"}
    )
    assert run.failed
    assert "DEPRECATED: ollama_models_dir" in run.out
    assert "ollama_store_dir: ollama_store_dir '/srv/old store' contains whitespace" in run.out


def test_no_deprecation_line_without_an_old_name(tmp_path: Path):
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", {**PINNED})
    assert not run.failed, run.out
    assert "DEPRECATED" not in run.out


def test_percent_specifiers_in_paths_are_escaped_in_the_unit(tmp_path: Path):
    run = render_template(
        tmp_path,
        "ollama",
        UNIT,
        {"ollama_store_dir": "/srv/models-100%h", "ollama_home": "/srv/o"},
    )
    assert run.rendered is not None, run.out
    assert "ReadWritePaths=/srv/o /srv/models-100%%h\n" in run.rendered
    assert 'Environment="HOME=/srv/o"\n' in run.rendered


def test_the_unit_refuses_a_user_name_that_would_add_arguments(tmp_path: Path):
    run = render_template(tmp_path, "ollama", UNIT, {"ollama_user": "root\nExecStartPre=/bin/sh"})
    assert run.rendered is None
    assert "is not a valid user or group name" in run.out


def test_persistenced_user_cannot_add_arguments(tmp_path: Path):
    run = render_template(
        tmp_path,
        "nvidia_driver",
        "etc/systemd/system/nvidia-persistenced.service.d/localllm-fleet.conf.j2",
        {"nvidia_driver_persistenced_user": "root --no-persistence-mode"},
    )
    assert run.rendered is None
    assert "is not a valid user or group name" in run.out


def test_a_quantized_kv_cache_without_flash_attention_is_refused(tmp_path: Path):
    variables = {**PINNED, "ollama_kv_cache_type": "q8_0", "ollama_flash_attention": False}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", variables)
    assert run.failed
    assert "ollama_kv_cache_type q8_0 needs flash attention" in run.out
    assert "Settings that a systemd unit cannot hold" not in run.out
    assert "Nothing was changed" in run.out


# Two refusals at once: a quantized KV cache with flash attention off, and a plain-HTTP
# release without a pinned checksum.
QUANTIZED_KV_PLAIN_HTTP = {
    "ollama_kv_cache_type": "q4_0",
    "ollama_flash_attention": False,
    "ollama_download_base_url": "http://mirror:8080/ollama",
}


def test_every_settings_problem_is_named_in_one_refusal(tmp_path: Path):
    """The unit, KV cache and release-source checks are one task: its message names each
    problem found, with its own remedy, not only the first."""
    variables = {"ollama_store_dir": "/srv/models 100%h", **QUANTIZED_KV_PLAIN_HTTP}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", variables)
    assert run.failed
    assert "ollama_store_dir: ollama_store_dir '/srv/models 100%h' contains whitespace" in run.out
    assert "ollama_kv_cache_type q4_0 needs flash attention" in run.out
    assert "ollama_download_base_url (http://mirror:8080/ollama) is plain HTTP" in run.out


def test_removing_ollama_does_not_check_what_it_would_install(tmp_path: Path):
    variables = {"ollama_state": "absent", **QUANTIZED_KV_PLAIN_HTTP}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", variables)
    assert not run.failed, run.out
    assert "WARNING: ollama_allow_unverified_http" not in run.out


def test_the_default_settings_pass(tmp_path: Path):
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", PINNED)
    assert not run.failed, run.out
    # nothing to warn about: the check says nothing
    assert "not tested in CI" not in run.out and "WARNING" not in run.out


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (
            {**DEBIAN_12, "service_mgr": "sysvinit"},
            "localhost is managed by sysvinit, not systemd; the role runs Ollama as a systemd"
            " service.",
        ),
        (
            {**DEBIAN_12, "distribution": "Alpine", "distribution_major_version": "3"},
            "Alpine 3 is not supported. Tested: Debian 12",
        ),
    ],
)
def test_a_host_the_role_cannot_serve_is_refused_with_the_settings_problems(
    tmp_path: Path, facts, message
):
    """The platform and the settings are one check: a wrong host and a wrong setting are
    named in the same refusal."""
    variables = {"ansible_facts": facts, "ollama_store_dir": "/srv/models 100%h", **PINNED}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", variables)
    assert run.failed
    text = " ".join(run.out.split())
    assert message in text
    assert "ollama_store_dir '/srv/models 100%h' contains whitespace" in text
    assert "Nothing was changed." in text


def test_an_untested_platform_is_served_with_a_warning(tmp_path: Path):
    facts = {**DEBIAN_12, "distribution": "Rocky", "distribution_major_version": "9"}
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", {"ansible_facts": facts, **PINNED})
    assert not run.failed, run.out
    assert "Rocky 9: supported from upstream" in " ".join(run.out.split())


# ---------------------------------------------------------------------------- trust


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"ollama_download_base_url": "http://mirror:8080/ollama"}, True),
        ({"ollama_download_base_url": "http://mirror:8080/ollama", **PINNED}, False),
        ({"ollama_download_base_url": "https://mirror.example/ollama"}, False),
        (
            {
                "ollama_download_base_url": "http://mirror:8080/ollama",
                "ollama_local_artifact": "/a",
            },
            False,
        ),
    ],
)
def test_an_unauthenticated_release_source_is_refused(tmp_path: Path, variables, refused):
    run = run_role_tasks(tmp_path, "ollama", "settings.yml", variables)
    assert run.failed is refused, run.out
    if refused:
        assert "ollama_download_base_url (http://mirror:8080/ollama) is plain HTTP" in run.out
        assert "ollama_allow_unverified_http: true" in run.out


def test_the_operator_may_accept_it_and_is_warned(tmp_path: Path):
    run = run_role_tasks(
        tmp_path,
        "ollama",
        "settings.yml",
        {
            "ollama_download_base_url": "http://fleet:s3cret@mirror:8080/ollama",
            "ollama_allow_unverified_http": True,
        },
    )
    assert not run.failed, run.out
    assert "WARNING: ollama_allow_unverified_http is set" in run.out
    assert "http://***@mirror:8080/ollama" in run.out
    assert "s3cret" not in run.out


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"_nvidia_driver_family": "apt"}, True),
        ({"_nvidia_driver_family": "apt", "nvidia_driver_cuda_keyring_checksum": "ab" * 32}, False),
        ({"_nvidia_driver_family": "dnf", "nvidia_driver_cuda_keyring_checksum": "ab" * 32}, True),
        ({"_nvidia_driver_family": "apt", "nvidia_driver_source": "distro"}, False),
        ({"_nvidia_driver_family": "apt", "nvidia_driver_allow_unverified_http": True}, False),
    ],
)
def test_an_unauthenticated_driver_repository_key_is_refused(tmp_path: Path, variables, refused):
    run = run_role_tasks(
        tmp_path,
        "nvidia_driver",
        "settings.yml",
        {"nvidia_driver_cuda_repo_base_url": "http://mirror:8080/compute/cuda/repos", **variables},
    )
    assert run.failed is refused, run.out
    if refused:
        assert "nvidia_driver_cuda_repo_base_url (http://mirror:8080/compute/cuda/repos)" in run.out
        assert "nvidia_driver_allow_unverified_http: true" in run.out
    if variables.get("nvidia_driver_allow_unverified_http"):
        assert "WARNING: nvidia_driver_allow_unverified_http is set" in run.out
    else:
        # The check that carries the warning says nothing when there is none to give.
        assert "WARNING" not in run.out


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"nvidia_driver_branch": "57"},
            'nvidia_driver_branch must be a branch number such as "570" (is 57)',
        ),
        (
            {"nvidia_driver_version": "570.1", "nvidia_driver_branch": "550"},
            'a release of that branch such as "550.133.20" (is "570.1")',
        ),
        (
            {"_nvidia_driver_family": "dnf", "nvidia_driver_source": "distro"},
            "nvidia_driver_source cuda or distro (is distro), and cuda on",
        ),
        (
            {"nvidia_driver_persistenced_user": "root --no-persistence-mode"},
            "'root --no-persistence-mode' is not a valid user or group name",
        ),
    ],
)
def test_bad_driver_settings_are_refused_with_what_is_wrong(tmp_path: Path, variables, message):
    """The settings checks share one step; the message still names only what is wrong."""
    run = run_role_tasks(
        tmp_path,
        "nvidia_driver",
        "settings.yml",
        {"_nvidia_driver_family": "apt", "nvidia_driver_source": "distro", **variables},
    )
    assert run.failed, run.out
    text = " ".join(run.out.split())
    assert message in text
    assert "plain HTTP" not in text
    assert "Nothing was changed." in text


def test_every_driver_settings_problem_is_named_in_one_refusal(tmp_path: Path):
    """A bad branch, a persistenced user that would add arguments and an unpinned plain-HTTP
    repository at once: each is named with its own remedy, in one message that says once, at
    its end, that nothing was changed."""
    variables = {
        "_nvidia_driver_family": "apt",
        "nvidia_driver_branch": "57",
        "nvidia_driver_persistenced_user": "root --no-persistence-mode",
        "nvidia_driver_cuda_repo_base_url": "http://mirror:8080/compute/cuda/repos",
    }
    run = run_role_tasks(tmp_path, "nvidia_driver", "settings.yml", variables)
    assert run.failed, run.out
    text = " ".join(run.out.split())
    assert 'nvidia_driver_branch must be a branch number such as "570" (is 57)' in text
    assert (
        "whose repositories carry no NVIDIA driver. nvidia_driver_persistenced_user: "
        "nvidia_driver_persistenced_user 'root --no-persistence-mode' is not a valid user"
    ) in text
    assert (
        "at most 31 characters). nvidia_driver_cuda_repo_base_url "
        "(http://mirror:8080/compute/cuda/repos) is plain HTTP"
    ) in text
    assert "nvidia_driver_allow_unverified_http: true. Nothing was changed." in text


# The GPU host's plan (preflight.yml) on an 8-GPU HGX H100 board with its NVSwitch fabric,
# described as the gpu_tier inventory would (so nothing is probed), serving Ollama 0.32.15
# (branch 550 or newer on Hopper). The distribution's facts are extra vars, which take
# precedence over what the role's fact gathering finds on the controller: the checks see a
# Debian 12 container (no Fabric Manager in its archive; no Secure Boot probe) wherever the
# test runs.
HGX_H100_ON_DEBIAN_12 = {
    "ansible_facts": {
        "distribution": "Debian",
        "distribution_version": "12.8",
        "distribution_major_version": "12",
        "os_family": "Debian",
        "architecture": "x86_64",
        "virtualization_role": "guest",
        "virtualization_type": "docker",
    },
    "gpu_devices": [
        {"index": i, "name": "NVIDIA H100 80GB HBM3", "architecture": "hopper"} for i in range(8)
    ],
    "gpu_nvswitch": True,
    "gpu_probe_status": "gpu",
    "ollama_version": "0.32.15",
}
FLOOR = "nvidia_driver_branch 535 is older than Ollama 0.32.15 needs on localhost's GPUs (hopper)"
FABRIC_MANAGER = "localhost needs Fabric Manager (NVSwitch fabric), which Debian's archive"


@pytest.mark.parametrize(
    ("variables", "message", "absent"),
    [
        ({"nvidia_driver_branch": "535"}, FLOOR, FABRIC_MANAGER),
        ({"nvidia_driver_source": "distro"}, FABRIC_MANAGER, "is older than Ollama"),
        ({}, None, "Nothing was changed."),
    ],
)
def test_the_gpu_plan_is_refused_with_what_is_wrong(tmp_path: Path, variables, message, absent):
    run = run_role_tasks(
        tmp_path, "nvidia_driver", "preflight.yml", {**HGX_H100_ON_DEBIAN_12, **variables}
    )
    text = " ".join(run.out.split())
    assert run.failed is (message is not None), run.out
    if message:
        assert message in text
        assert "Nothing was changed." in text
    assert absent not in text


def test_every_gpu_plan_problem_is_named_in_one_refusal(tmp_path: Path):
    """Branch 535 from Debian's archive is both below Ollama's floor and without Fabric
    Manager: the one refusal names both, each with its own remedy, then says once that
    nothing was changed."""
    variables = {
        **HGX_H100_ON_DEBIAN_12,
        "nvidia_driver_branch": "535",
        "nvidia_driver_source": "distro",
    }
    run = run_role_tasks(tmp_path, "nvidia_driver", "preflight.yml", variables)
    assert run.failed, run.out
    text = " ".join(run.out.split())
    assert f"{FLOOR}: 550 or newer" in text
    assert (
        "use nvidia_driver_source: cuda (NVIDIA's CUDA repository for debian12, or its internal "
        f"mirror) for a newer branch. {FABRIC_MANAGER} does not package: set "
        "nvidia_driver_source: cuda"
    ) in text
    assert "falls back to the CPU. Nothing was changed." in text


def test_a_host_without_nvidia_gpus_is_told_why_there_is_nothing_to_do(tmp_path: Path):
    variables = {
        **HGX_H100_ON_DEBIAN_12,
        "gpu_devices": [],
        "gpu_nvswitch": False,
        "gpu_probe_status": "cpu",
        "gpu_tier_reason": "no NVIDIA GPU on the PCI bus",
    }
    run = run_role_tasks(tmp_path, "nvidia_driver", "preflight.yml", variables)
    assert not run.failed, run.out
    text = " ".join(run.out.split())
    assert (
        "nvidia_driver: nothing to do on localhost: gpu_tier found no NVIDIA GPU"
        " (no NVIDIA GPU on the PCI bus)"
    ) in text
    assert "Nothing was changed." not in text


def test_a_host_that_cannot_tell_whether_it_has_gpus_is_refused(tmp_path: Path):
    """No GPUs from the inventory, no nvidia-smi, and a PCI listing that fails: the role
    cannot tell, and says what to install instead of guessing "no GPU"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lspci = bin_dir / "lspci"
    lspci.write_text("#!/bin/sh\necho 'pcilib: Cannot open /proc/bus/pci' >&2\nexit 1\n")
    lspci.chmod(0o755)
    facts = {"ansible_facts": HGX_H100_ON_DEBIAN_12["ansible_facts"], "ollama_version": "0.32.15"}
    run = run_role_tasks(
        tmp_path,
        "nvidia_driver",
        "preflight.yml",
        facts,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.failed, run.out
    text = " ".join(run.out.split())
    assert "cannot tell whether localhost has NVIDIA GPUs: nvidia-smi says" in text, text[-3000:]
    assert "install pciutils" in text


def test_unauthenticated_model_bases_are_refused_then_accepted_with_a_warning(tmp_path: Path):
    plan = [
        {
            "name": "qwq:32b",
            "source": "gguf",
            "gguf_url": "http://m:8080/models/q.gguf",
            "gguf_sha256": "",
        },
        {
            "name": "deepseek-r1:1.5b",
            "source": "registry",
            "pull": "mirror:8080/library/deepseek-r1:1.5b",
            "insecure": True,
        },
        {
            "name": "gemma3:27b",
            "source": "gguf",
            "gguf_url": "http://m/g.gguf",
            "gguf_sha256": "ab" * 32,
        },
    ]
    refused = run_role_tasks(tmp_path, "ollama_models", "trust.yml", {"__ollama_models_plan": plan})
    assert refused.failed
    assert (
        "qwq:32b: GGUF http://m:8080/models/q.gguf with its checksum read from the same server"
        in refused.out
    )
    assert (
        "deepseek-r1:1.5b: registry mirror:8080/library/deepseek-r1:1.5b without TLS" in refused.out
    )
    assert "gemma3" not in refused.out
    accepted = run_role_tasks(
        tmp_path,
        "ollama_models",
        "trust.yml",
        {"__ollama_models_plan": plan, "ollama_models_allow_unverified_http": True},
    )
    assert not accepted.failed, accepted.out
    assert "WARNING: ollama_models_allow_unverified_http is set" in accepted.out
    pinned_only = run_role_tasks(
        tmp_path, "ollama_models", "trust.yml", {"__ollama_models_plan": plan[2:]}
    )
    assert not pinned_only.failed, pinned_only.out
    assert "WARNING" not in pinned_only.out
