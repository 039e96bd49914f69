"""The gateway's plan: which names are public, which hosts serve them, who is left out and
why, the fallback chains, the pools and LiteLLM's configuration."""

from __future__ import annotations

import pytest

from ansible_collections.localllm.fleet.plugins.filter import fleet_gateway as filters
from ansible_collections.localllm.fleet.plugins.module_utils import gateway_plan as gp

MODEL_DEFAULTS = {
    "ollama_models": [],
    "ollama_models_extra": [],
    "ollama_models_group_extra": [],
    "ollama_models_host_extra": [],
    "ollama_models_overrides": {},
    "ollama_models_namespace": "fleet",
    "ollama_models_source": "registry",
}


def tier(*names: str) -> list[dict]:
    """gpu_tier's ollama_models: mappings with at least a name."""
    return [{"name": name, "family": name.split(":")[0], "num_ctx": 8192} for name in names]


def fleet(**hosts: dict) -> dict:
    return {name: {"gpu_tier": "t", "fleet_host_address": f"10.0.0.{i + 1}", **v}
            for i, (name, v) in enumerate(hosts.items())}  # fmt: skip


def plan(hostvars: dict, unreachable=(), **settings) -> dict:
    return gp.gateway_plan(list(hostvars), hostvars, list(unreachable), MODEL_DEFAULTS, settings)


def by_name(result: dict) -> dict:
    return {m["name"]: m for m in result["models"]}


def test_registered_names_are_public_and_list_every_host_serving_them():
    result = plan(
        fleet(
            a={"ollama_models": tier("deepseek-r1:32b")},
            b={"ollama_models": tier("deepseek-r1:32b"), "ollama_edge_port": 12443},
        )
    )
    model = by_name(result)["fleet/deepseek-r1:32b"]
    assert model["hosts"] == ["a", "b"]
    pool = next(p for p in result["pools"] if p["target"] == "fleet/deepseek-r1:32b")
    assert [(s["host"], s["endpoint"]) for s in pool["servers"]] == [
        ("a", "10.0.0.1:11443"),
        ("b", "10.0.0.2:12443"),
    ]
    assert model["port"] == pool["port"] == 11500


def test_the_alias_names_the_largest_size_served():
    result = plan(
        fleet(
            big={"ollama_models": tier("deepseek-r1:671b")},
            mid={"ollama_models": tier("deepseek-r1:70b")},
            small={"ollama_models": tier("deepseek-r1:1.5b", "gemma3:4b")},
        )
    )
    models = by_name(result)
    assert models["deepseek-r1"]["target"] == "fleet/deepseek-r1:671b"
    assert models["deepseek-r1"]["alias"] is True
    assert models["deepseek-r1"]["pool"] == models["fleet/deepseek-r1:671b"]["pool"]
    assert models["gemma3"]["target"] == "fleet/gemma3:4b"
    assert result["public_names"] == [
        "deepseek-r1",
        "fleet/deepseek-r1:1.5b",
        "fleet/deepseek-r1:671b",
        "fleet/deepseek-r1:70b",
        "fleet/gemma3:4b",
        "gemma3",
    ]


def test_sizes_compare_as_numbers_not_text():
    assert gp.parameter_size("1.5b") == 1.5
    assert gp.parameter_size("270m") == 0.27
    assert gp.parameter_size("27b-it-qat") == 27
    assert gp.parameter_size("latest") is None
    aliases = gp.default_aliases(["fleet/m:9b", "fleet/m:10b", "fleet/m:latest"])
    assert aliases == {"m": "fleet/m:10b"}


def test_each_size_falls_back_to_the_smaller_ones_largest_first():
    result = plan(
        fleet(
            big={"ollama_models": tier("deepseek-r1:671b")},
            mid={"ollama_models": tier("deepseek-r1:70b", "deepseek-r1:1.5b")},
        )
    )
    models = by_name(result)
    assert models["fleet/deepseek-r1:671b"]["fallbacks"] == [
        "fleet/deepseek-r1:70b",
        "fleet/deepseek-r1:1.5b",
    ]
    assert models["deepseek-r1"]["fallbacks"] == models["fleet/deepseek-r1:671b"]["fallbacks"]
    assert models["fleet/deepseek-r1:1.5b"]["fallbacks"] == []


