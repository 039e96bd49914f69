"""One decision, every setting: what gpu_tier decides for a host reaches the ollama role's
drop-in, the Modelfiles and the preload unit unchanged (nobody keeps them in step by hand).

The roles' defaults and vars are templated here with the host variables gpu_tier sets, the
way Ansible templates them for that host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.localllm.fleet.plugins.module_utils import models_plan
from ansible_collections.localllm.fleet.plugins.module_utils import nvidia_smi as ns
from ansible_collections.localllm.fleet.plugins.module_utils import tier_policy as tp

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "tests" / "unit" / "fixtures" / "nvidia" / "probe"


def trusted(value: Any) -> Any:
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def role_variables(role: str, host_vars: dict[str, Any]) -> Templar:
    variables: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        variables.update(yaml.safe_load((ROOT / "roles" / role / part / "main.yml").read_text()))
    variables = trusted(variables)
    # What the roles' vars read from the ollama role's defaults with a file lookup (this
    # bare Templar has no lookup plugins), as the lookup returns them: untrusted.
    ollama_defaults = yaml.safe_load((ROOT / "roles/ollama/defaults/main.yml").read_text())
    variables[f"_{role}_ollama"] = ollama_defaults
    variables.update(host_vars)
    return Templar(loader=DataLoader(), variables=variables)


def plan_of(profile: str, policy: tp.Policy = tp.DEFAULT_POLICY) -> tp.HostPlan:
    return tp.classify(ns.parse_probe_output((PROBES / f"lab-{profile}.txt").read_text()), policy)


@pytest.mark.parametrize(
    ("profile", "policy"),
    [
        ("h100x8", {}),
        ("rtx4090", {}),
        ("rtx4090", {"kv_cache_type": "q8_0", "num_parallel": 2}),
        ("rtx4090x2", {"tier_models": {"large": ["deepseek-r1:70b"]}}),
        ("cpu", {}),
    ],
)
def test_the_drop_in_carries_the_decision(profile, policy):
    plan = plan_of(profile, tp.policy_from_config(policy))
    decision = plan.decision
    templar = role_variables("ollama", plan.to_vars())
    environment = templar.template(templar.available_variables["_ollama_environment"])
    assert int(environment["OLLAMA_CONTEXT_LENGTH"]) == decision.context_length
    assert int(environment["OLLAMA_NUM_PARALLEL"]) == decision.num_parallel
    assert environment["OLLAMA_KV_CACHE_TYPE"] == decision.kv_cache_type
    assert int(environment["OLLAMA_MAX_LOADED_MODELS"]) == len(decision.models)
    # every other model unloads after the keep-alive; the tier's is kept by the preload unit
    assert environment["OLLAMA_KEEP_ALIVE"] == "5m"
    # the context Ollama falls back to is one the fit accounted for, never its VRAM default
    assert decision.context_length <= min(m.num_ctx for m in decision.models)


def test_the_h100x8_drop_in_context_is_the_fits_num_ctx():
    plan = plan_of("h100x8")
    templar = role_variables("ollama", plan.to_vars())
    environment = templar.template(templar.available_variables["_ollama_environment"])
    assert int(environment["OLLAMA_CONTEXT_LENGTH"]) == plan.decision.num_ctx == 32768
    assert environment["OLLAMA_KV_CACHE_TYPE"] == "f16"  # the 671b has no flash attention


def test_without_gpu_tier_ollamas_defaults_stay():
    templar = role_variables("ollama", {})
    environment = templar.template(templar.available_variables["_ollama_environment"])
    for name in (
        "OLLAMA_CONTEXT_LENGTH",
        "OLLAMA_NUM_PARALLEL",
        "OLLAMA_KV_CACHE_TYPE",
        "OLLAMA_MAX_LOADED_MODELS",
    ):
        assert environment[name] is None, name


def test_the_modelfiles_and_the_preload_unit_take_the_same_models_and_contexts():
    plan = plan_of("rtx4090x2")
    host_vars = plan.to_vars()
    planned = models_plan.plan_models(host_vars["ollama_models"], defaults={"namespace": "fleet"})
    assert [(p["target"], p["num_ctx"]) for p in planned] == [
        (f"fleet/{m.name}", m.num_ctx) for m in plan.decision.models
    ]
    templar = role_variables(
        "ollama_models",
        {
            **host_vars,
            "__ollama_models_kept": planned[0]["target"],
            "ansible_managed": "Managed",
            # Derived with a collection filter this bare Templar lacks (test_ollama_port.py
            # runs the derivation through Ansible).
            "ollama_models_api_url": "http://127.0.0.1:11434",
        },
    )
    unit = (
        ROOT / "roles/ollama_models/templates/etc/systemd/system/ollama-preload.service.j2"
    ).read_text()
    rendered = templar.template(trust_as_template(unit))
    assert 'run fleet/deepseek-r1:70b --keepalive=-1m ""' in rendered
    assert "BindsTo=ollama.service" in rendered and "WantedBy=ollama.service" in rendered


def test_the_operators_extra_models_raise_the_loaded_model_count():
    plan = plan_of("h100x8")
    extras = {"ollama_models_host_extra": [{"name": "gemma3:27b"}], "ollama_models_extra": []}
    templar = role_variables("ollama", {**plan.to_vars(), **extras})
    environment = templar.template(templar.available_variables["_ollama_environment"])
    assert int(environment["OLLAMA_MAX_LOADED_MODELS"]) == 2
