"""Models on every host through each source kind; idempotent by content; check mode, prune,
bad input and corrupted bundles. The tests walk one scenario in file order."""

import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from lab_checks import project_dir, run_playbook

EXPECTED = {
    "models-h100x8": ["fleet/deepseek-r1:671b"],
    "models-rtx4090": ["fleet/deepseek-r1:32b", "fleet/gemma3:27b"],
    "models-cpu": ["fleet/deepseek-r1:1.5b"],
}
# The context gpu_tier's fit gave each host's first model (molecule.yml host_vars).
NUM_CTX = {"models-h100x8": 32768, "models-rtx4090": 8192, "models-cpu": 4096}
STORE = "/usr/share/ollama/.ollama/models"


def api(host, path, body=None):
    if body is None:
        return json.loads(host.check_output(f"curl -fsS http://127.0.0.1:11434{path}"))
    payload = json.dumps(body).replace("'", "'\\''")
    return json.loads(host.check_output(f"curl -fsS http://127.0.0.1:11434{path} -d '{payload}'"))


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
    assert run.changed("models-h100x8") == 0 and run.changed("models-cpu") == 0
    assert re.search(r"temperature\s+0\.5", params(host, "fleet/deepseek-r1:32b"))
    again = run_playbook("models.yml", extra_vars=CHANGE)
    assert again.rc == 0 and again.changed() == 0, again.output[-3000:]


def test_prune_removes_an_undeclared_model_only_when_asked(host):
    once(host)
    host.check_output("printf 'FROM fleet/gemma3:27b\\nPARAMETER top_k 7\\n' > /tmp/Stray")
    host.check_output("ollama create stray -f /tmp/Stray")
    kept = run_playbook("models.yml", extra_vars=CHANGE, limit="models-rtx4090")
    assert kept.rc == 0 and "stray:latest" in names(host)
    pruned = run_playbook(
        "models.yml", extra_vars={**CHANGE, "ollama_models_prune": True}, limit="models-rtx4090"
    )
    assert pruned.rc == 0, pruned.output[-3000:]
    served = names(host)
    assert "stray:latest" not in served
    assert {"fleet/deepseek-r1:32b", "fleet/gemma3:27b"} <= set(served)


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
    for model in names(host):
        host.check_output(f"ollama rm {model}")
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