def test_operators_replace_or_remove_a_chain():
    hosts = fleet(
        big={"ollama_models": tier("deepseek-r1:671b")},
        other={"ollama_models": tier("qwq:32b", "deepseek-r1:70b")},
    )
    result = plan(hosts, fallbacks={"fleet/deepseek-r1:671b": ["fleet/qwq:32b"]})
    assert by_name(result)["fleet/deepseek-r1:671b"]["fallbacks"] == ["fleet/qwq:32b"]
    result = plan(hosts, fallbacks={"fleet/deepseek-r1:671b": []})
    assert by_name(result)["fleet/deepseek-r1:671b"]["fallbacks"] == []
    result = plan(hosts, fallbacks_by_size=False)
    assert all(m["fallbacks"] == [] for m in result["models"])


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        ({"fleet/nope:1b": []}, "'fleet/nope:1b' is not a model name of the fleet"),
        ({"fleet/qwq:32b": ["fleet/nope:1b"]}, "'fleet/nope:1b' is not a model name"),
        ({"fleet/qwq:32b": ["fleet/qwq:32b"]}, "names itself"),
        ({"fleet/qwq:32b": "fleet/deepseek-r1:70b"}, "must be a list"),
    ],
)
def test_a_bad_fallback_is_refused_with_its_name(fallbacks, message):
    hosts = fleet(a={"ollama_models": tier("qwq:32b", "deepseek-r1:70b")})
    with pytest.raises(gp.GatewayPlanError, match=message):
        plan(hosts, fallbacks=fallbacks)


def test_hosts_without_a_usable_tier_are_left_out_with_their_reason():
    hosts = fleet(
        good={"ollama_models": tier("deepseek-r1:32b")},
        dark={"ollama_models": None, "gpu_tier_reason": "ssh: connection refused"},
        notier={"gpu_tier": None, "ollama_models": None, "gpu_tier_reason": "driver needed"},
    )
    result = plan(hosts, unreachable=["dark"])
    lines = result["excluded_lines"]
    assert "dark: gpu_tier could not read it (gpu_unreachable): ssh: connection refused" in lines
    assert "notier: no GPU tier: driver needed" in lines
    assert by_name(result)["fleet/deepseek-r1:32b"]["hosts"] == ["good"]
    assert result["complete"] is False


def test_a_failed_smoke_test_leaves_that_model_out_on_that_host_only():
    failed = {"model": "fleet/gemma3:4b", "ok": False, "error": "model 'x' not found"}
    passed = {
        "model": "fleet/deepseek-r1:32b",
        "ok": True,
        "content": "ok",
        "thinking": "t",
        "reasoning": True,
    }
    hosts = fleet(
        a={"ollama_models": tier("deepseek-r1:32b", "gemma3:4b"),
           "ollama_models_smoke_results": [passed, failed]},
        b={"ollama_models": tier("gemma3:4b")},
    )  # fmt: skip
    result = plan(hosts)
    assert by_name(result)["fleet/gemma3:4b"]["hosts"] == ["b"]
    assert by_name(result)["fleet/deepseek-r1:32b"]["hosts"] == ["a"]
    assert result["excluded_lines"] == [
        "a (fleet/gemma3:4b): its smoke test failed: model 'x' not found"
    ]
    assert result["complete"] is True


def test_a_host_whose_every_model_failed_is_left_out_whole():
    hosts = fleet(
        a={"ollama_models": tier("deepseek-r1:32b"),
           "ollama_models_smoke_results": [
               {"model": "fleet/deepseek-r1:32b", "ok": True, "content": "x", "reasoning": True,
                "thinking": ""}]},
    )  # fmt: skip
    result = plan(hosts)
    assert result["models"] == []
    assert result["excluded_lines"] == [
        "a: fleet/deepseek-r1:32b: its smoke test failed: no thinking from a reasoning model"
    ]
    # A model that failed is still declared: a client may keep it in its list.
    assert result["declared_names"] == ["fleet/deepseek-r1:32b"]


