"""Install from a file on the control node with no mirror reachable."""

import json
import shutil
import tempfile
from pathlib import Path

from lab_checks import project_dir, run_playbook

VERSION = "0.32.15"
ARTIFACT = f".lab/mirror/ollama/v{VERSION}/ollama-linux-amd64.tar.zst"


def test_no_mirror_is_reachable(host):
    assert host.run("curl -sS -m 5 http://mirror:8080/").rc != 0


def test_serving_the_pushed_release(host):
    body = host.check_output("curl -fsS http://127.0.0.1:11434/api/version")
    assert json.loads(body)["version"] == VERSION
    assert host.file(
        f"/var/cache/localllm-fleet/ollama/{VERSION}/ollama-linux-amd64.tar.zst"
    ).exists


def test_a_tampered_artifact_is_refused_on_the_control_node(host):
    before = host.check_output("find /opt/ollama -printf '%p %l %s %T@\\n' | sort | sha256sum")
    with tempfile.TemporaryDirectory() as tmp:
        source = project_dir() / ARTIFACT
        tampered = Path(tmp) / source.name
        shutil.copy(source, tampered)
        shutil.copy(source.with_name("sha256sum.txt"), Path(tmp) / "sha256sum.txt")
        with tampered.open("ab") as handle:
            handle.write(b"\0")
        run = run_playbook(
            "converge.yml",
            extra_vars={"ollama_version": "0.31.4", "ollama_local_artifact": str(tampered)},
        )
    assert run.rc != 0
    assert "the file is corrupt or not this release" in run.output, run.output[-3000:]
    after = host.check_output("find /opt/ollama -printf '%p %l %s %T@\\n' | sort | sha256sum")
    assert after == before
