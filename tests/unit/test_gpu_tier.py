"""The gpu_tier inventory plugin with a fake prober: vars, groups, constructed, cache, errors."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import _InventoryDataWrapper
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.utils.display import Display
from gpu_tier_testing import (
    FIXTURES,
    LAB_PROFILES,
    FakeProber,
    lab_output,
    new_plugin,
)


def upgraded_t4() -> str:
    """The lab's T4 after playbooks/drivers.yml: branch 570 instead of the profile's 535."""
    return lab_output("t4").replace("535.183.01", "570.133.20")


def lab_answers() -> dict[str, str | Exception]:
    answers: dict[str, str | Exception] = {p: lab_output(p) for p in LAB_PROFILES}
    answers["down"] = Exception("connection to 127.0.0.1:42299 timed out after 10 s")
    return answers


class Build:
    """One inventory build, as `ansible-inventory` does it (wrapper, parse, cache flush)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / "fleet.gpu_tier.yml"

    def __call__(self, config: dict, prober: FakeProber, cache: bool = True, inventory=None):
        self.config.write_text(yaml.safe_dump(config))
        plugin = new_plugin()
        plugin.prober = prober
        data = inventory or InventoryData()
        data.current_source = str(self.config)
        wrapper = _InventoryDataWrapper(data, target_plugin=plugin, origin=None)
        plugin.parse(wrapper, DataLoader(), str(self.config), cache=cache)
        with contextlib.suppress(AttributeError):  # as InventoryManager: no cache plugin loaded
            plugin.update_cache_if_changed()
        return data


@pytest.fixture
def build(tmp_path):
    return Build(tmp_path)


def hosts_config(**extra) -> dict:
    config = {
        "plugin": "localllm.fleet.gpu_tier",
        "hosts": [
            {"name": p, "vars": {"ansible_host": "127.0.0.1", "ansible_port": 42201 + i}}
            for i, p in enumerate(LAB_PROFILES)
        ]
        + [{"name": "down", "vars": {"ansible_port": 42299}, "groups": ["rack9"]}],
        "vars": {"ansible_user": "fleet"},
    }
    config.update(extra)
    return config


def members(inventory, group: str) -> set[str]:
    return {h.name for h in inventory.groups[group].get_hosts()}


def hostvars(inventory, host: str) -> dict:
    return inventory.get_host(host).get_vars()


# ------------------------------------------------------------------------------ vars and groups


def test_the_lab_fleet_lands_in_the_right_tiers_and_groups(build):
    inventory = build(hosts_config(), FakeProber(lab_answers()))
    assert members(inventory, "tier_frontier") == {"h100x8"}
    assert members(inventory, "tier_large") == {"rtx4090x2"}
    assert members(inventory, "tier_medium") == {"rtx4090"}
    # The lab's T4 runs driver 535: too old for the pinned Ollama (550+), so no tier yet.
    assert members(inventory, "tier_small") == set()
    assert members(inventory, "tier_tiny") == {"cpu"}
    assert members(inventory, "gpu") == {
        "h100x8",
        "rtx4090",
        "rtx4090x2",
        "t4",
        "broken",
        "nodriver",
    }
    assert members(inventory, "cpu") == {"cpu"}
    assert members(inventory, "gpu_driver_needed") == {"broken", "nodriver", "t4"}
    assert hostvars(inventory, "t4")["gpu_tier"] is None
    assert (
        "GPU 0 (Tesla T4, compute capability 7.5) has driver 535.183.01 (branch 535); "
        "Ollama 0.32.15 needs 550 or newer"
    ) in hostvars(inventory, "t4")["gpu_tier_reason"]
    # broken has a driver that cannot read its GPUs: unreadable too, with the reason
    assert members(inventory, "gpu_unreachable") == {"down", "broken"}
    assert "cannot communicate" in hostvars(inventory, "broken")["gpu_tier_reason"]
    assert members(inventory, "tier_compact") == set()  # every tier group exists
    assert members(inventory, "rack9") == {"down"}


