"""Planning a host's models: layering, overrides, sources, names, pruning, smoke summaries."""

import json

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import models_plan as mp

TIER_32B = [
    {
        "name": "deepseek-r1:32b",
        "family": "deepseek-r1",
        "parameter_size": "32b",
        "size_mib": 19500,
        "num_ctx": 8192,
    }
]
LAB = {"namespace": "fleet", "registry": "mirror:8080", "insecure": True}


def one(**kwargs):
    return mp.plan_models(TIER_32B, defaults={**LAB, **kwargs})[0]


def test_a_tier_model_from_a_private_registry():
    item = one()
    assert item["target"] == "fleet/deepseek-r1:32b"
    assert item["pull"] == "mirror:8080/library/deepseek-r1:32b"
    assert item["from"] == item["pull"]
    assert item["insecure"] is True
    assert item["family"] == "deepseek-r1"
    assert item["num_ctx"] == 8192
    assert item["modelfile"] == "fleet_deepseek-r1_32b.Modelfile"


def test_the_public_library_needs_no_registry():
    item = mp.plan_models(TIER_32B, defaults={"namespace": "fleet"})[0]
    assert item["pull"] == "deepseek-r1:32b"


def test_a_model_registered_under_its_base_name_is_refused():
    with pytest.raises(mp.PlanError, match="under its own base's name"):
        mp.plan_models(TIER_32B, defaults={"namespace": ""})


def test_an_unread_host_plans_nothing_but_explicit_extras_still_count():
    assert mp.plan_models(None, [], {}, LAB) == []
    planned = mp.plan_models(None, ["qwq:32b"], {}, LAB)
    assert [p["target"] for p in planned] == ["fleet/qwq:32b"]


def test_layers_add_models_and_later_layers_update_the_same_model():
    planned = mp.plan_models(
        TIER_32B,
        [{"name": "gemma3:27b"}, {"name": "deepseek-r1:32b", "parameters": {"top_k": 20}}],
        {},
        LAB,
    )
    assert [p["name"] for p in planned] == ["deepseek-r1:32b", "gemma3:27b"]
    assert planned[0]["parameters"] == {"top_k": 20}
    assert planned[0]["num_ctx"] == 8192  # the tier's context survives the update
    assert planned[1]["family"] == "gemma3"


def test_parameters_layer_common_then_model_then_override():
    planned = mp.plan_models(
        [{"name": "deepseek-r1:32b", "parameters": {"temperature": 0.5, "top_p": 0.9}}],
        [],
        {"deepseek-r1:32b": {"parameters": {"temperature": 0.7}, "system": "Be brief."}},
        {**LAB, "parameters": {"temperature": 0.1, "num_gpu": 99}},
    )
    assert planned[0]["parameters"] == {"temperature": 0.7, "top_p": 0.9, "num_gpu": 99}
    assert planned[0]["system"] == "Be brief."


def test_gguf_source_from_a_mirror():
    item = one(source="gguf", gguf_base_url="http://mirror:8080/models/")
    assert item["gguf_url"] == "http://mirror:8080/models/deepseek-r1-32b-q4_k_m.gguf"
    assert item["from"] == "/var/cache/localllm-fleet/models/deepseek-r1-32b-q4_k_m.gguf"
    assert item["gguf_path"] == item["from"]


def test_gguf_source_needs_somewhere_to_get_the_file():
    with pytest.raises(mp.PlanError, match="needs ollama_models_gguf_base_url"):
        one(source="gguf")


def test_bad_inputs_are_named():
    with pytest.raises(mp.PlanError, match="source 'ftp' is not one of"):
        one(source="ftp")
    with pytest.raises(mp.PlanError, match="not of the form MODEL"):
        mp.plan_models(["deepseek r1"], defaults=LAB)
    with pytest.raises(mp.PlanError, match="unknown settings \\['temprature'\\]"):
        mp.plan_models([{"name": "qwq:32b", "temprature": 0.1}], defaults=LAB)
    with pytest.raises(mp.PlanError, match="parameters must be a mapping"):
        mp.plan_models([{"name": "qwq:32b", "parameters": ["temperature"]}], defaults=LAB)
    with pytest.raises(mp.PlanError, match="family 'llama' has no Modelfile template"):
        mp.plan_models([{"name": "llama3.3:70b", "family": "llama"}], defaults=LAB)


