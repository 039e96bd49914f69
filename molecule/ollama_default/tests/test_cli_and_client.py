"""On a host the role installed: Ollama's CLI and the official Python client, end to end.

`ollama create m -f Modelfile` with `FROM ./tiny.gguf`, then list, show --modelfile, a
streamed /api/chat and rm, as an operator would on the host; and the official `ollama`
client library (which nobody here wrote) driving the same server from the control node
through an SSH tunnel: list, show, create, chat, delete.
"""

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import ollama
import pytest
import yaml
from lab_checks import write_tiny_gguf

HOST = "ollama-debian12"


@pytest.fixture(scope="module")
def tiny_gguf():
    with tempfile.TemporaryDirectory() as tmp:
        yield write_tiny_gguf(Path(tmp) / "tiny.gguf", blocks=2, context=4096)


@pytest.fixture(scope="module")
def tunnel():
    """127.0.0.1:<port> on the controller forwarded to the host's loopback API."""
    instances = yaml.safe_load(Path(os.environ["MOLECULE_INSTANCE_CONFIG"]).read_text())
    instance = next(i for i in instances if i["instance"] == HOST)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    known_hosts = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "known_hosts"
    process = subprocess.Popen(
        [
            "ssh",
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-i",
            instance["identity_file"],
            "-p",
            str(instance["port"]),
            "-L",
            f"127.0.0.1:{local}:127.0.0.1:11434",
            f"{instance['user']}@{instance['address']}",
        ],
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def only_debian(host):
    if host.backend.get_hostname() != HOST:
        pytest.skip("exercised once, on the Debian host")


def test_cli_create_list_show_chat_rm(host, tiny_gguf):
    only_debian(host)
    host.check_output("mkdir -p /root/work")
    subprocess.run(["podman", "cp", str(tiny_gguf), f"{HOST}:/root/work/tiny.gguf"], check=True)
    host.check_output(
        "printf 'FROM ./tiny.gguf\\nPARAMETER temperature 0.3\\nSYSTEM You are terse.\\n'"
        " > /root/work/Modelfile"
    )
    created = host.run("cd /root/work && ollama create m -f Modelfile")
    assert created.rc == 0, created.stderr
    assert "writing manifest" in created.stderr and "success" in created.stderr

    listing = host.check_output("ollama list")
    assert listing.splitlines()[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert any(line.startswith("m:latest ") for line in listing.splitlines())

    modelfile = host.check_output("ollama show m --modelfile")
    assert "PARAMETER temperature 0.3" in modelfile
    assert "SYSTEM You are terse." in modelfile

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello"}]})
    stream = host.check_output(f"curl -fsSN http://127.0.0.1:11434/api/chat -d '{body}'")
    lines = [json.loads(line) for line in stream.splitlines()]
    assert len(lines) > 2 and all(not line["done"] for line in lines[:-1])
    final = lines[-1]
    assert final["done"] and final["done_reason"] in ("stop", "length")
    assert final["eval_count"] > 0 and final["eval_duration"] > 0
    assert "".join(line["message"]["content"] for line in lines).strip()

    assert host.check_output("ollama rm m") == "deleted 'm'"
    missing = host.run("ollama rm m")
    assert missing.rc == 1 and "Error: model 'm' not found" in missing.stderr


def test_the_official_python_client(host, tiny_gguf, tunnel):
    only_debian(host)
    subprocess.run(["podman", "cp", str(tiny_gguf), f"{HOST}:/root/work/tiny.gguf"], check=True)
    host.check_output("cd /root/work && ollama create base -f Modelfile")
    client = ollama.Client(host=tunnel)

    assert "base:latest" in [m.model for m in client.list().models]
    client.create(
        model="tuned", from_="base", system="Answer in one word.", parameters={"temperature": 0.1}
    )
    shown = client.show("tuned")
    assert "SYSTEM Answer in one word." in (shown.modelfile or "")
    assert "temperature" in (shown.parameters or "")

    parts = list(
        client.chat(model="tuned", stream=True, messages=[{"role": "user", "content": "Ready?"}])
    )
    assert parts[-1].done and parts[-1].eval_count
    assert "".join(p.message.content or "" for p in parts).strip()

    client.delete("tuned")
    client.delete("base")
    assert not {"tuned:latest", "base:latest"} & {m.model for m in client.list().models}