def test_host_variables(build):
    inventory = build(hosts_config(), FakeProber(lab_answers()))
    h100 = hostvars(inventory, "h100x8")
    assert h100["gpu_count"] == 8
    assert h100["gpu_memory_mib_total"] == 652472
    assert h100["gpu_nvswitch"] is True
    assert h100["gpu_tier"] == "frontier"
    assert h100["gpu_tier_num_ctx"] == 32768
    assert h100["ollama_models"][0]["name"] == "deepseek-r1:671b"
    assert h100["gpu_devices"][3]["index"] == 3
    assert h100["gpu_devices"][3]["driver"] == "550.54.15"
    assert h100["gpu_devices"][3]["architecture"] == "hopper"
    assert h100["gpu_tier_reason"].startswith("tier frontier: 8 x NVIDIA H100 80GB HBM3")
    assert h100["host_cpu_count"] == 2
    down = hostvars(inventory, "down")
    assert (down["gpu_tier"], down["ollama_models"], down["gpu_probe_status"]) == (
        None,
        None,
        "unreachable",
    )
    assert "timed out" in down["gpu_tier_reason"]
    nodriver = hostvars(inventory, "nodriver")
    assert nodriver["gpu_count"] == 1
    assert nodriver["gpu_devices"][0]["architecture"] == "ada"
    assert "install it" in nodriver["gpu_tier_reason"]


def test_hosts_as_a_mapping_and_patterns(build):
    prober = FakeProber({"*": upgraded_t4()})
    config = {
        "plugin": "localllm.fleet.gpu_tier",
        "hosts": {"node[1:3].example": {"ansible_user": "ops"}, "single:2222": None},
    }
    inventory = build(config, prober)
    assert set(inventory.hosts) == {"node1.example", "node2.example", "node3.example", "single"}
    assert hostvars(inventory, "single")["ansible_port"] == 2222
    assert members(inventory, "tier_small") == set(inventory.hosts)


def test_hosts_from_a_source_inventory_with_templated_connection_vars(build, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ansible_host": "127.0.0.1",
                        "ansible_user": "fleet",
                        "ansible_ssh_private_key_file": "{{ inventory_dir }}/../.lab/id_ed25519",
                        "ansible_ssh_common_args": "-o UserKnownHostsFile={{ inventory_dir }}/kh",
                    },
                    "children": {
                        "lab": {
                            "hosts": {
                                p: {"ansible_port": 42201 + i, "lab_profile": p}
                                for i, p in enumerate(LAB_PROFILES)
                            }
                        }
                    },
                }
            }
        )
    )
    build.config = lab / "lab.gpu_tier.yml"
    prober = FakeProber({**lab_answers(), "t4": upgraded_t4()})
    inventory = build({"plugin": "localllm.fleet.gpu_tier", "source": "hosts.yml"}, prober)
    targets = {t.name: t for t in prober.calls[0]}
    assert targets["t4"].port == 42204
    assert targets["t4"].user == "fleet"
    assert targets["t4"].key_files == (str(tmp_path / ".lab" / "id_ed25519"),)
    assert targets["t4"].known_hosts == (str(lab / "kh"),)
    assert members(inventory, "lab") == set(LAB_PROFILES)
    assert hostvars(inventory, "t4")["lab_profile"] == "t4"
    assert hostvars(inventory, "t4")["inventory_dir"] == str(lab)
    assert members(inventory, "tier_small") == {"t4"}


def test_hosts_already_in_the_inventory(build):
    data = InventoryData()
    for name in ("rtx4090", "cpu"):
        data.add_host(name)
        data.set_variable(name, "ansible_host", "127.0.0.1")
    prober = FakeProber(lab_answers())
    inventory = build({"plugin": "localllm.fleet.gpu_tier"}, prober, inventory=data)
    assert sorted(prober.probed) == ["cpu", "rtx4090"]
    assert members(inventory, "tier_medium") == {"rtx4090"}


def test_hosts_that_serve_no_models_are_not_probed(build):
    config = hosts_config()
    config["hosts"] = [
        {"name": "gw1", "vars": {"gpu_tier_probe": False}, "groups": ["gateway"]},
        {"name": "mon1", "vars": {"gpu_tier_probe": "{{ 'no' }}"}},
        {"name": "rtx4090"},
    ]
    prober = FakeProber(lab_answers())
    inventory = build(config, prober)
    assert prober.probed == ["rtx4090"]
    assert members(inventory, "gateway") == {"gw1"}
    for name in ("gw1", "mon1"):
        assert "gpu_tier" not in hostvars(inventory, name)
        assert not any(name in members(inventory, g) for g in ("gpu", "cpu", "gpu_unreachable"))
    assert members(inventory, "tier_medium") == {"rtx4090"}