def test_names_come_from_the_models_plan_extras_and_namespace_included():
    hosts = fleet(
        a={"ollama_models": ["deepseek-r1:32b"],
           "ollama_models_host_extra": [{"name": "qwq:32b"}],
           "ollama_models_namespace": "acme"},
        b={"ollama_models": tier("gemma3:4b"),
           "ollama_models_overrides": {"gemma3:4b": {"target": "team/gemma"}}},
    )  # fmt: skip
    assert plan(hosts)["public_names"] == [
        "acme/deepseek-r1:32b",
        "acme/qwq:32b",
        "deepseek-r1",
        "gemma",
        "qwq",
        "team/gemma",
    ]


def test_a_host_whose_plan_fails_is_left_out_and_the_rest_served():
    hosts = fleet(
        bad={"ollama_models": [{"name": "m:1b", "source": "nowhere"}]},
        good={"ollama_models": tier("gemma3:4b")},
    )
    result = plan(hosts)
    assert result["excluded_lines"][0].startswith("bad: its model plan fails: model 'm:1b'")
    assert result["public_names"] == ["fleet/gemma3:4b", "gemma3"]


def test_extra_aliases_must_point_at_a_declared_model_and_not_hide_one():
    hosts = fleet(a={"ollama_models": tier("deepseek-r1:32b", "gemma3:4b")})
    result = plan(hosts, extra_aliases={"reasoning": "fleet/deepseek-r1:32b"})
    assert by_name(result)["reasoning"]["target"] == "fleet/deepseek-r1:32b"
    with pytest.raises(gp.GatewayPlanError, match="'chat' points at 'fleet/x:1b'"):
        plan(hosts, extra_aliases={"chat": "fleet/x:1b"})
    with pytest.raises(gp.GatewayPlanError, match="already the name of a model"):
        plan(hosts, extra_aliases={"fleet/gemma3:4b": "fleet/deepseek-r1:32b"})


def test_an_ipv6_edge_is_bracketed_and_a_bad_port_refused():
    hosts = fleet(a={"ollama_models": tier("gemma3:4b"), "fleet_host_address": "fd00::5"})
    assert plan(hosts)["pools"][0]["servers"][0]["endpoint"] == "[fd00::5]:11443"
    hosts = fleet(a={"ollama_models": tier("gemma3:4b"), "ollama_edge_port": "https"})
    with pytest.raises(gp.GatewayPlanError, match="ollama_edge_port 'https' is not a TCP port"):
        plan(hosts)


def test_the_address_falls_back_to_ansible_host_then_the_name():
    hostvars = {
        "a": {"ollama_models": tier("gemma3:4b"), "ansible_host": "192.0.2.7"},
        "b": {"ollama_models": tier("gemma3:4b")},
    }
    servers = plan(hostvars)["pools"][0]["servers"]
    assert [s["address"] for s in servers] == ["192.0.2.7", "b"]


def test_litellm_config_points_every_name_at_its_pool_through_ollama_chat():
    hosts = fleet(
        big={"ollama_models": tier("deepseek-r1:671b")},
        mid={"ollama_models": tier("deepseek-r1:70b")},
    )
    config = gp.litellm_config(plan(hosts), {"request_timeout": 600})
    deployments = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert deployments["deepseek-r1"] == {
        "model": "ollama_chat/fleet/deepseek-r1:671b",
        "api_base": "http://127.0.0.1:11500",
        "timeout": 600,
        "stream_timeout": 600,
    }
    assert deployments["fleet/deepseek-r1:70b"]["api_base"] == "http://127.0.0.1:11501"
    info = config["model_list"][0]["model_info"]
    assert (info["input_cost_per_token"], info["output_cost_per_token"]) == (0.0, 0.0)
    assert config["router_settings"]["fallbacks"] == [
        {"deepseek-r1": ["fleet/deepseek-r1:70b"]},
        {"fleet/deepseek-r1:671b": ["fleet/deepseek-r1:70b"]},
    ]
    assert config["router_settings"]["disable_cooldowns"] is True
    assert config["general_settings"]["custom_auth"] == "fleet_auth.user_api_key_auth"
    assert config["litellm_settings"]["turn_off_message_logging"] is True
    assert config["litellm_settings"]["callbacks"] == ["prometheus", "fleet_auth.error_shaper"]


