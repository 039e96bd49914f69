"""The end-to-end scenario driven through the official `ollama` Python client (a client this
project did not write) against the Ollama stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

import ollama
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama"))

from standin_testing import Ollama, registry

pytest_plugins = ["standin_fixtures"]


@pytest.fixture
def client(server: Ollama) -> ollama.Client:
    return ollama.Client(host=f"http://{server.host}")


def test_official_client_create_list_show_chat_delete(
    client: ollama.Client, tiny_gguf: Path
) -> None:
    digest = client.create_blob(tiny_gguf)
    assert digest.startswith("sha256:")
    progress = list(
        client.create(
            model="py",
            files={"tiny.gguf": digest},
            parameters={"temperature": 0.6, "stop": ["<end>"]},
            system="Be brief.",
            stream=True,
        )
    )
    assert progress[0].status == "parsing GGUF"
    assert progress[-1].status == "success"

    listed = client.list()
    assert [m.model for m in listed.models] == ["py:latest"]
    entry = listed.models[0]
    assert entry.size and entry.size > 1000
    assert (
        entry.details
        and entry.details.family == "qwen2"
        and entry.details.quantization_level == "Q4_K_M"
    )
    assert entry.modified_at is not None

    shown = client.show("py")
    assert shown.details and shown.details.format == "gguf"
    assert (
        shown.modelfile
        and "SYSTEM Be brief." in shown.modelfile
        and "PARAMETER stop <end>" in shown.modelfile
    )
    assert shown.parameters and "temperature" in shown.parameters
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.capabilities == ["completion"]

    chunks = list(
        client.chat(model="py", messages=[{"role": "user", "content": "Hello!"}], stream=True)
    )
    assert len(chunks) > 2 and all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason == "stop"
    assert final.eval_count == len(chunks) - 1 and final.total_duration and final.prompt_eval_count
    streamed = "".join(c.message.content or "" for c in chunks)
    whole = client.chat(model="py", messages=[{"role": "user", "content": "Hello!"}])
    assert whole.message.content == streamed

    generated = client.generate(model="py", prompt="Hello!", options={"num_predict": 4})
    assert generated.done_reason == "length" and generated.eval_count == 4

    assert client.create(model="py2", from_="py", system="Other.").status == "success"
    assert "SYSTEM Other." in (client.show("py2").modelfile or "")
    assert {m.model for m in client.ps().models} == {"py:latest"}

    assert client.delete("py").status == "success"
    assert client.delete("py2").status == "success"
    assert client.list().models == []
    with pytest.raises(ollama.ResponseError, match="model 'py' not found") as missing:
        client.delete("py")
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError, match="model 'py' not found"):
        client.chat(model="py", messages=[{"role": "user", "content": "x"}])


def test_official_client_pull_and_think(client: ollama.Client, mirror: Path) -> None:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/qwq:32b"
        statuses = [p.status for p in client.pull(name, insecure=True, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "thinking" in (client.show(name).capabilities or [])
    reply = client.chat(
        model=name, messages=[{"role": "user", "content": "Think first."}], think=True
    )
    assert reply.message.thinking and reply.message.content
    quiet = client.chat(
        model=name, messages=[{"role": "user", "content": "Think first."}], think=False
    )
    assert not quiet.message.thinking and quiet.message.content