def test_gpu_tier_probe_must_be_a_boolean(build):
    config = hosts_config()
    config["hosts"] = [{"name": "gw1", "vars": {"gpu_tier_probe": "maybe"}}]
    with pytest.raises(AnsibleParserError, match="gw1: gpu_tier_probe must be true or false"):
        build(config, FakeProber(lab_answers()))


def test_group_level_overrides_pin_models_and_cap_context(build):
    config = hosts_config()
    config["hosts"] = [
        {"name": "rtx4090", "groups": ["research"]},
        {"name": "t4", "vars": {"gpu_tier_max_context": 8192}},
    ]
    data = InventoryData()
    data.add_group("research")
    data.set_variable("research", "gpu_tier_models", ["qwq:32b"])
    inventory = build(
        config,
        FakeProber({"*": upgraded_t4(), **lab_answers(), "t4": upgraded_t4()}),
        inventory=data,
    )
    assert [m["name"] for m in hostvars(inventory, "rtx4090")["ollama_models"]] == ["qwq:32b"]
    assert hostvars(inventory, "rtx4090")["ollama_models"][0]["family"] == "qwq"
    assert hostvars(inventory, "t4")["gpu_tier_num_ctx"] == 8192


def test_policy_option_selects_a_fleet_wide_alternative(build):
    config = hosts_config(policy={"tier_models": {"medium": ["gemma3:27b"]}})
    inventory = build(config, FakeProber(lab_answers()))
    assert hostvars(inventory, "rtx4090")["ollama_models"][0]["name"] == "gemma3:27b"


# ------------------------------------------------------------------------------ constructed


def test_compose_groups_and_keyed_groups(build):
    config = hosts_config(
        compose={
            "fit_context": "gpu_tier_num_ctx",
            "vram_gib": "(gpu_memory_mib_total or 0) // 1024",
        },
        groups={"big_iron": "gpu_memory_mib_total is not none and gpu_memory_mib_total > 100000"},
        keyed_groups=[
            {"key": "gpu_probe_status", "prefix": "probe"},
            {"key": "gpu_devices | map(attribute='name') | list", "prefix": "model"},
        ],
    )
    inventory = build(config, FakeProber({**lab_answers(), "t4": upgraded_t4()}))
    assert hostvars(inventory, "t4")["fit_context"] == 16384
    assert hostvars(inventory, "h100x8")["vram_gib"] == 637
    assert members(inventory, "big_iron") == {"h100x8"}
    assert members(inventory, "probe_driver_needed") == {"broken", "nodriver"}
    assert members(inventory, "model_NVIDIA_GeForce_RTX_4090") == {"rtx4090", "rtx4090x2"}


def test_a_host_named_like_a_group_keeps_its_variables_to_itself(build):
    # The host `cpu` is a member of the group `cpu`; InventoryData.set_variable would give a
    # group of the host's name the host's variables, and so every other CPU host too.
    config = hosts_config(compose={"vram_gib": "(gpu_memory_mib_total or 0) // 1024"})
    config["hosts"].append({"name": "spare", "vars": {"ansible_port": 42298}})
    answers = {**lab_answers(), "spare": lab_answers()["cpu"]}
    inventory = build(config, FakeProber(answers))
    assert members(inventory, "cpu") == {"cpu", "spare"}
    assert inventory.groups["cpu"].get_vars() == {}
    assert hostvars(inventory, "cpu")["ansible_port"] == 42201 + LAB_PROFILES.index("cpu")
    assert hostvars(inventory, "cpu")["gpu_tier"] == hostvars(inventory, "spare")["gpu_tier"]
    assert hostvars(inventory, "cpu")["vram_gib"] == 0
    assert hostvars(inventory, "spare")["ansible_port"] == 42298


def test_strict_compose_error_names_the_host(build):
    config = hosts_config(strict=True, compose={"x": "no_such_variable + 1"})
    config["hosts"] = ["t4"]
    with pytest.raises(AnsibleParserError, match="Could not set x for host t4"):
        build(config, FakeProber(lab_answers()))


def test_without_strict_a_failing_expression_is_skipped(build):
    config = hosts_config(compose={"x": "no_such_variable + 1"})
    config["hosts"] = ["t4"]
    inventory = build(config, FakeProber(lab_answers()))
    assert "x" not in hostvars(inventory, "t4")