def test_operator_settings_are_merged_last():
    config = gp.litellm_config(
        {"models": []},
        {"extra_router_settings": {"num_retries": 5}, "extra_general_settings": {"x": 1}},
    )
    assert config["router_settings"]["num_retries"] == 5
    assert config["general_settings"]["x"] == 1


def test_the_filter_reads_only_the_planning_variables_of_each_host():
    class Loud(dict):
        def __getitem__(self, name):
            if name == "vault_secret":
                raise AssertionError("the plan must not template unrelated variables")
            return super().__getitem__(name)

    hostvars = {
        "a": Loud(ollama_models=tier("gemma3:4b"), vault_secret="x", fleet_host_address="h"),
    }
    result = filters.fleet_gateway_plan(["a"], hostvars, [], MODEL_DEFAULTS, {})
    assert result["public_names"] == ["fleet/gemma3:4b", "gemma3"]
    with pytest.raises(gp.GatewayPlanError, match="not in the inventory: \\['ghost'\\]"):
        filters.fleet_gateway_plan(["a", "ghost"], hostvars, [], MODEL_DEFAULTS, {})


def test_the_client_filter_returns_no_key():
    result = plan(fleet(a={"ollama_models": tier("gemma3:4b")}))
    clients = [{"name": "app", "key": "k" * 40, "models": ["gemma3"], "rpm": 10}]
    checked = filters.fleet_gateway_clients(clients, result, 32)
    assert checked == [{"name": "app", "models": ["fleet/gemma3:4b", "gemma3"], "rpm": 10}]


def test_the_journal_excerpt_keeps_what_explains_a_failure():
    lines = [
        "   ██╗     ██╗████████╗",
        "\x1b[1;37m#------------------------------------------------------------#\x1b[0m",
        "Started litellm.service - LiteLLM proxy (localllm.fleet gateway).",
        '{"message": "Traceback (most recent call last):\\n  File x\\nModuleNotFoundError: '
        'No module named \'prometheus_client\'\\n", "level": "ERROR"}',
        "",
        "litellm.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
    ]
    assert gp.journal_excerpt(lines, 3) == [
        "Started litellm.service - LiteLLM proxy (localllm.fleet gateway).",
        "ModuleNotFoundError: No module named 'prometheus_client'",
        "litellm.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
    ]


def test_the_report_section_names_hosts_aliases_and_clients_not_keys():
    result = plan(
        fleet(
            a={"ollama_models": tier("deepseek-r1:32b")},
            dark={"ollama_models": None, "gpu_tier": None, "gpu_tier_reason": "no driver"},
        )
    )
    section = gp.report_section(result, "gw", 8443, [{"name": "b"}, {"name": "a"}])
    assert gp.report_section(result, "fd00::1", 8443, [])["endpoints"] == [
        "https://[fd00::1]:8443/v1"
    ]
    assert section == {
        "endpoints": ["https://gw:8443/v1"],
        "models": [
            {"name": "deepseek-r1", "hosts": ["a"], "alias_of": "fleet/deepseek-r1:32b"},
            {"name": "fleet/deepseek-r1:32b", "hosts": ["a"], "alias_of": None},
        ],
        "excluded": ["dark: no GPU tier: no driver"],
        "clients": ["a", "b"],
    }
