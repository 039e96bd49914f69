"""The tier policy: the reference machines, its boundaries, overrides, and host classification."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import nvidia_smi as ns
from ansible_collections.localllm.fleet.plugins.module_utils import tier_policy as tp

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
POLICY = tp.DEFAULT_POLICY


def slots(*memories: int, name: str = "GPU") -> list[tp.GpuSlot]:
    return [tp.GpuSlot(name, m) for m in memories]


def report(name: str) -> ns.ProbeReport:
    return ns.parse_probe_output((FIXTURES / "probe" / name).read_text())


@dataclass(frozen=True)
class ParsedGpu(ns.GpuDevice):
    """A GPU record as the nvidia-smi parser gives it once it records why memory is missing
    (`memory_status`: reported, unified, unsupported, error, absent)."""

    memory_status: str = "reported"


def gpu_report(*gpus: ns.GpuDevice, memory_mib: int | None = 131072) -> ns.ProbeReport:
    smi = ns.NvidiaSmiResult(ns.STATUS_OK, 0, "", tuple(gpus))
    return ns.ProbeReport(smi, ns.PciListing(True, "lspci", ()), 20, memory_mib)


# ---------------------------------------------------------------------- the mission's machines


def test_eight_h100_with_nvswitch_serve_the_full_deepseek_r1():
    plan = tp.classify(report("lab-h100x8.txt"))
    assert plan.status == tp.STATUS_GPU
    assert plan.tier == "frontier"
    assert [m.name for m in plan.decision.models] == ["deepseek-r1:671b"]
    assert plan.nvswitch is True
    assert plan.gpu_count == 8
    assert plan.gpu_memory_mib_total == 8 * 81559
    assert "NVSwitch" in plan.reason


@pytest.mark.parametrize(
    ("card", "mib"),
    [
        ("NVIDIA A10G", 23028),
        ("NVIDIA GeForce RTX 4090", 24564),
        ("NVIDIA GeForce RTX 3090", 24576),
    ],
)
def test_every_24_gb_class_card_serves_the_32b_model(card, mib):
    decision = tp.decide(POLICY, slots(mib, name=card))
    assert (decision.tier, decision.models[0].name) == ("medium", "deepseek-r1:32b")
    assert decision.placement == "gpu"
    assert decision.num_ctx == 8192


@pytest.mark.parametrize("mib", range(23028, 24577, 129))
def test_the_whole_24_gb_band_lands_in_one_tier(mib):
    assert tp.decide(POLICY, slots(mib)).tier == "medium"


def test_a_host_without_a_usable_gpu_serves_the_smallest_model_on_cpu():
    plan = tp.classify(report("lab-cpu.txt"))
    assert (plan.status, plan.tier) == (tp.STATUS_CPU, "tiny")
    assert plan.decision.models[0].name == "deepseek-r1:1.5b"
    assert plan.decision.placement == "cpu"
    assert "no NVIDIA GPU on the PCI bus" in plan.reason


@pytest.mark.parametrize(
    ("memories", "tier", "model"),
    [
        ((15360,), "small", "deepseek-r1:14b"),  # T4
        ((24564, 24564), "large", "deepseek-r1:70b"),  # 2 x RTX 4090
        ((46068,), "large", "deepseek-r1:70b"),  # L40S / A40
        ((40960,), "medium", "deepseek-r1:32b"),  # A100 40GB
        ((81920,), "large", "deepseek-r1:70b"),  # A100 80GB
        ((143771,), "large", "deepseek-r1:70b"),  # H200
        ((143771,) * 4, "frontier", "deepseek-r1:671b"),  # 4 x H200
        ((81920,) * 4, "large", "deepseek-r1:70b"),  # 4 x A100 80GB: 671b does not fit
        ((81920,) * 8, "frontier", "deepseek-r1:671b"),  # HGX A100 80GB
        ((183359,) * 8, "frontier", "deepseek-r1:671b"),  # HGX B200
        ((12288,), "small", "deepseek-r1:14b"),  # RTX 3060 12GB
        ((8188,), "compact", "deepseek-r1:8b"),  # 8 GB card
        ((4096,), "tiny", "deepseek-r1:1.5b"),  # 4 GB card, still on GPU
        ((15360, 15360), "medium", "deepseek-r1:32b"),  # 2 x T4
    ],
)
def test_hosts_between_get_the_largest_model_that_fits(memories, tier, model):
    decision = tp.decide(POLICY, slots(*memories))
    assert (decision.tier, decision.models[0].name) == (tier, model)
    assert decision.placement == "gpu"
    assert decision.need_mib <= decision.usable_mib


def test_the_fit_boundary_is_exact():
    spec = POLICY.model("deepseek-r1:32b")
    need = spec.size_mib + spec.kv_cache_mib(8192)
    just_enough = need + POLICY.gpu_overhead_mib
    assert tp.decide(POLICY, slots(just_enough)).tier == "medium"
    assert tp.decide(POLICY, slots(just_enough - 1)).tier == "small"


def test_context_grows_while_it_fits_and_stops_at_the_tier_maximum():
    assert tp.decide(POLICY, slots(24564)).num_ctx == 8192  # 16384 would not fit
    assert tp.decide(POLICY, slots(15360)).num_ctx == 16384  # T4 with the 14b
    assert tp.decide(POLICY, slots(81920)).num_ctx == 32768  # max_context


# ------------------------------------------------------------------------------ arithmetic


def test_kv_cache_from_the_model_shape():
    # Qwen2.5-32B: 64 layers x 8 KV heads x (128 + 128) x 2 bytes = 256 KiB per token
    assert POLICY.model("deepseek-r1:32b").kv_bytes_per_token() == 262144
    assert POLICY.model("deepseek-r1:32b").kv_cache_mib(8192) == 2048
    # DeepSeek-V3 without MLA compression: 61 x 128 x (192 + 128) x 2 bytes
    assert POLICY.model("deepseek-r1:671b").kv_bytes_per_token() == 4997120
    # q8_0 packs 32 values in 34 bytes, q4_0 in 18
    assert POLICY.model("deepseek-r1:32b").kv_cache_mib(8192, cache_type="q8_0") == 1088
    assert POLICY.model("deepseek-r1:32b").kv_cache_mib(8192, num_parallel=4) == 8192


def test_the_671b_estimate_matches_ollamas_own_for_8192_tokens():
    # Ollama's server log for deepseek-r1:671b: memory.required.full 416.8 GiB (8192 tokens
    # of context in total); weights + KV cache here must come within a few percent.
    spec = POLICY.model("deepseek-r1:671b")
    estimate_gib = (spec.size_mib + spec.kv_cache_mib(8192)) / 1024
    assert 400 < estimate_gib < 417


def test_a_quantised_kv_cache_lets_a_bigger_model_fit():
    q8 = tp.policy_from_config({"kv_cache_type": "q8_0"})
    spec = POLICY.model("deepseek-r1:70b")
    memory = spec.size_mib + spec.kv_cache_mib(8192, cache_type="q8_0") + 1536
    assert tp.decide(POLICY, slots(memory)).tier == "medium"
    assert tp.decide(q8, slots(memory)).tier == "large"


def test_split_allowance_only_when_the_model_spans_gpus():
    one = tp.decide(POLICY, slots(81920, 24564))
    assert "split allowance" not in one.reason  # the 70b fits on the A100 alone
    two = tp.decide(POLICY, slots(24564, 24564))
    assert "split allowance 513" in two.reason


def test_every_decision_has_a_reason_naming_tier_model_and_numbers():
    decision = tp.decide(POLICY, slots(24564, name="NVIDIA GeForce RTX 4090"), context="1 x 4090")
    assert decision.reason.startswith("tier medium: 1 x 4090: deepseek-r1:32b at num_ctx 8192")
    assert "of 23028 MiB usable" in decision.reason
    assert "next tier up: large (deepseek-r1:70b) needs 43568 MiB" in decision.reason


# ------------------------------------------------------------------------------ overrides


def test_a_pinned_tier_that_cannot_fit_is_refused_with_the_arithmetic():
    with pytest.raises(tp.FitRefused) as caught:
        tp.decide(POLICY, slots(24564), tp.Overrides(tier="large"), context="1 x RTX 4090")
    assert caught.value.option == "gpu_tier_pin"
    assert caught.value.message == (
        "gpu_tier_pin=large refused: 1 x RTX 4090: deepseek-r1:70b at num_ctx 8192 needs "
        "43568 MiB (weights 41008 + KV cache 2560), more than the 23028 MiB usable "
        "(1536 MiB/GPU reserved); pin a smaller tier or other models, cap the context with "
        "gpu_tier_max_context, or remove the pin"
    )


def test_a_pinned_tier_that_fits_is_honoured():
    decision = tp.decide(POLICY, slots(81920), tp.Overrides(tier="medium"))
    assert (decision.tier, decision.pinned, decision.fits) == ("medium", True, True)
    assert "gpu_tier_pin=medium" in decision.reason


def test_a_pinned_model_too_big_for_ram_on_a_cpu_host_is_refused():
    with pytest.raises(
        tp.FitRefused,
        match=r"deepseek-r1:32b on CPU at num_ctx 4096 needs 20098 MiB \+ 2048 MiB reserve",
    ):
        tp.decide(POLICY, (), tp.Overrides(models=("deepseek-r1:32b",)), memory_mib=16384)


def test_pinned_models_that_cannot_share_the_card_are_refused_naming_the_second():
    with pytest.raises(tp.FitRefused) as caught:
        tp.decide(POLICY, slots(24564), tp.Overrides(models=("qwq:32b", "gemma3:27b")))
    assert caught.value.option == "gpu_tier_models"
    assert (
        "gemma3:27b (needs 20181 MiB at num_ctx 8192, 1906 MiB left beside qwq:32b) does not "
        "fit beside the first model"
    ) in caught.value.message


def test_pinned_models_that_fit_together_keep_their_family_and_are_all_loaded():
    decision = tp.decide(POLICY, slots(81920), tp.Overrides(models=("qwq:32b", "gemma3:27b")))
    assert [(m.name, m.family) for m in decision.models] == [
        ("qwq:32b", "qwq"),
        ("gemma3:27b", "gemma3"),
    ]
    assert all(m.fits for m in decision.models)
    # the first grows its context only while the second still fits beside it
    assert decision.models[1].num_ctx == 8192
    together = sum(m.need_mib for m in decision.models)
    assert together <= 81920 - POLICY.gpu_overhead_mib
    assert decision.max_loaded_models == 2
    assert "with gemma3:27b at num_ctx 8192 beside it" in decision.reason


def test_a_tier_model_that_does_not_fit_beside_the_first_is_left_out_and_said():
    # the example inventory's old medium tier: two 32B models on one 24 GB card
    policy = tp.policy_from_config({"tier_models": {"medium": ["deepseek-r1:32b", "qwq:32b"]}})
    decision = tp.decide(policy, slots(24564))
    assert [m.name for m in decision.models] == ["deepseek-r1:32b"]
    assert decision.left_out == ("qwq:32b",)
    assert decision.max_loaded_models == 1
    assert "left out (no room beside the first model): qwq:32b (needs 21122 MiB" in (
        decision.reason
    )
    # on an 80 GB card (pinned to the tier) both fit: nothing is left out
    roomy = tp.decide(policy, slots(81920), tp.Overrides(tier="medium"))
    assert [m.name for m in roomy.models] == ["deepseek-r1:32b", "qwq:32b"]


def test_context_cap_limits_num_ctx_and_can_admit_a_larger_tier():
    assert tp.decide(POLICY, slots(81920), tp.Overrides(max_context=4096)).num_ctx == 4096
    spec = POLICY.model("deepseek-r1:70b")
    memory = spec.size_mib + spec.kv_cache_mib(2048) + 1536
    assert tp.decide(POLICY, slots(memory)).tier == "medium"
    capped = tp.decide(POLICY, slots(memory), tp.Overrides(max_context=2048))
    assert (capped.tier, capped.num_ctx) == ("large", 2048)
    assert "capped at 2048" in capped.reason


@pytest.mark.parametrize(
    "selector", ["1", 1, "GPU-6e7f8091-AAAA-bbbb-cccc-ddddeeeeffff", "3b:00.0"]
)
def test_excluding_a_gpu_by_index_uuid_or_bus_id(selector):
    query = (FIXTURES / "query-mixed-3090-t4-noheader.txt").read_text()
    probe = "@@localllm-probe 1\n@@begin nvidia-smi-query\n" + query
    probe += "@@rc 0\n@@begin lspci\n@@rc 0\n@@end\n"
    overrides = tp.overrides_from_vars({"gpu_tier_exclude_gpus": [selector]}, POLICY)
    plan = tp.classify(ns.parse_probe_output(probe), POLICY, overrides)
    assert plan.tier == "medium"  # the 3090 alone; with the T4 the 70b would not fit either
    assert "GPU 1 excluded by gpu_tier_exclude_gpus" in plan.reason
    assert plan.gpu_count == 2  # the facts still describe the host


@pytest.mark.parametrize(
    ("variables", "match"),
    [
        ({"gpu_tier_pin": "huge"}, "gpu_tier_pin: 'huge' is not a tier"),
        ({"gpu_tier_models": ["llama9:1t"]}, "gpu_tier_models: model 'llama9:1t' is not in"),
        ({"gpu_tier_max_context": "lots"}, "gpu_tier_max_context: must be an integer"),
        ({"gpu_tier_max_context": 16}, "gpu_tier_max_context: must be 256-"),
        ({"gpu_tier_exclude_gpus": [True]}, "gpu_tier_exclude_gpus: must be a list"),
    ],
)
def test_bad_overrides_name_the_variable(variables, match):
    with pytest.raises(tp.PolicyError, match=match):
        tp.overrides_from_vars(variables, POLICY)


# ------------------------------------------------------------------------------ policy data


def test_tier_models_selects_an_alternative_for_the_fleet():
    policy = tp.policy_from_config({"tier_models": {"medium": ["gemma3:27b"]}})
    decision = tp.decide(policy, slots(24564))
    assert [m.name for m in decision.models] == ["gemma3:27b"]


def test_a_catalog_entry_can_be_added_and_used_in_a_new_ladder():
    policy = tp.policy_from_config(
        {
            "catalog": {
                "mycorp/coder:34b": {
                    "family": "generic",
                    "size_gb": 21,
                    "layers": 48,
                    "kv_heads": 8,
                    "head_dim": 128,
                    "context_max": 16384,
                }
            },
            "tiers": [
                {"name": "code", "models": ["mycorp/coder:34b"], "context": 4096},
                {"name": "fallback", "models": ["deepseek-r1:1.5b"], "context": 2048},
            ],
        }
    )
    assert tp.decide(policy, slots(24564)).tier == "code"
    assert tp.decide(policy, ()).tier == "fallback"
    assert policy.cpu_tier == "fallback"


def test_a_catalog_field_can_be_corrected_in_place():
    policy = tp.policy_from_config({"catalog": {"deepseek-r1:32b": {"size_gb": 19.85}}})
    assert policy.model("deepseek-r1:32b").size_bytes == 19_850_000_000
    assert policy.model("deepseek-r1:32b").layers == 64


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"tiers": []}, "policy.tiers: must be a non-empty list"),
        ({"tiers": [{"name": "Big!", "models": ["qwq:32b"]}]}, r"policy.tiers\[0\].name"),
        ({"tiers": [{"name": "a", "models": ["nope:1b"]}]}, r"policy.tiers\[0\]: model 'nope:1b'"),
        ({"tier_models": {"medium": ["nope:1b"]}}, "policy.tier_models.medium"),
        ({"tier_models": {"giant": ["qwq:32b"]}}, "policy.tier_models.giant: no such tier"),
        ({"kv_cache_type": "q2"}, "policy.kv_cache_type: must be one of f16, q8_0, q4_0"),
        ({"gpu_overhead_mib": -1}, "policy.gpu_overhead_mib"),
        ({"catalog": {"new:1b": {"size_gb": 1}}}, "a new model needs layers"),
        ({"catalog": {"new:1b": {"size_gb": 1, "size_mib": 2}}}, "give one of"),
        ({"cpu_tier": "nope"}, "policy.cpu_tier: no such tier"),
        ({"colour": "blue"}, "policy: unknown key"),
    ],
)
def test_bad_policy_names_the_option(config, match):
    with pytest.raises(tp.PolicyError, match=match):
        tp.policy_from_config(config)


# ------------------------------------------------------------------------------ classification


def test_gpus_without_a_driver_get_no_tier_but_the_driver_group():
    plan = tp.classify(report("lab-nodriver.txt"))
    assert plan.status == tp.STATUS_DRIVER_NEEDED
    assert plan.tier is None
    assert plan.groups == ["gpu", "gpu_driver_needed"]  # not installed: nothing failed to read
    assert not plan.unreadable
    assert plan.devices[0]["name"] == "AD102GL [L40S]"
    assert plan.devices[0]["architecture"] == "ada"  # enough for open vs proprietary modules
    assert plan.to_vars()["ollama_models"] is None
    assert "install it" in plan.reason


def test_a_driver_that_is_not_loaded_explains_what_to_check():
    plan = tp.classify(report("lab-broken.txt"))
    assert plan.status == tp.STATUS_DRIVER_NEEDED
    assert "not loaded" in plan.reason
    assert "GA102GL [A10G]" in plan.reason
    # installed but cannot read the GPUs: unreadable (re-probed, listed as unreachable)
    assert plan.unreadable
    assert "gpu_unreachable" in plan.groups


def test_memory_na_is_unreachable_with_an_actionable_reason_unless_pinned():
    query = (FIXTURES / "query-gb10-memory-na.txt").read_text()
    probe = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{query}@@rc 0\n"
    probe += "@@begin lspci\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    assert (plan.status, plan.tier) == (tp.STATUS_UNREACHABLE, None)
    # The probe lacks /proc/meminfo: the shared memory cannot be sized from the host's RAM.
    assert "shares the host's memory" in plan.reason and "MemTotal" in plan.reason
    assert "gpu_tier_pin" in plan.reason
    pinned = tp.classify(ns.parse_probe_output(probe), POLICY, tp.Overrides(tier="medium"))
    assert (pinned.status, pinned.tier, pinned.decision.placement) == ("gpu", "medium", "unknown")
    assert "fit not checked" in pinned.reason


def test_mig_slices_are_not_added_up():
    query = (FIXTURES / "query-a100-mig.txt").read_text()
    listing = (FIXTURES / "list-a100-mig.txt").read_text()
    probe = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{query}@@rc 0\n"
    probe += f"@@begin nvidia-smi-list\n{listing}@@rc 0\n@@begin lspci\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    # one CUDA process sees one MIG instance: the largest (7g.80gb), never 40+20+10+80
    assert plan.decision.usable_mib == 80 * 10**9 // 2**20 - POLICY.gpu_overhead_mib
    assert plan.tier == "large"
    assert "MIG mode" in plan.reason


def test_gpus_below_the_minimum_compute_capability_are_not_used():
    text = "index, name, memory.total [MiB], driver_version, compute_cap\n"
    text += "0, Tesla K80, 11441, 470.82.01, 3.7\n"
    probe = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{text}@@rc 0\n"
    probe += "@@begin lspci\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    assert (plan.status, plan.tier) == (tp.STATUS_CPU, "tiny")
    assert "compute capability 3.7 < 5.0" in plan.reason


def test_a_lost_gpu_makes_the_host_unreadable_until_excluded():
    query = (FIXTURES / "fail-lost-gpu.txt").read_text()
    probe = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{query}@@rc 0\n"
    probe += "@@begin lspci\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    assert plan.status == tp.STATUS_UNREACHABLE
    assert "0000:3B:00.0 is not accessible" in plan.reason
    excluded = tp.classify(
        ns.parse_probe_output(probe), POLICY, tp.Overrides(exclude_gpus=("0000:3b:00.0",))
    )
    assert (excluded.status, excluded.tier) == (tp.STATUS_GPU, "large")


def test_unknown_pci_and_no_nvidia_smi_is_not_guessed_as_cpu():
    probe = (
        "@@localllm-probe 1\n@@begin nvidia-smi-query\n@@rc 127\n@@begin lspci\n@@rc 127\n@@end\n"
    )
    plan = tp.classify(ns.parse_probe_output(probe))
    assert (plan.status, plan.tier) == (tp.STATUS_UNREACHABLE, None)
    assert "cannot tell whether this host has GPUs" in plan.reason


def test_garbage_from_nvidia_smi_is_unreachable():
    probe = "@@localllm-probe 1\n@@begin nvidia-smi-query\nHello!\n@@rc 0\n"
    probe += "@@begin lspci\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    assert (plan.status, plan.groups) == (tp.STATUS_UNREACHABLE, ["gpu_unreachable"])
    assert plan.unreadable
    assert "nvidia-smi output is not readable" in plan.reason


def test_host_variables_and_json_shape():
    plan = tp.classify(report("lab-rtx4090x2.txt"))
    variables = plan.to_vars()
    assert variables["gpu_tier"] == "large"
    assert variables["gpu_tier_num_ctx"] == 8192
    assert variables["gpu_devices"][0]["architecture"] == "ada"
    assert variables["gpu_devices"][0]["pci_device_id"] == "2684"
    assert variables["ollama_models"] == [
        {
            "name": "deepseek-r1:70b",
            "family": "deepseek-r1",
            "parameter_size": "70b",
            "size_mib": 41008,
            "num_ctx": 8192,
        }
    ]
    document = plan.to_json()
    assert document["gpus"] == [{"name": "NVIDIA GeForce RTX 4090", "memory_mib": 24564}] * 2
    assert (document["tier"], document["models"], document["error"]) == (
        "large",
        ["deepseek-r1:70b"],
        None,
    )


# ------------------------------------------------------------------------------ one decision


def test_the_server_settings_come_from_the_decision():
    variables = tp.classify(report("lab-h100x8.txt")).to_vars()
    assert {k: variables[k] for k in tp.SERVICE_VARS} == {
        "gpu_tier_num_parallel": 1,
        "gpu_tier_kv_cache_type": "f16",
        "gpu_tier_context_length": 32768,
        "gpu_tier_max_loaded_models": 1,
    }
    assert variables["gpu_tier_context_length"] == variables["ollama_models"][0]["num_ctx"]


def test_the_context_length_is_the_smallest_any_model_was_fitted_at():
    decision = tp.decide(POLICY, slots(81920), tp.Overrides(models=("qwq:32b", "gemma3:27b")))
    assert decision.context_length == min(m.num_ctx for m in decision.models) == 8192
    assert decision.num_ctx > decision.context_length


def test_a_quantized_kv_cache_is_used_only_where_flash_attention_works():
    q8 = tp.policy_from_config({"kv_cache_type": "q8_0"})
    card = tp.decide(q8, slots(24564))
    assert (card.kv_cache_type, card.num_ctx) == (
        "q8_0",
        16384,
    )  # half the cache: twice the context
    assert card.service_vars()["gpu_tier_kv_cache_type"] == "q8_0"
    # deepseek2 (671b): keys 192, values 128, so no flash attention and no quantized cache
    hgx = tp.decide(q8, slots(*(81559,) * 8))
    assert hgx.kv_cache_type == "f16"
    assert hgx.num_ctx == tp.decide(POLICY, slots(*(81559,) * 8)).num_ctx
    assert "KV cache f16, not q8_0: deepseek-r1:671b cannot use flash attention" in hgx.reason
    assert not POLICY.model("deepseek-r1:671b").flash_attention
    assert POLICY.model("deepseek-r1:32b").flash_attention


def test_num_parallel_multiplies_the_cache_the_fit_reserves():
    two = tp.policy_from_config({"num_parallel": 2})
    decision = tp.decide(two, slots(40960))
    single = tp.decide(POLICY, slots(40960))
    assert (decision.num_parallel, decision.num_ctx) == (2, single.num_ctx)
    spec = POLICY.model("deepseek-r1:32b")
    assert decision.need_mib - single.need_mib == spec.kv_cache_mib(32768)
    # a 24 GB card holds one 8192-token cache beside the 32B weights, not two
    assert tp.decide(two, slots(24564)).tier == "small"


def test_a_host_without_a_tier_gets_no_server_settings():
    variables = tp.classify(report("lab-nodriver.txt")).to_vars()
    assert {k: variables[k] for k in tp.SERVICE_VARS} == dict.fromkeys(tp.SERVICE_VARS)


# ------------------------------------------------------------------------------ the driver floor


def test_a_driver_older_than_the_ollama_release_needs_is_driver_needed_not_a_tier():
    plan = tp.classify(report("lab-t4.txt"))
    assert (plan.status, plan.tier) == (tp.STATUS_DRIVER_NEEDED, None)
    assert plan.groups == ["gpu", "gpu_driver_needed"]
    assert not plan.unreadable  # the driver works: drivers.yml may upgrade it
    assert (
        "GPU 0 (Tesla T4, compute capability 7.5) has driver 535.183.01 (branch 535); "
        "Ollama 0.32.15 needs 550 or newer"
    ) in plan.reason
    assert "playbooks/drivers.yml" in plan.reason
    assert plan.gpu_count == 1 and plan.to_vars()["ollama_models"] is None


def test_the_floor_follows_the_ollama_version_of_the_host():
    assert tp.classify(report("lab-t4.txt"), ollama_version="0.20.0").tier == "small"  # 531+
    assert tp.classify(report("lab-t4.txt"), ollama_version=None).tier == "small"  # not checked
    with pytest.raises(tp.PolicyError, match="ollama_version 'latest' is not a release version"):
        tp.classify(report("lab-t4.txt"), ollama_version="latest")


def test_maxwell_and_pascal_need_570_and_are_left_out_alone_on_a_mixed_host():
    pascal = ParsedGpu(0, "Tesla P40", 24576, driver_version="560.35.03", compute_cap="6.1")
    ampere = ParsedGpu(1, "NVIDIA A10G", 23028, driver_version="560.35.03", compute_cap="8.6")
    plan = tp.classify(gpu_report(pascal, ampere))
    assert (plan.status, plan.tier) == (tp.STATUS_GPU, "medium")
    assert plan.decision.usable_mib == 23028 - POLICY.gpu_overhead_mib  # the A10G alone
    assert "GPU 0 (Tesla P40, compute capability 6.1) has driver 560.35.03" in plan.reason
    assert any("needs 570 or newer: Ollama leaves it out" in w for w in plan.warnings)
    alone = tp.classify(gpu_report(pascal))
    assert alone.status == tp.STATUS_DRIVER_NEEDED


def test_eight_identical_gpus_with_an_old_driver_make_one_line():
    h100 = [
        ParsedGpu(i, "NVIDIA H100 80GB HBM3", 81559, driver_version="535.54.03", compute_cap="9.0")
        for i in range(8)
    ]
    plan = tp.classify(gpu_report(*h100))
    assert "GPU 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA H100 80GB HBM3, compute capability 9.0) have " in (
        plan.reason
    )


# ------------------------------------------------------------------------------ memory


def test_a_unified_memory_gpu_is_sized_from_the_hosts_ram_minus_the_reserve():
    gb10 = ParsedGpu(
        0, "NVIDIA GB10", None, driver_version="580.95.05", compute_cap="12.1",
        memory_status="unified",
    )  # fmt: skip
    plan = tp.classify(gpu_report(gb10, memory_mib=122570))
    assert (plan.status, plan.tier) == (tp.STATUS_GPU, "large")
    usable = 122570 - POLICY.unified_memory_reserve_mib - POLICY.gpu_overhead_mib
    assert plan.decision.usable_mib == usable
    assert (
        "GPU 0 sized from unified memory: 122570 MiB RAM - 16384 MiB unified_memory_reserve_mib"
        " = 106186 MiB"
    ) in plan.reason
    tighter = tp.policy_from_config({"unified_memory_reserve_mib": 105000})
    assert tp.classify(gpu_report(gb10, memory_mib=122570), tighter).tier == "small"


def test_a_unified_memory_gpu_on_a_host_whose_ram_is_unknown_is_not_guessed():
    gb10 = ParsedGpu(0, "NVIDIA GB10", None, compute_cap="12.1", memory_status="unified")
    plan = tp.classify(gpu_report(gb10, memory_mib=None))
    assert (plan.status, plan.tier) == (tp.STATUS_UNREACHABLE, None)
    assert "shares the host's memory" in plan.reason and "MemTotal" in plan.reason


def test_a_query_without_memory_total_counts_the_gpus_and_says_why_there_is_no_tier():
    gpus = [ParsedGpu(i, "NVIDIA L40S", None, memory_status="absent") for i in range(2)]
    plan = tp.classify(gpu_report(*gpus))
    assert (plan.status, plan.tier, plan.gpu_count) == (tp.STATUS_UNREACHABLE, None, 2)
    assert "2 GPU(s) counted, memory unknown: the nvidia-smi query has no memory.total" in (
        plan.reason
    )
    assert "memory.total" in plan.reason and "gpu_tier_pin" in plan.reason


@pytest.mark.parametrize("status", ["unsupported", "error", "unknown"])
def test_memory_that_cannot_be_read_is_unreachable_unless_pinned(status):
    gpu = ParsedGpu(
        0, "NVIDIA A10G", None, driver_version="570.133.20", notes=("memory.total is '[N/A]'",),
        memory_status=status,
    )  # fmt: skip
    plan = tp.classify(gpu_report(gpu))
    assert (plan.status, plan.tier) == (tp.STATUS_UNREACHABLE, None)
    assert "memory cannot be sized" in plan.reason
    pinned = tp.classify(gpu_report(gpu), POLICY, tp.Overrides(tier="medium"))
    assert (pinned.tier, pinned.decision.placement) == ("medium", "unknown")


def test_gpu_records_without_memory_status_read_as_before():
    plain = ns.GpuDevice(0, "NVIDIA A10G", None)
    assert tp.gpu_memory_status(plain) == "unknown"
    assert tp.gpu_memory_status(replace(plain, memory_mib=23028)) == "reported"
    assert tp.gpu_memory_status(ParsedGpu(0, "GB10", None, memory_status="unified")) == "unified"


def test_the_gb10_query_gets_a_tier_from_the_hosts_ram():
    query = (FIXTURES / "query-gb10-memory-na.txt").read_text()
    probe = f"@@localllm-probe 1\n@@begin nvidia-smi-query\n{query}@@rc 0\n"
    probe += "@@begin lspci\n@@rc 0\n@@begin meminfo\nMemTotal: 125512704 kB\n@@rc 0\n@@end\n"
    plan = tp.classify(ns.parse_probe_output(probe))
    assert (plan.status, plan.tier) == (tp.STATUS_GPU, "large")
