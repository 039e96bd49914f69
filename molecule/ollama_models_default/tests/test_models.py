"""Models on every host through each source kind; idempotent by content; check mode, prune,
bad input and corrupted bundles. The tests walk one scenario in file order."""

import datetime
import json
import re
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import testinfra
from lab_checks import project_dir, run_playbook

sys.path.insert(0, str(project_dir() / "collections"))

from ansible_collections.localllm.fleet.plugins.module_utils import (
    nvidia_smi,
    tier_policy,
)

EXPECTED = {
    "models-h100x8": ["fleet/deepseek-r1:671b", "fleet/gemma3:27b"],
    "models-rtx4090": ["fleet/deepseek-r1:32b"],
    "models-cpu": ["fleet/deepseek-r1:1.5b"],
}
# The lab profiles' probe outputs, as gpu_tier reads them (the unit tests' fixtures).
PROBES = project_dir() / "tests" / "unit" / "fixtures" / "nvidia" / "probe"
PROFILE = {"models-h100x8": "h100x8", "models-rtx4090": "rtx4090", "models-cpu": "cpu"}
# The context gpu_tier's fit gave each host's first model (molecule.yml host_vars).
NUM_CTX = {"models-h100x8": 32768, "models-rtx4090": 8192, "models-cpu": 4096}
STORE = "/usr/share/ollama/.ollama/models"
# models-cpu's Ollama listens on another port, set only as ollama_host (molecule.yml).
PORT = {"models-h100x8": 11434, "models-rtx4090": 11434, "models-cpu": 11500}


def base_url(host):
    return f"http://127.0.0.1:{PORT[host.backend.get_hostname()]}"


def api(host, path, body=None):
    if body is None:
        return json.loads(host.check_output(f"curl -fsS {base_url(host)}{path}"))
    payload = json.dumps(body).replace("'", "'\\''")
    return json.loads(host.check_output(f"curl -fsS {base_url(host)}{path} -d '{payload}'"))


def names(host):
    return sorted(m["name"] for m in api(host, "/api/tags")["models"])


def params(host, model):
    return api(host, "/api/show", {"model": model})["parameters"]


def store_listing(host):
    return host.check_output(f"find {STORE} -printf '%p %s\\n' | sort | sha256sum")


def host_name(host):
    return host.backend.get_hostname()


def item_changes(output, task):
    """(host, item) pairs a task reported changed, from ansible-playbook's output."""
    section = (
        output.split(f"TASK [{task}")[1].split("TASK [")[0] if f"TASK [{task}" in output else ""
    )
    return sorted(re.findall(r"changed: \[([^\]]+)\] => \(item=([^ )]+)", section))


def test_ollama_listens_where_ollama_host_says(host):
    ports = (":11434", ":11500")
    listeners = [s for s in host.socket.get_listening_sockets() if s.endswith(ports)]
    assert listeners == [f"tcp://127.0.0.1:{PORT[host_name(host)]}"]


def test_each_host_serves_its_tier_models(host):
    served = names(host)
    for model in EXPECTED[host_name(host)]:
        assert f"{model}" in served or f"{model}" in [n.removesuffix(":latest") for n in served]
    for model in EXPECTED[host_name(host)]:
        modelfile = model.replace("/", "_").replace(":", "_") + ".Modelfile"
        assert host.file(f"/etc/ollama/modelfiles/{modelfile}").is_file


def test_the_tier_context_and_family_sampling_are_registered(host):
    model = EXPECTED[host_name(host)][0]
    text = params(host, model)
    # num_ctx is the tier's (molecule.yml host_vars); the bases carry none. The sampling is
    # DeepSeek's recommendation, which the template writes (and the library's bases also hold).
    assert re.search(rf"num_ctx\s+{NUM_CTX[host_name(host)]}\b", text), text
    assert re.search(r"temperature\s+0\.6", text), text
    assert re.search(r"top_p\s+0\.95", text), text