# ------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Exception("authentication failed for fleet@127.0.0.1:42202"), "authentication failed"),
        (Exception("unknown host key ssh-ed25519 SHA256:abc"), "unknown host key"),
        (
            "Welcome!\nThis account is locked.\n",
            "probe output unreadable: the probe's output is not",
        ),
        ("@@localllm-probe 1\n@@begin nvidia-smi-query\n0, NVIDIA H1", "truncated"),
        (
            "@@localllm-probe 1\n@@begin nvidia-smi-query\n"
            + (FIXTURES / "query-gb10-memory-na.txt").read_text()
            + "@@rc 0\n@@begin lspci\n@@rc 0\n@@end\n",
            "MemTotal could not be read to size it",
        ),
    ],
)
def test_a_faulty_host_is_unreachable_with_its_reason_and_others_unaffected(build, answer, reason):
    answers = lab_answers()
    answers["rtx4090"] = answer
    inventory = build(hosts_config(), FakeProber(answers))
    assert "rtx4090" in members(inventory, "gpu_unreachable")
    assert reason in hostvars(inventory, "rtx4090")["gpu_tier_reason"]
    assert hostvars(inventory, "rtx4090")["gpu_tier"] is None
    assert members(inventory, "tier_medium") == set()
    assert members(inventory, "tier_frontier") == {"h100x8"}


def test_strict_fails_listing_every_unreadable_host(build):
    answers = lab_answers()
    answers["t4"] = "garbage"
    with pytest.raises(AnsibleParserError, match=r"3 of 8 host\(s\) could not be read") as caught:
        build(hosts_config(strict=True), FakeProber(answers))
    assert "down: probe failed: connection to 127.0.0.1:42299 timed out" in str(caught.value)
    assert "t4: probe output unreadable" in str(caught.value)
    assert "broken: no tier until the driver works" in str(caught.value)