def test_two_models_cannot_share_a_target():
    with pytest.raises(mp.PlanError, match="would both be registered as 'fleet/x:latest'"):
        mp.plan_models(
            [
                {"name": "qwq:32b", "target": "fleet/x:latest"},
                {"name": "gemma3:27b", "target": "fleet/x:latest"},
            ],
            defaults=LAB,
        )


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("deepseek-r1", "deepseek-r1"),
        ("qwq", "qwq"),
        ("gemma3", "gemma3"),
        ("gemma3-tools", "gemma3"),
        ("llama3.3", "generic"),
        ("deepseek-r1x", "generic"),
    ],
)
def test_families(model, family):
    assert mp.family_of(model) == family


def test_prune_keeps_declared_models_bases_in_use_and_kept_names():
    plan = mp.plan_models(TIER_32B, [], {}, LAB)
    existing = [
        "fleet/deepseek-r1:32b",
        "mirror:8080/library/deepseek-r1:32b",
        "fleet/old-model:latest",
        "scratch",
        "registry.ollama.ai/library/keepme:latest",
    ]
    assert mp.prune_candidates(existing, plan, ["keepme"]) == ["fleet/old-model:latest", "scratch"]


def stream(*messages):
    return "\n".join(json.dumps(m) for m in messages) + "\n"


def test_chat_summary_of_a_reasoning_answer():
    text = stream(
        {"message": {"role": "assistant", "content": "", "thinking": "Hmm"}, "done": False},
        {"message": {"role": "assistant", "content": "Ready"}, "done": False},
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "eval_count": 40,
            "eval_duration": 2_000_000_000,
            "total_duration": 2_500_000_000,
        },
    )
    summary = mp.chat_summary(text)
    assert summary["ok"] and summary["thinking"] == "Hmm" and summary["content"] == "Ready"
    assert summary["tokens_per_second"] == 20.0
    assert summary["done_reason"] == "stop"


def test_chat_summary_reports_streamed_errors_and_truncation():
    assert (
        mp.chat_summary(stream({"error": "model 'x' not found"}))["error"] == "model 'x' not found"
    )
    cut = mp.chat_summary(stream({"message": {"content": "a"}, "done": False}))
    assert not cut["ok"] and "without a final" in cut["error"]
    assert "not NDJSON" in mp.chat_summary("<html>")["error"]


def test_prune_compares_names_as_ollama_does_case_insensitively():
    plan = mp.plan_models(TIER_32B, [], {}, LAB)
    existing = [
        "Fleet/DeepSeek-R1:32B",  # the declared target, spelled differently
        "MIRROR:8080/Library/deepseek-r1:32b",  # the base in use
        "Registry.Ollama.AI/library/KeepMe",  # kept, in its long form
        "registry.ollama.ai/fleet/deepseek-r1:32b",  # the target, in its long form
        "other/deepseek-r1:32b",  # another namespace: not the target
        "not a valid name",
    ]
    assert mp.prune_candidates(existing, plan, ["keepme:latest"]) == [
        "not a valid name",
        "other/deepseek-r1:32b",
    ]
    assert mp.prune_candidates(["Not A Valid Name "], plan, ["not a valid name"]) == []


def gguf_with(sha256):
    declared = [{**TIER_32B[0], "gguf_sha256": sha256}]
    defaults = {**LAB, "source": "gguf", "gguf_base_url": "http://mirror/"}
    return mp.plan_models(declared, defaults=defaults)[0]["gguf_sha256"]


def test_gguf_sha256_is_normalised_or_refused():
    digest = "AB" * 32
    assert gguf_with(f" SHA256:{digest} ") == digest.lower()
    assert gguf_with(None) == ""
    with pytest.raises(mp.PlanError, match="gguf_sha256 'md5:abc' is not a sha256"):
        gguf_with("md5:abc")


@pytest.mark.parametrize("line", ["123", "[1]", '"done"', "null", "true"])
def test_chat_summary_refuses_json_that_is_not_an_object(line):
    summary = mp.chat_summary(stream({"message": {"content": "a"}, "done": False}) + line)
    assert summary == {"ok": False, "error": f"not a JSON object: {line!r}", "chunks": 1}


def test_chat_summary_refuses_a_message_that_is_not_an_object():
    line = '{"message": "x", "done": true}'
    summary = mp.chat_summary(line)
    assert summary == {"ok": False, "error": f"not a chat message: {line!r}", "chunks": 1}
