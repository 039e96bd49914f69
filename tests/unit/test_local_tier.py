"""Pull mode's self-classification (module_utils.local_tier, module gpu_tier_facts): the same
tiers, variables and groups as the gpu_tier inventory plugin, from the same probe output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab_hardware import ANSIBLE, lab_env, run_module

from ansible_collections.localllm.fleet.plugins.module_utils import local_tier
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy import (
    FitRefused,
    PolicyError,
)

PROBES = Path(__file__).resolve().parent / "fixtures" / "nvidia" / "probe"
TIER_FACTS = "localllm.fleet.gpu_tier_facts"
LAB_PROFILES = ("h100x8", "rtx4090", "rtx4090x2", "t4", "cpu", "broken", "nodriver")


def probe(profile: str) -> str:
    return (PROBES / f"lab-{profile}.txt").read_text()


@pytest.mark.parametrize(
    ("profile", "tier", "groups"),
    [
        ("h100x8", "frontier", ["gpu", "tier_frontier"]),
        ("rtx4090", "medium", ["gpu", "tier_medium"]),
        ("cpu", "tiny", ["cpu", "tier_tiny"]),
        ("nodriver", None, ["gpu", "gpu_driver_needed"]),
    ],
)
def test_each_lab_profile_gets_its_tier(profile, tier, groups):
    plan = local_tier.local_plan(probe(profile))
    assert plan["tier"] == tier
    assert plan["groups"] == groups
    assert plan["host_vars"]["gpu_tier"] == tier


def test_a_cpu_host_gets_the_cpu_tier_model_and_its_settings():
    plan = local_tier.local_plan(probe("cpu"))
    variables = plan["host_vars"]
    assert variables["gpu_probe_status"] == "cpu"
    assert [m["name"] for m in variables["ollama_models"]] == ["deepseek-r1:1.5b"]
    # The ollama role's drop-in reads these: they must be there, as the plugin sets them.
    for name in ("gpu_tier_num_parallel", "gpu_tier_context_length", "gpu_tier_kv_cache_type"):
        assert variables[name] is not None, name


def test_overrides_and_policy_steer_as_in_the_inventory():
    plan = local_tier.local_plan(
        probe("rtx4090"), {"tier_models": {"medium": ["qwq:32b"]}}, {"max_context": 4096}
    )
    assert [m["name"] for m in plan["host_vars"]["ollama_models"]] == ["qwq:32b"]
    assert plan["host_vars"]["gpu_tier_num_ctx"] == 4096


def test_an_unreadable_probe_gives_no_tier_and_no_models():
    plan = local_tier.local_plan("Welcome to the host!\n")
    assert plan["unreadable"] is True
    assert plan["tier"] is None
    # None, not []: the models role must not read "no models" and prune.
    assert plan["host_vars"]["ollama_models"] is None
    assert "probe output unreadable" in plan["reason"]


def test_a_pin_is_kept_on_an_unreadable_host():
    plan = local_tier.local_plan("garbage\n", overrides={"tier": "tiny"})
    assert plan["tier"] == "tiny"
    assert "gpu_unreachable" in plan["groups"]


def test_a_pin_the_host_cannot_hold_is_refused_with_the_arithmetic():
    with pytest.raises(FitRefused, match="gpu_tier_pin"):
        local_tier.local_plan(probe("rtx4090"), overrides={"tier": "frontier"})


def test_a_bad_policy_names_the_option():
    with pytest.raises(PolicyError, match="kv_cache_type"):
        local_tier.local_plan(probe("cpu"), {"kv_cache_type": "f64"})


def test_an_old_driver_for_the_ollama_release_gives_no_tier():
    # The lab's T4 has driver 535; the pinned release needs 550.
    plan = local_tier.local_plan(probe("t4"))
    assert plan["tier"] is None
    assert "gpu_driver_needed" in plan["groups"]


def test_probe_path_adds_the_sbin_directories_once():
    assert local_tier.probe_path("/usr/bin:/usr/sbin") == (
        "/usr/bin:/usr/sbin:/usr/local/sbin:/usr/local/bin:/sbin"
    )
    assert local_tier.probe_path(None).startswith("/usr/bin:/bin:")


@pytest.mark.controller
def test_same_variables_and_groups_as_the_inventory_plugin(tmp_path):
    import yaml
    from ansible.inventory.data import InventoryData
    from ansible.inventory.manager import _InventoryDataWrapper
    from ansible.parsing.dataloader import DataLoader
    from gpu_tier_testing import FakeProber, new_plugin

    config = tmp_path / "fleet.gpu_tier.yml"
    config.write_text(
        yaml.safe_dump(
            {"plugin": "localllm.fleet.gpu_tier", "hosts": [f"host-{p}" for p in LAB_PROFILES]}
        )
    )
    plugin = new_plugin()
    plugin.prober = FakeProber({f"host-{p}": probe(p) for p in LAB_PROFILES})
    data = InventoryData()
    data.current_source = str(config)
    wrapper = _InventoryDataWrapper(data, target_plugin=plugin, origin=None)
    plugin.parse(wrapper, DataLoader(), str(config), cache=False)
    for profile in LAB_PROFILES:
        plan = local_tier.local_plan(probe(profile))
        host = data.get_host(f"host-{profile}")
        plugin_vars = {k: host.get_vars()[k] for k in plan["host_vars"]}
        assert json.loads(json.dumps(plugin_vars)) == json.loads(json.dumps(plan["host_vars"]))
        plugin_groups = {g.name for g in host.get_groups()} - {"all", "ungrouped"}
        assert plugin_groups == set(plan["groups"]), profile


@pytest.mark.controller
@pytest.mark.skipif(not ANSIBLE.exists(), reason="needs the project venv (scripts/setup)")
@pytest.mark.parametrize(("profile", "tier"), [("cpu", "tiny"), ("rtx4090", "medium")])
def test_the_module_probes_this_host(tmp_path, profile, tier):
    rc, result = run_module(lab_env(tmp_path, profile), TIER_FACTS, "")
    assert rc == 0, result
    assert result["changed"] is False
    assert result["tier"] == tier
    assert f"tier_{tier}" in result["groups"]


@pytest.mark.controller
@pytest.mark.skipif(not ANSIBLE.exists(), reason="needs the project venv (scripts/setup)")
def test_the_module_fails_on_a_pin_that_does_not_fit(tmp_path):
    rc, result = run_module(lab_env(tmp_path, "cpu"), TIER_FACTS, "pin=frontier")
    assert rc != 0
    assert "gpu_tier_pin" in result["msg"]
