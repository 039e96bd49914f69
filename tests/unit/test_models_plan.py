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
        ("deepseek-r1:70b", "deepseek-r1"),
        ("acme/qwq-tuned:32b", "qwq"),  # a catalog name with a namespace
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


# ------------------------------------------------------------------------------ smoke test


def answer(content="", thinking="", done_reason="stop", tokens=10):
    lines = []
    if thinking:
        lines.append({"message": {"role": "assistant", "content": "", "thinking": thinking}})
    lines.append({"message": {"role": "assistant", "content": content}, "done": False})
    lines.append(
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": done_reason,
            "eval_count": tokens,
            "eval_duration": 1_000_000_000,
        }
    )
    return stream(*lines)


@pytest.mark.parametrize(
    ("content", "thinking", "expected"),
    [
        ("<think>\nHmm, 17.\n</think>\n\nYes.", "", ("Yes.", "Hmm, 17.")),  # older servers
        ("Hmm, 17.\n</think>\n\nYes.", "", ("Yes.", "Hmm, 17.")),  # QwQ: <think> in the prompt
        ("Sure. <think>x</think> Yes.", "", ("Sure.  Yes.", "x")),
        ("Yes.", "Hmm", ("Yes.", "Hmm")),  # already apart: untouched
        ("No tags at all.", "", ("No tags at all.", "")),
    ],
)
def test_inline_thinking_is_split_from_the_answer(content, thinking, expected):
    assert mp.split_thinking(content, thinking) == expected
    summary = mp.chat_summary(answer(content, thinking))
    assert (summary["content"], summary["thinking"]) == expected


def registered(item, status=200, content=None, body=None, msg=None):
    result = {"item": item, "status": status}
    if content is not None:
        result["content"] = content
    if body is not None:
        result["json"] = body
    if msg is not None:
        result["msg"] = msg
    return result


R1 = {"name": "deepseek-r1:32b", "target": "fleet/deepseek-r1:32b", "num_ctx": 8192}
GEMMA = {"name": "gemma3:4b", "target": "fleet/gemma3:4b", "num_ctx": 8192}
NOW = 1_800_000_000.0
FOREVER = "2318-03-01T10:00:00Z"
SOON = "2027-01-15T08:05:00Z"


def ps(*entries):
    keys = ("name", "size", "size_vram", "expires_at")
    assert all(len(e) == len(keys) for e in entries)
    return {"models": [dict(zip(keys, e)) for e in entries]}  # noqa: B905 - checked; 3.9


def smoke(live, reasoning=(), loaded=(), expect_gpu=True, kept="fleet/deepseek-r1:32b", **kw):
    shows = [
        registered(R1, body={"capabilities": ["completion", "thinking"]}),
        registered(GEMMA, body={"capabilities": ["completion", "vision"]}),
    ]
    return {
        r["model"]: r
        for r in mp.smoke_results(
            [R1, GEMMA], shows, live, list(reasoning), ps(*loaded), expect_gpu, kept,
            now=NOW, **kw,
        )
    }  # fmt: skip


def good_live():
    return [registered(R1, content=answer("ready")), registered(GEMMA, content=answer("ready"))]


def test_a_healthy_host_passes_with_the_tier_model_kept_in_vram():
    results = smoke(
        good_live(),
        [registered(R1, content=answer("Yes.", "17 has no divisor but 1 and itself."))],
        [("fleet/deepseek-r1:32b", 100, 100, FOREVER), ("fleet/gemma3:4b", 50, 50, SOON)],
    )
    r1, gemma = results["fleet/deepseek-r1:32b"], results["fleet/gemma3:4b"]
    assert r1["passed"] and r1["ok"] and r1["status"] == "passed" and r1["error"] is None
    assert (r1["reasoning"], r1["thinking"], r1["content"]) == (
        True,
        "17 has no divisor but 1 and itself.",
        "ready",
    )
    assert (r1["processor"], r1["gpu_percent"], r1["preloaded"], r1["kept_loaded"]) == (
        "100% GPU", 100, True, True,
    )  # fmt: skip
    assert r1["checks"] == {
        "live": "passed", "reasoning": "passed", "placement": "passed", "kept_loaded": "passed",
    }  # fmt: skip
    assert gemma["passed"] and not gemma["reasoning"] and gemma["kept_loaded"] is None


def test_a_partial_gpu_placement_fails_with_the_figures_or_warns():
    loaded = [("fleet/deepseek-r1:32b", 40 * 2**30, 22 * 2**30, FOREVER)]
    results = smoke(good_live(), [registered(R1, content=answer("Yes.", "t"))], loaded)
    r1 = results["fleet/deepseek-r1:32b"]
    assert not r1["passed"] and r1["gpu_percent"] == 55
    assert r1["error"] == (
        "runs 45%/55% CPU/GPU: 22.0 GiB of 40.0 GiB in VRAM at num_ctx None (expected 100% GPU)"
    )
    warned = smoke(
        good_live(), [registered(R1, content=answer("Yes.", "t"))], loaded,
        placement_action="warn",
    )["fleet/deepseek-r1:32b"]  # fmt: skip
    assert warned["passed"] and warned["checks"]["placement"] == "warned"
    assert warned["warning"].startswith("runs 45%/55% CPU/GPU")
    on_cpu = smoke(
        good_live(), [registered(R1, content=answer("Yes.", "t"))], loaded, expect_gpu=False
    )["fleet/deepseek-r1:32b"]
    assert on_cpu["passed"]  # a CPU host: where it sits is reported, not judged