def test_bases_came_through_their_source(host):
    served = names(host)
    name = host_name(host)
    if name == "models-h100x8":
        assert "mirror:8080/library/deepseek-r1:671b" in served
    elif name == "models-rtx4090":
        assert host.file("/var/cache/localllm-fleet/models/deepseek-r1-32b-q4_k_m.gguf").exists
    else:
        assert any(n.startswith("deepseek-r1:1.5b") for n in served)


def test_a_reasoning_model_thinks(host):
    model = EXPECTED[host_name(host)][0]
    reply = api(
        host,
        "/api/chat",
        {
            "model": model,
            "stream": False,
            "think": True,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        },
    )
    assert reply["message"]["content"]
    assert reply["message"].get("thinking")


def environment(host) -> dict[str, str]:
    text = host.check_output("systemctl show ollama -p Environment --value")
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def test_the_drop_in_carries_the_fits_settings(host):
    name = host_name(host)
    decision = tier_policy.classify(
        nvidia_smi.parse_probe_output((PROBES / f"lab-{PROFILE[name]}.txt").read_text())
    ).decision
    settings = environment(host)
    # the context the fit gave the tier's model, never Ollama's VRAM default (256k here)
    assert int(settings["OLLAMA_CONTEXT_LENGTH"]) == decision.num_ctx
    assert int(settings["OLLAMA_NUM_PARALLEL"]) == decision.num_parallel
    assert settings["OLLAMA_KV_CACHE_TYPE"] == decision.kv_cache_type
    extra = len(EXPECTED[name]) - len(decision.models)
    assert int(settings["OLLAMA_MAX_LOADED_MODELS"]) == decision.max_loaded_models + extra
    assert settings["OLLAMA_KEEP_ALIVE"] == "5m"


def ps(host) -> dict[str, dict]:
    return {m["name"]: m for m in api(host, "/api/ps")["models"]}