def test_unreachable_hosts_are_warned_about(build, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(Display, "warning", lambda self, msg, *a, **k: warnings.append(msg))
    build(hosts_config(), FakeProber(lab_answers()))
    assert any("gpu_unreachable: down" in w for w in warnings)
    assert any("gpu_unreachable: broken" in w for w in warnings)


def test_an_operator_pin_serves_a_host_the_probe_cannot_reach(build):
    config = hosts_config()
    config["hosts"] = [{"name": "down", "vars": {"gpu_tier_pin": "small"}}]
    inventory = build(config, FakeProber(lab_answers()))
    assert hostvars(inventory, "down")["gpu_tier"] == "small"
    assert members(inventory, "gpu_unreachable") == {"down"}
    assert members(inventory, "tier_small") == {"down"}


# ------------------------------------------------------------------------------ untrusted output


def test_a_hostile_gpu_name_is_never_templated(build, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    evil = "{{ lookup('pipe', 'touch pwned') }}"
    query = "index, name, uuid, pci.bus_id, memory.total [MiB], driver_version, compute_cap, "
    query += "mig.mode.current\n"
    query += f"0, {evil}, GPU-11112222-3333-4444-5555-666677778888, 00000000:01:00.0, 24564, "
    query += "550.54.15, 8.9, [N/A]\n"
    output = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{query}@@rc 0\n"
    output += "@@begin lspci\n@@rc 0\n@@end\n"
    config = hosts_config(compose={"first_gpu": "gpu_devices[0].name"})
    config["hosts"] = ["evil"]
    inventory = build(config, FakeProber({"evil": output}))
    variables = hostvars(inventory, "evil")
    assert variables["gpu_devices"][0]["name"] == evil
    assert variables["first_gpu"] == evil
    templar = Templar(loader=DataLoader(), variables=variables)
    assert templar.template(trust_as_template("{{ gpu_devices[0].name }}")) == evil
    assert templar.template(trust_as_template("{{ first_gpu }}")) == evil
    assert templar.template(variables["gpu_devices"][0]["name"]) == evil
    assert not marker.exists()
    # control: the same text from a trusted source does run, so the assertions above can fail
    templar.template(trust_as_template(evil))
    assert marker.exists()


# ------------------------------------------------------------------------------ cache


def cached_config(tmp_path: Path, **extra) -> dict:
    return hosts_config(
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(tmp_path / "cache"),
        **extra,
    )


def test_a_second_build_reads_the_cache_and_probes_nothing(build, tmp_path):
    first = FakeProber(lab_answers())
    build(cached_config(tmp_path), first)
    assert sorted(first.probed) == sorted([*LAB_PROFILES, "down"])
    # would make every host unreachable if asked; the broken driver may be fixed by now
    second = FakeProber({"broken": lab_output("broken")})
    inventory = build(cached_config(tmp_path), second)
    # failures are not cached: probed again, a driver that cannot read the GPUs too
    assert sorted(second.probed) == ["broken", "down"]
    assert members(inventory, "tier_frontier") == {"h100x8"}
    assert members(inventory, "gpu_driver_needed") == {"broken", "nodriver", "t4"}


def test_a_cache_miss_probes_only_new_or_moved_hosts(build, tmp_path):
    build(cached_config(tmp_path), FakeProber(lab_answers()))
    config = cached_config(tmp_path)
    config["hosts"].append({"name": "newcomer", "vars": {"ansible_port": 42300}})
    config["hosts"][1]["vars"]["ansible_port"] = 42999  # rtx4090 moved
    answers = lab_answers()
    answers["newcomer"] = upgraded_t4()
    prober = FakeProber(answers)
    inventory = build(config, prober)
    assert sorted(prober.probed) == ["broken", "down", "newcomer", "rtx4090"]
    assert members(inventory, "tier_small") == {"newcomer"}


def test_refresh_ignores_the_cache_and_rewrites_it(build, tmp_path):
    build(cached_config(tmp_path), FakeProber(lab_answers()))
    answers = lab_answers()
    answers["nodriver"] = lab_output("rtx4090")  # the driver got installed
    refresh = FakeProber(answers)
    inventory = build(cached_config(tmp_path), refresh, cache=False)
    assert len(refresh.probed) == 8
    assert hostvars(inventory, "nodriver")["gpu_tier"] == "medium"
    after = FakeProber({})
    inventory = build(cached_config(tmp_path), after)
    assert hostvars(inventory, "nodriver")["gpu_tier"] == "medium"


def test_each_host_is_planned_once_whether_its_probe_is_cached_or_not(build, tmp_path, monkeypatch):
    # One plan per host and build: what decides whether a probe is cached is the same plan
    # that sets the host's variables, not a second computation of it.
    plugin_module = sys.modules[type(new_plugin()).__module__]
    planned: list[str] = []

    def counted(function):
        def wrapper(*args, **kwargs):
            plan = function(*args, **kwargs)
            planned.append(plan.reason)
            return plan

        return wrapper

    for name in ("classify", "unreachable_plan"):
        monkeypatch.setattr(plugin_module, name, counted(getattr(plugin_module, name)))
    hosts = sorted([*LAB_PROFILES, "down"])

    def reasons(inventory) -> list[str]:
        return sorted(hostvars(inventory, host)["gpu_tier_reason"] for host in hosts)

    first = build(cached_config(tmp_path), FakeProber(lab_answers()))  # every probe fresh
    assert sorted(planned) == reasons(first)  # one plan each, and that plan is what was set

    planned.clear()
    second = FakeProber(lab_answers())
    inventory = build(cached_config(tmp_path), second)  # most from the cache
    assert sorted(second.probed) == ["broken", "down"]  # what the first plans found unreadable
    assert sorted(planned) == reasons(inventory) == reasons(first)


def test_cache_disabled_always_probes(build):
    prober = FakeProber(lab_answers())
    build(hosts_config(), prober)
    build(hosts_config(), prober)
    assert len(prober.probed) == 16


# ------------------------------------------------------------------------------ bad configuration


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pool_size": 0}, "option `pool_size` must be between 1 and 1000, got 0"),
        ({"pool_size": "many"}, "pool_size"),
        ({"connect_timeout": -1}, "option `connect_timeout` must be between 1"),
        ({"pool": 10}, "unknown option `pool`; did you mean `pool_size`"),
        ({"host_key_checking": "off"}, "host_key_checking"),
        ({"source": "hosts.yml"}, "`hosts` and `source` are mutually exclusive"),
        ({"hosts": "gpu01"}, "option `hosts` must be a list"),
        ({"hosts": []}, "option `hosts` is empty"),
        ({"hosts": [{"host": "gpu01"}]}, r"option `hosts\[0\]` must be a host name or a mapping"),
        ({"hosts": [{"name": "a", "var": {}}]}, r"option `hosts\[0\]`: use keys name, vars"),
        ({"policy": {"tier_models": {"medium": ["nope:1b"]}}}, "option policy.tier_models.medium"),
        ({"policy": {"kv_cache_type": "q2"}}, "option policy.kv_cache_type"),
    ],
)
def test_bad_configuration_raises_a_parser_error_naming_the_option(build, change, match):
    config = hosts_config()
    config.update(change)
    with pytest.raises(AnsibleParserError, match=match):
        build(config, FakeProber(lab_answers()))