def test_a_reasoning_model_that_runs_out_of_budget_or_does_not_think_fails():
    loaded = [("fleet/deepseek-r1:32b", 1, 1, FOREVER)]
    long = smoke(good_live(), [registered(R1, content=answer("", "a" * 50, "length", 2048))],
                 loaded)["fleet/deepseek-r1:32b"]  # fmt: skip
    assert "ran out of its token budget (done_reason 'length' after 2048 tokens)" in long["error"]
    silent = smoke(good_live(), [registered(R1, content=answer("Yes."))], loaded)
    assert silent["fleet/deepseek-r1:32b"]["error"] == "no thinking from a reasoning model"
    mixed = smoke(good_live(), [registered(R1, content=answer("<think>x"))], loaded)
    assert "no thinking" in mixed["fleet/deepseek-r1:32b"]["error"]


def test_a_release_whose_inference_fails_fails_every_model_with_its_error():
    broken = [
        registered(m, status=500, body={"error": "llama runner process has terminated"})
        for m in (R1, GEMMA)
    ]
    results = smoke(broken, broken[:1])
    for result in results.values():
        assert not result["passed"]
        assert "HTTP 500: llama runner process has terminated" in result["error"]
    unreachable = smoke([registered(R1, status=-1, msg="Connection refused")], ())
    assert "no answer: Connection refused" in unreachable["fleet/deepseek-r1:32b"]["error"]


def test_the_kept_model_must_be_loaded_and_never_expire():
    unloaded = smoke(good_live(), [registered(R1, content=answer("Y", "t"))], [])
    assert "not loaded after the test" in unloaded["fleet/deepseek-r1:32b"]["error"]
    reset = smoke(
        good_live(), [registered(R1, content=answer("Y", "t"))],
        [("fleet/deepseek-r1:32b", 1, 1, SOON)],
    )  # fmt: skip
    assert (
        "loaded but not kept: it expires at 2027-01-15T08:05:00Z"
        in (reset["fleet/deepseek-r1:32b"]["error"])
    )
    assert reset["fleet/deepseek-r1:32b"]["kept_loaded"] is False


def test_placement_reads_like_ollama_ps():
    assert mp.placement(100, 100) == {"processor": "100% GPU", "gpu_percent": 100}
    assert mp.placement(100, 0) == {"processor": "100% CPU", "gpu_percent": 0}
    assert mp.placement(100, 52) == {"processor": "48%/52% CPU/GPU", "gpu_percent": 52}
    assert mp.placement(0, 5)["processor"] == "Unknown"
    where = mp.model_placement(ps(("fleet/m:1b", 2**31, 2**31, FOREVER)), "FLEET/M:1B")
    assert where["loaded"] and where["gpu_percent"] == 100
    assert "2.0 GiB of 2.0 GiB in VRAM" in where["detail"]
    assert mp.model_placement({}, "x")["loaded"] is False


def test_the_reasoning_budget_fits_the_context():
    assert mp.reasoning_budget(8192, 2048) == 2048
    assert mp.reasoning_budget(1024, 2048) == 768
    assert mp.reasoning_budget(None, 2048) == 2048
    assert mp.reasoning_budget(100, 2048) == 64


def test_thinking_models_come_from_show():
    shows = [
        registered(R1, body={"capabilities": ["completion", "thinking"]}),
        registered(GEMMA, status=404, body={"error": "not found"}),
        {"item": GEMMA, "skipped": True},
    ]
    assert mp.thinking_models(shows) == ["fleet/deepseek-r1:32b"]


JOURNAL = """\
time=2026-12-06T05:00:00.000Z level=INFO source=routes.go:1950 msg="server config" env="map[]"
time=2026-12-06T05:00:01.000Z level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="31.3 GiB" available="30.4 GiB"
time=2026-12-06T06:00:00.000Z level=INFO source=routes.go:1950 msg="server config" env="map[]"
time=2026-12-06T06:00:01.000Z level=INFO source=types.go:42 msg="inference compute" id=GPU-1 filter_id="" library=CUDA compute=8.9 name=CUDA0 description="NVIDIA GeForce RTX 4090" libdirs=ollama,cuda_v12 driver=12.4 pci_id=0000:01:00.0 type=discrete total="24.0 GiB" available="23.6 GiB"
"""  # noqa: E501 - real log lines


def test_the_last_start_of_ollama_tells_the_cuda_devices_it_found():
    found = mp.startup_devices(JOURNAL)
    assert found["started"] and not found["cpu_only"] and found["lines"] == []
    assert found["cuda"] == [
        {"id": "GPU-1", "name": "CUDA0", "description": "NVIDIA GeForce RTX 4090",
         "compute": "8.9", "total": "24.0 GiB", "available": "23.6 GiB"},
    ]  # fmt: skip
    old = JOURNAL.rsplit("time=2026-12-06T06:00:01", 1)[0] + (
        'time=x level=WARN source=cuda_compat.go:70 msg="NVIDIA driver too old" '
        'device="Tesla T4" compute=7.5 driver=535 required_driver="550 or newer"\n'
        'time=x level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu\n'
    )
    fallback = mp.startup_devices(old)
    assert fallback["cuda"] == [] and fallback["cpu_only"]
    assert fallback["too_old"] and 'msg="NVIDIA driver too old"' in fallback["lines"][0]
    assert mp.startup_devices("")["started"] is False