def expires_in(entry: dict) -> float:
    stamp = re.sub(r"\.\d+", "", entry["expires_at"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp() - time.time()


FOREVER = 100 * 365 * 86400  # keep_alive -1: Ollama's largest duration, centuries ahead


def test_the_tier_model_is_kept_loaded_in_vram_and_others_expire(host):
    name = host_name(host)
    tier_model = EXPECTED[name][0]
    for other in EXPECTED[name][1:]:  # asked now: loaded with OLLAMA_KEEP_ALIVE
        api(host, "/api/chat", {"model": other, "stream": False,
                                "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    loaded = ps(host)
    assert expires_in(loaded[tier_model]) > FOREVER, loaded[tier_model]
    for other in EXPECTED[name][1:]:
        assert 0 < expires_in(loaded[other]) <= 5 * 60 + 5, loaded[other]
    if name != "models-cpu":
        assert loaded[tier_model]["size_vram"] == loaded[tier_model]["size"]  # 100% GPU
    assert host.service("ollama-preload").is_enabled


def test_after_a_restart_the_tier_model_is_loaded_again_and_kept(host):
    if host_name(host) != "models-rtx4090":
        pytest.skip("shown on one host")
    host.check_output("systemctl restart ollama")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        entry = (
            ps(host).get("fleet/deepseek-r1:32b")
            if host.run("curl -fsS localhost:11434").rc == 0
            else None
        )
        if entry and expires_in(entry) > FOREVER:
            break
        time.sleep(2)
    else:
        pytest.fail("fleet/deepseek-r1:32b was not loaded again after the restart")
    assert host.service("ollama-preload").is_running  # active (exited), bound to ollama


def test_the_gpu_check_passes_where_the_models_sit_in_vram(host):
    once(host)
    run = run_playbook(project_dir() / "playbooks" / "gpu-check.yml")
    assert run.rc == 0 and run.failed() == 0, run.output[-3000:]
    text = " ".join(run.output.split())
    assert "Ollama found 8 CUDA device(s): NVIDIA H100 80GB HBM3" in text
    assert "Ollama found 1 CUDA device(s): NVIDIA GeForce RTX 4090" in text
    assert "fleet/deepseek-r1:671b: 100% GPU" in text
    assert "models-cpu serves on the CPU" in text


def test_a_card_too_small_for_the_model_fails_the_smoke_test_with_the_figures(host):
    once(host)
    too_big = {"ollama_models": [{"name": "deepseek-r1:70b", "family": "deepseek-r1",
                                  "parameter_size": "70b", "num_ctx": 8192}]}  # fmt: skip
    run = run_playbook("models.yml", extra_vars=too_big, limit="models-rtx4090")
    assert run.rc != 0
    text = " ".join(run.output.split())
    assert re.search(
        r"fleet/deepseek-r1:70b failed its smoke test: runs \d+%/\d+% CPU/GPU: [\d.]+ GiB of "
        r"[\d.]+ GiB in VRAM at num_ctx 8192 \(expected 100% GPU\)",
        text,
    ), run.output[-3000:]
    # the next runs of models.yml put deepseek-r1:32b back in its place


def once(host):
    if host_name(host) != "models-rtx4090":
        pytest.skip("scenario-wide step, run once")


CHANGE = {"ollama_models_overrides": {"deepseek-r1:32b": {"parameters": {"temperature": 0.5}}}}


def test_check_mode_predicts_a_parameter_change_without_making_it(host):
    once(host)
    run = run_playbook("models.yml", extra_vars=CHANGE, check=True, diff=True)
    assert run.rc == 0, run.output[-3000:]
    assert item_changes(run.output, "ollama_models : Register each model") == [
        ("models-rtx4090", "fleet/deepseek-r1:32b")
    ], run.output[-3000:]
    assert "temperature 0.5" in run.output  # the diff shows the Modelfile after
    assert re.search(r"temperature\s+0\.6", params(host, "fleet/deepseek-r1:32b"))


def test_one_parameter_changes_exactly_that_model(host):
    once(host)
    run = run_playbook("models.yml", extra_vars=CHANGE)
    assert run.rc == 0, run.output[-3000:]
    assert item_changes(run.output, "ollama_models : Register each model") == [
        ("models-rtx4090", "fleet/deepseek-r1:32b")
    ]
    # the other hosts change nothing (a converge's smoke stamp holds for models.yml too)
    changed = re.findall(r"^changed: \[(models-h100x8|models-cpu)\]", run.output, re.M)
    assert changed == [], run.output[-6000:]
    assert run.changed("models-h100x8") == 0 and run.changed("models-cpu") == 0
    assert re.search(r"temperature\s+0\.5", params(host, "fleet/deepseek-r1:32b"))
    again = run_playbook("models.yml", extra_vars=CHANGE)
    assert again.rc == 0 and again.changed() == 0, again.output[-3000:]


def test_prune_removes_an_undeclared_model_only_when_asked(host):
    once(host)
    host.check_output("printf 'FROM fleet/deepseek-r1:32b\\nPARAMETER top_k 7\\n' > /tmp/Stray")
    host.check_output("ollama create stray -f /tmp/Stray")
    kept = run_playbook("models.yml", extra_vars=CHANGE, limit="models-rtx4090")
    assert kept.rc == 0 and "stray:latest" in names(host)
    pruned = run_playbook(
        "models.yml", extra_vars={**CHANGE, "ollama_models_prune": True}, limit="models-rtx4090"
    )
    assert pruned.rc == 0, pruned.output[-3000:]
    served = names(host)
    assert "stray:latest" not in served
    assert "fleet/deepseek-r1:32b" in served


def test_a_bad_parameter_fails_on_the_controller_before_any_host_changes(host):
    once(host)
    before = store_listing(host)
    bad = {"ollama_models_overrides": {"deepseek-r1:32b": {"parameters": {"temperature": "hot"}}}}
    run = run_playbook("models.yml", extra_vars=bad)
    assert run.rc != 0
    assert "invalid float value [hot]" in run.output, run.output[-3000:]
    assert "Render and validate every Modelfile" in run.output
    assert run.changed() == 0
    assert store_listing(host) == before


def test_a_bundle_with_a_corrupted_blob_leaves_the_store_as_it_was(host):
    if host_name(host) != "models-cpu":
        pytest.skip("the bundle host")
    for model in names(host):  # the CLI, like an operator's shell, is told where Ollama is
        host.check_output(f"OLLAMA_HOST={base_url(host)} ollama rm {model}")
    before = store_listing(host)
    source = project_dir() / ".lab/mirror/bundles/lab-models.tar"
    with tempfile.TemporaryDirectory() as tmp:
        corrupted = Path(tmp) / "lab-models.tar"
        shutil.copy(source, corrupted)
        with tarfile.open(source) as archive:
            blob = max((m for m in archive.getmembers() if "blobs" in m.name), key=lambda m: m.size)
            offset = blob.offset_data + blob.size // 2
        with corrupted.open("r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))
        run = run_playbook(
            "models.yml",
            extra_vars={"ollama_models_bundle": str(corrupted), "ollama_models_smoke": False},
            limit="models-cpu",
        )
    assert run.rc != 0
    assert "is corrupt in the bundle" in run.output, run.output[-3000:]
    assert "nothing was imported" in run.output
    assert store_listing(host) == before
    # The good bundle brings the host back (and the rest of the scenario needs its models).
    restored = run_playbook("models.yml", limit="models-cpu")
    assert restored.rc == 0, restored.output[-3000:]
    assert "fleet/deepseek-r1:1.5b" in names(host)


# ------------------------------------------------------------------ rolling upgrades

BROKEN_INFERENCE = "0.32.17"  # answers /api/version; every load and chat is an HTTP 500


def versions(host) -> set[str]:
    return set(host.check_output("ls /opt/ollama/versions").split())


def test_an_upgrade_whose_model_cannot_answer_is_rolled_back_and_the_rollout_stops(host):
    once(host)
    upgrade = project_dir() / "playbooks" / "upgrade.yml"
    run = run_playbook(upgrade, extra_vars={"ollama_version": BROKEN_INFERENCE})
    assert run.rc != 0
    text = " ".join(run.output.split())
    tried = [h for h, counts in run.recap.items() if counts["failed"]]
    assert len(tried) == 1, run.recap  # fleet_serial 1, max_fail_percentage 0: it stops there
    assert (
        f"Ollama {BROKEN_INFERENCE} answered on http://127.0.0.1:{PORT[tried[0]]}/api/version "
        "but failed its health chat:" in text
    ), text[-3000:]
    assert "HTTP 500 llama runner process has terminated" in text
    assert "Rolled back to 0.32.15" in text
    for name in EXPECTED:
        other = testinfra.get_host(f"podman://{name}")
        assert api(other, "/api/version") == {"version": "0.32.15"}
        assert (BROKEN_INFERENCE in versions(other)) == (name in tried), name


def test_a_host_that_fails_its_smoke_test_after_an_upgrade_is_put_back(host):
    if host_name(host) != "models-cpu":
        pytest.skip("shown on one host")
    upgrade = project_dir() / "playbooks" / "upgrade.yml"
    # the role's own chat left out: the smoke test is what catches it
    extra = {"ollama_version": BROKEN_INFERENCE, "ollama_health_model": ""}
    run = run_playbook(upgrade, extra_vars=extra, limit="models-cpu")
    assert run.rc != 0
    text = " ".join(run.output.split())
    assert f"models-cpu failed its smoke test on Ollama {BROKEN_INFERENCE}" in text, text[-3000:]
    assert "Rolled back to 0.32.15, which is serving again" in text
    assert api(host, "/api/version") == {"version": "0.32.15"}