def test_a_missing_source_says_where_it_looked(build):
    config = {"plugin": "localllm.fleet.gpu_tier", "source": "nowhere.yml"}
    with pytest.raises(AnsibleParserError, match=r"option `source`: .*nowhere.yml does not exist"):
        build(config, FakeProber({}))


def test_a_source_that_leads_back_to_itself_is_refused(build):
    config = {"plugin": "localllm.fleet.gpu_tier", "source": "."}
    with pytest.raises(AnsibleParserError, match="leads back to this gpu_tier file"):
        build(config, FakeProber({}))


def test_a_bad_override_names_the_host_and_variable(build):
    config = hosts_config()
    config["hosts"] = [{"name": "t4", "vars": {"gpu_tier_pin": "enormous"}}]
    with pytest.raises(AnsibleParserError, match="host t4: gpu_tier_pin: 'enormous' is not a tier"):
        build(config, FakeProber(lab_answers()))


def test_no_hosts_at_all_is_explained(build):
    with pytest.raises(AnsibleParserError, match="no hosts to probe: give `hosts` or `source`"):
        build({"plugin": "localllm.fleet.gpu_tier"}, FakeProber({}))


def test_only_gpu_tier_file_names_are_claimed(tmp_path):
    plugin = new_plugin()
    for name, expected in (
        ("lab.gpu_tier.yml", True),
        ("gpu_tier.yaml", True),
        ("hosts.yml", False),
    ):
        (tmp_path / name).write_text("plugin: localllm.fleet.gpu_tier\n")
        assert plugin.verify_file(str(tmp_path / name)) is expected


def test_a_host_read_but_not_understood_is_not_cached(build, tmp_path):
    answers = lab_answers()
    answers["t4"] = "@@localllm-probe 1\n@@begin nvidia-smi-query\nHello\n@@rc 0\n"
    answers["t4"] += "@@begin lspci\n@@rc 0\n@@end\n"
    build(cached_config(tmp_path), FakeProber(answers))
    again = FakeProber({**lab_answers(), "t4": upgraded_t4()})
    inventory = build(cached_config(tmp_path), again)
    assert sorted(again.probed) == ["broken", "down", "t4"]
    assert hostvars(inventory, "t4")["gpu_tier"] == "small"


# ------------------------------------------------------------------------------ pins and drivers


def test_a_pin_the_host_cannot_hold_fails_the_inventory_with_the_arithmetic(build):
    config = hosts_config()
    config["hosts"] = [{"name": "rtx4090", "vars": {"gpu_tier_pin": "large"}}]
    with pytest.raises(AnsibleParserError) as caught:
        build(config, FakeProber(lab_answers()))
    message = str(caught.value)
    assert "host rtx4090: gpu_tier_pin=large refused:" in message
    assert "deepseek-r1:70b at num_ctx 8192 needs 43568 MiB" in message
    assert "more than the 23028 MiB usable" in message


def test_a_hosts_ollama_version_sets_the_driver_it_needs(build):
    config = hosts_config()
    config["hosts"] = [
        {"name": "t4", "vars": {"ollama_version": "{{ old_release }}", "old_release": "0.20.0"}},
        {"name": "rtx4090", "vars": {}},
    ]
    inventory = build(config, FakeProber(lab_answers()))
    assert hostvars(inventory, "t4")["gpu_tier"] == "small"  # 0.20.0 needs 531+
    assert hostvars(inventory, "rtx4090")["gpu_tier"] == "medium"


def test_a_malformed_ollama_version_names_the_host(build):
    config = hosts_config()
    config["hosts"] = [{"name": "t4", "vars": {"ollama_version": "latest"}}]
    with pytest.raises(
        AnsibleParserError, match="host t4: ollama_version: ollama_version 'latest'"
    ):
        build(config, FakeProber(lab_answers()))
