"""Conformance of the Ollama stand-in (tests/standins/ollama) with Ollama v0.32.15.

The release artifact is built and extracted once; `ollama serve` runs from it under the
machine's python3 on an ephemeral loopback port with a temporary OLLAMA_MODELS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama"))

from standin_testing import Ollama, registry, serving

pytest_plugins = ["standin_fixtures"]

BLOB_DIGEST_RE = re.compile(r"^sha256-[0-9a-f]{64}$")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_modelfile(directory: Path, text: str) -> Path:
    path = directory / "Modelfile"
    path.write_text(text)
    return path


def create(server: Ollama, name: str, gguf: Path, extra: str = "") -> None:
    modelfile = write_modelfile(gguf.parent, f"FROM ./{gguf.name}\n{extra}")
    result = server.run("create", name, "-f", str(modelfile))
    assert result.code == 0, result.stderr
    assert "success" in result.clean_stderr


def manifest_digest(server: Ollama, name: str) -> str:
    status, tags = (
        server.request("GET", "/api/tags")[0],
        json.loads(server.request("GET", "/api/tags")[2]),
    )
    assert status == 200
    return next(m["digest"] for m in tags["models"] if m["name"] == name)


def loaded(server: Ollama, settle: float = 5.0) -> list[str]:
    """Names in /api/ps once unloading settles: like upstream, a model is released just
    after its last response is sent."""
    deadline = time.monotonic() + settle
    while True:
        names = [m["name"] for m in json.loads(server.request("GET", "/api/ps")[2])["models"]]
        if not names or time.monotonic() > deadline:
            return names
        time.sleep(0.05)


def store_files(server: Ollama) -> list[str]:
    return sorted(
        str(p.relative_to(server.models)) for p in server.models.rglob("*") if p.is_file()
    )


# ------------------------------------------------------------------------- basics


def test_root_version_and_routing(server: Ollama) -> None:
    status, headers, body = server.request("GET", "/")
    assert (status, body) == (200, b"Ollama is running")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert server.request("HEAD", "/")[0] == 200
    status, headers, body = server.request("GET", "/api/version")
    assert (status, body) == (200, b'{"version":"0.32.15"}')
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert server.request("GET", "/api/nope")[:3:2] == (404, b"404 page not found")
    assert server.request("GET", "/api/chat")[:3:2] == (405, b"405 method not allowed")
    assert server.request("GET", "/api/tags")[2] == b'{"models":[]}'
    assert server.request("GET", "/api/ps")[2] == b'{"models":[]}'


def test_foreign_host_header_is_refused_on_loopback(server: Ollama) -> None:
    assert server.request("GET", "/api/tags", headers={"Host": "evil.example.com"})[0] == 403
    assert server.request("GET", "/api/tags", headers={"Host": "localhost:11434"})[0] == 200
    assert server.request("GET", "/", headers={"Origin": "https://evil.example.com"})[0] == 403


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        (b"{bad", "invalid character 'b' looking for beginning of object key string"),
        (b'{"model":', "unexpected EOF"),
        (
            b'{"model": 1}',
            "json: cannot unmarshal number into Go struct field ShowRequest.model of type string",
        ),
        (b"[]", "json: cannot unmarshal array into Go value of type api.ShowRequest"),
    ],
)
def test_malformed_json_gets_gos_decoder_errors(server: Ollama, body: bytes, message: str) -> None:
    status, _headers, payload = server.request("POST", "/api/show", body)
    assert status == 400
    assert json.loads(payload) == {"error": message}


def test_unknown_model_errors(server: Ollama) -> None:
    assert server.post("/api/show", {"model": "nope"}) == (
        404,
        {"error": "model 'nope:latest' not found"},
    )
    assert server.post("/api/chat", {"model": "nope", "messages": []}) == (
        404,
        {"error": "model 'nope' not found"},
    )
    assert server.post("/api/generate", {"model": "nope"}) == (
        404,
        {"error": "model 'nope' not found"},
    )
    status, _h, payload = server.request("DELETE", "/api/delete", {"model": "nope"})
    assert (status, json.loads(payload)) == (404, {"error": "model 'nope' not found"})
    assert server.post("/api/show", {}) == (400, {"error": "model is required"})
    assert server.post("/api/chat", {"model": "bad name!", "messages": []}) == (
        400,
        {"error": "invalid model name"},
    )


# -------------------------------------------------------------------------- blobs


def test_blob_upload_verifies_the_digest(server: Ollama) -> None:
    data = b"GGUF not really, just bytes"
    digest = sha(data)
    assert server.request("HEAD", f"/api/blobs/{digest}")[0] == 404
    status, _h, payload = server.request("POST", "/api/blobs/sha256:1234", data)
    assert (status, json.loads(payload)) == (400, {"error": "invalid digest format"})
    assert server.request("HEAD", "/api/blobs/sha256:xyz")[0] == 400
    wrong = sha(b"something else")
    status, _h, payload = server.request("POST", f"/api/blobs/{wrong}", data)
    assert status == 400
    assert json.loads(payload) == {"error": f'digest mismatch, expected "{wrong}", got "{digest}"'}
    assert store_files(server) == []  # nothing kept, not even under the right name
    assert server.request("POST", f"/api/blobs/{digest}", data)[0] == 201
    assert server.request("HEAD", f"/api/blobs/{digest}")[0] == 200
    assert server.request("POST", f"/api/blobs/{digest}", data)[0] == 200
    blob = server.models / "blobs" / ("sha256-" + digest[7:])
    assert blob.read_bytes() == data
    assert oct(blob.stat().st_mode & 0o777) == "0o644"


def test_cut_off_upload_leaves_no_blob(server: Ollama) -> None:
    data = os.urandom(4096)
    host, port = server.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /api/blobs/{sha(data)} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data[:1000]
        )
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 500")
    assert reply.endswith(b'{"error":"unexpected EOF"}')
    assert store_files(server) == []


def test_chunked_upload_is_accepted(server: Ollama) -> None:
    data = b"x" * 70000
    host, port = server.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        body = (
            b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (data[:30000], data[30000:]))
            + b"0\r\n\r\n"
        )
        sock.sendall(
            f"POST /api/blobs/{sha(data)} HTTP/1.1\r\nHost: {server.host}\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201")


# -------------------------------------------------------------------- create/show


def test_create_list_show_chat_rm_scenario(server: Ollama, tiny_gguf: Path) -> None:
    modelfile = write_modelfile(
        tiny_gguf.parent,
        "FROM ./tiny.gguf\nPARAMETER temperature 0.6\nPARAMETER num_ctx 8192\n"
        'SYSTEM """Be brief."""\n',
    )
    result = server.run("create", "m", "-f", str(modelfile))
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    progress = result.clean_stderr
    for status in (
        "gathering model components",
        f"copying file {sha(tiny_gguf.read_bytes())} 100%",
        "parsing GGUF",
        "using existing layer sha256:",
        "creating new layer sha256:",
        "writing manifest",
        "success",
    ):
        assert status in progress

    listed = server.run("list")
    assert listed.code == 0
    header, row = listed.stdout.splitlines()
    assert re.match(r"^NAME {8}ID {14}SIZE {6}MODIFIED +$", header)
    digest = manifest_digest(server, "m:latest")
    assert row.startswith(f"m:latest    {digest[:12]}    ")
    assert re.search(r"\d(\.\d)? KB +(Less than a second|\d+ seconds) ago", row)

    shown = server.run("show", "m", "--modelfile")
    assert shown.code == 0
    blob = server.models / "blobs" / ("sha256-" + sha(tiny_gguf.read_bytes())[7:])
    assert shown.stdout == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM m:latest\n\n"
        f"FROM {blob}\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM Be brief.\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER temperature 0.6\n\n"
    )

    status, content_type, lines = server.ndjson(
        "/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert content_type == "application/x-ndjson"
    assert len(lines) > 2
    assert all(
        line["done"] is False and line["message"]["role"] == "assistant" for line in lines[:-1]
    )
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    for key in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(final[key], int) and final[key] > 0
    assert final["eval_count"] == len(lines) - 1
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", final["created_at"])

    removed = server.run("rm", "m")
    assert (removed.code, removed.stdout) == (0, "deleted 'm'\n")
    assert server.request("GET", "/api/tags")[2] == b'{"models":[]}'
    assert [f for f in store_files(server) if f.startswith("blobs/")] == []
    again = server.run("rm", "m")
    assert (again.code, again.clean_stderr.splitlines()[-1]) == (1, "Error: model 'm' not found")


def test_same_inputs_same_digest_and_a_parameter_changes_it(
    server: Ollama, tiny_gguf: Path
) -> None:
    create(server, "a", tiny_gguf, "PARAMETER temperature 0.6\n")
    first = manifest_digest(server, "a:latest")
    create(server, "a", tiny_gguf, "PARAMETER temperature 0.6\n")
    assert manifest_digest(server, "a:latest") == first
    create(server, "b", tiny_gguf, "PARAMETER temperature 0.6\n")
    assert manifest_digest(server, "b:latest") == first
    create(server, "a", tiny_gguf, "PARAMETER temperature 0.7\n")
    assert manifest_digest(server, "a:latest") != first
    assert (
        sha((server.models / "manifests/registry.ollama.ai/library/b/latest").read_bytes())[7:]
        == first
    )


def test_store_layout_is_ollamas(server: Ollama, tiny_gguf: Path) -> None:
    create(
        server,
        "layout:v1",
        tiny_gguf,
        'PARAMETER stop "<end>"\nPARAMETER num_ctx 4096\nLICENSE """MIT"""\n',
    )
    path = server.models / "manifests" / "registry.ollama.ai" / "library" / "layout" / "v1"
    raw = path.read_bytes()
    assert raw.endswith(b"}\n") and b" " not in raw
    manifest = json.loads(raw)
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    media = [layer["mediaType"] for layer in manifest["layers"]]
    assert media == [
        "application/vnd.ollama.image.model",
        "application/vnd.ollama.image.license",
        "application/vnd.ollama.image.params",
    ]
    blobs = server.models / "blobs"
    for layer in [manifest["config"], *manifest["layers"]]:
        blob = blobs / layer["digest"].replace(":", "-")
        assert sha(blob.read_bytes()) == layer["digest"] and blob.stat().st_size == layer["size"]
    assert all(BLOB_DIGEST_RE.match(p.name) for p in blobs.iterdir())
    params = blobs / manifest["layers"][2]["digest"].replace(":", "-")
    assert params.read_bytes() == b'{"num_ctx":4096,"stop":["\\u003cend\\u003e"]}\n'
    config = json.loads((blobs / manifest["config"]["digest"].replace(":", "-")).read_bytes())
    assert config == {
        "model_format": "gguf",
        "model_family": "qwen2",
        "model_families": ["qwen2"],
        "model_type": "768",
        "file_type": "Q4_K_M",
        "architecture": "amd64",
        "os": "linux",
    }
    leftovers = [
        p.name for p in server.models.rglob("*") if ".tmp" in p.name or "partial" in p.name
    ]
    assert leftovers == []


def test_invalid_modelfiles_fail_like_ollama(server: Ollama, tmp_path: Path) -> None:
    cases = {
        "PARAMETER temperature 0.6\n": "Error: no FROM line",
        "FROM x\nFOO bar\n": "Error: (line 2): command must be one of "
        '"from", "license", "template", "system", '
        '"adapter", "draft", "renderer", "parser", "parameter", "message", or "requires"',
        "FROM x\nPARAMETER temperature hot\n": "Error: invalid float value [hot]",
        "FROM x\nPARAMETER bogus 1\n": "Error: unknown parameter 'bogus'",
        'FROM x\nSYSTEM """never closed\n': "Error: unexpected EOF",
    }
    for text, message in cases.items():
        modelfile = write_modelfile(tmp_path, text)
        result = server.run("create", "bad", "-f", str(modelfile))
        assert result.code == 1, text
        assert result.stderr.rstrip("\n").endswith(message), (text, result.stderr)
    assert server.request("GET", "/api/tags")[2] == b'{"models":[]}'
    invalid_name = server.run("create", "bad name", "-f", str(modelfile))
    assert (invalid_name.code, invalid_name.clean_stderr.splitlines()[-1]) == (
        1,
        "Error: invalid model name: bad name",
    )


def test_create_api_errors(server: Ollama, tiny_gguf: Path) -> None:
    assert server.post("/api/create", {"model": "x"}) == (
        400,
        {"error": "neither 'from' or 'files' was specified"},
    )
    assert server.post("/api/create", {"model": "x", "files": {"../a.gguf": sha(b"a")}}) == (
        400,
        {"error": "file path must be relative"},
    )
    assert server.post("/api/create", {"model": "", "from": "y"}) == (
        400,
        {"error": "invalid model name"},
    )
    missing = sha(b"not uploaded")
    status, _ct, lines = server.ndjson("/api/create", {"model": "x", "files": {"a.gguf": missing}})
    assert status == 200
    assert lines[0] == {"status": "parsing GGUF"}
    assert lines[-1] == {
        "error": f"open {server.models}/blobs/sha256-{missing[7:]}: no such file or directory"
    }
    data = tiny_gguf.read_bytes()
    assert server.request("POST", f"/api/blobs/{sha(data)}", data)[0] == 201
    status, _ct, lines = server.ndjson(
        "/api/create",
        {"model": "x", "files": {"tiny.gguf": sha(data)}, "template": "{{ if .Prompt }}"},
    )
    assert lines[-1] == {"error": "template error: template: :1: unexpected EOF"}
    assert server.request("GET", "/api/tags")[2] == b'{"models":[]}'
    status, _ct, lines = server.ndjson(
        "/api/create",
        {"model": "x", "files": {"tiny.gguf": sha(data)}, "parameters": {"temperature": 0.5}},
    )
    assert [line["status"] for line in lines if "digest" not in line][-2:] == [
        "writing manifest",
        "success",
    ]


def test_create_from_an_existing_model_inherits_its_layers(server: Ollama, tiny_gguf: Path) -> None:
    create(server, "base", tiny_gguf, "PARAMETER temperature 0.6\nPARAMETER top_k 20\n")
    status, _ct, lines = server.ndjson(
        "/api/create",
        {"model": "child", "from": "base", "parameters": {"temperature": 0.1}, "system": "Hi."},
    )
    assert lines[-1] == {"status": "success"}
    status, shown = server.post("/api/show", {"model": "child"})
    assert status == 200
    assert shown["details"]["parent_model"] == "base:latest"
    assert (
        shown["parameters"]
        == "temperature                    0.1\ntop_k                          20"
    )
    assert shown["system"] == "Hi."


# ------------------------------------------------------------------------ registry


def test_pull_from_a_plain_http_registry(server: Ollama, mirror: Path) -> None:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/deepseek-r1:32b"
        result = server.run("pull", "--insecure", name)
        assert result.code == 0, result.stderr
        progress = result.clean_stderr
        assert "pulling manifest" in progress and "verifying sha256 digest" in progress
        assert "writing manifest" in progress and "success" in progress
        assert re.search(r"pulling [0-9a-f]{12}: 100%", progress)
        registry_manifest = (mirror / "v2/library/deepseek-r1/manifests/32b").read_bytes()
        stored = (
            server.models / "manifests" / f"127.0.0.1:{port}" / "library" / "deepseek-r1" / "32b"
        )
        assert stored.read_bytes() == registry_manifest
        status, _ct, lines = server.ndjson("/api/pull", {"model": name, "insecure": True})
        statuses = [line["status"] for line in lines]
        assert statuses[0] == "pulling manifest" and statuses[-3:] == [
            "verifying sha256 digest",
            "writing manifest",
            "success",
        ]
        progress_lines = [line for line in lines if "digest" in line]
        assert progress_lines and all(line["completed"] == line["total"] for line in progress_lines)

        plain = server.run("pull", name)
        assert plain.code == 1
        assert plain.clean_stderr.splitlines()[-1] == (
            "Error: pull model manifest: "
            f'Get "https://127.0.0.1:{port}/v2/library/deepseek-r1/manifests/32b": '
            "http: server gave HTTP response to HTTPS client"
        )
        missing = server.run("pull", "--insecure", f"127.0.0.1:{port}/library/deepseek-r1:999b")
        assert (
            missing.clean_stderr.splitlines()[-1]
            == "Error: pull model manifest: file does not exist"
        )

    status, shown = server.post("/api/show", {"model": name})
    assert status == 200
    assert shown["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "qwen2",
        "families": ["qwen2"],
        "parameter_size": "32.8B",
        "quantization_level": "Q4_K_M",
    }
    assert shown["capabilities"] == ["completion", "thinking"]
    assert shown["model_info"]["qwen2.context_length"] == 131072
    assert shown["model_info"]["qwen2.block_count"] == 64
    assert shown["model_info"]["qwen2.attention.head_count_kv"] == 8
    assert shown["model_info"]["tokenizer.ggml.tokens"] is None
    assert "general.name" not in shown["model_info"]


def test_pull_needs_a_blob_redirect_like_upstream(server: Ollama, mirror: Path) -> None:
    with registry(mirror, "--no-redirect") as port:
        result = server.run("pull", "--insecure", f"127.0.0.1:{port}/library/gemma3:4b")
    assert result.code == 1
    assert result.clean_stderr.splitlines()[-1] == "Error: http: no Location header in response"
    assert not (server.models / "manifests" / f"127.0.0.1:{port}").exists()
    assert [
        p.name for p in (server.models / "blobs").iterdir() if BLOB_DIGEST_RE.match(p.name)
    ] == []


def test_pull_rejects_a_tampered_blob(server: Ollama, mirror: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    repo = tampered / "v2/library/gemma3"
    (repo / "manifests").mkdir(parents=True)
    (repo / "blobs").mkdir()
    manifest = (mirror / "v2/library/gemma3/manifests/4b").read_bytes()
    (repo / "manifests/4b").write_bytes(manifest)
    for blob in (mirror / "v2/library/gemma3/blobs").iterdir():
        (repo / "blobs" / blob.name).write_bytes(blob.read_bytes())
    model_digest = json.loads(manifest)["layers"][0]["digest"]
    original = (repo / "blobs" / model_digest).read_bytes()
    (repo / "blobs" / model_digest).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with registry(tampered) as port:
        result = server.run("pull", "--insecure", f"127.0.0.1:{port}/library/gemma3:4b")
    assert result.code == 1
    assert result.clean_stderr.splitlines()[-1].startswith(
        f"Error: digest mismatch, file must be downloaded again: want {model_digest}, got sha256:"
    )
    assert not (server.models / "blobs" / model_digest.replace(":", "-")).exists()
    assert not (server.models / "manifests" / f"127.0.0.1:{port}").exists()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab registry")])
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - explicit on purpose
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_pull_over_https_checks_the_certificate(
    artifact: Path, mirror: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    with registry(mirror, "--tls-cert", str(cert), "--tls-key", str(key)) as port:
        name = f"127.0.0.1:{port}/library/gemma3:4b"
        with serving(artifact, tmp_path / "untrusting") as server:
            result = server.run("pull", name)
            assert result.code == 1
            assert result.clean_stderr.splitlines()[-1] == (
                "Error: pull model manifest: "
                f'Get "https://127.0.0.1:{port}/v2/library/gemma3/manifests/4b": '
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            )
        with serving(artifact, tmp_path / "trusting", SSL_CERT_FILE=str(cert)) as server:
            result = server.run("pull", name)
            assert result.code == 0, result.stderr
            assert server.run("list").stdout.count("gemma3:4b") == 1


# -------------------------------------------------------------------- inference


@pytest.fixture
def reasoning(server: Ollama, mirror: Path) -> str:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/deepseek-r1:8b"
        assert server.run("pull", "--insecure", name).code == 0
    assert server.post("/api/copy", {"source": name, "destination": "deepseek-r1:8b"})[0] == 200
    return "deepseek-r1:8b"


def test_reasoning_models_stream_thinking_first(server: Ollama, reasoning: str) -> None:
    request = {
        "model": reasoning,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
    }
    status, _ct, lines = server.ndjson("/api/chat", request)
    assert status == 200
    kinds = ["thinking" if line["message"].get("thinking") else "content" for line in lines[:-1]]
    assert kinds[0] == "thinking" and kinds[-1] == "content"
    assert kinds == sorted(kinds, key=lambda k: k != "thinking")  # all thinking before content
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    assert "Why is the sky blue?" in thinking
    again = server.ndjson("/api/chat", request)[2]
    assert [line["message"] for line in again[:-1]] == [line["message"] for line in lines[:-1]]

    status, _ct, plain = server.ndjson("/api/chat", {**request, "think": False})
    assert status == 200 and not any(line["message"].get("thinking") for line in plain)

    status, reply = server.post("/api/chat", {**request, "stream": False})
    assert status == 200 and reply["done"] is True
    assert reply["message"]["thinking"] == thinking
    assert reply["message"]["content"] == "".join(line["message"]["content"] for line in lines)

    run = server.run("run", reasoning, "Why is the sky blue?", "--nowordwrap")
    assert run.code == 0
    assert run.stdout.startswith("Thinking...\n")
    assert "\n...done thinking.\n\n" in run.stdout and run.stdout.endswith("\n\n")
    hidden = server.run("run", reasoning, "Why is the sky blue?", "--hidethinking", "--nowordwrap")
    assert hidden.stdout == run.stdout.split("...done thinking.\n\n", 1)[1]


def test_generate_options_num_predict_stop_and_unthinking_models(
    server: Ollama, tiny_gguf: Path
) -> None:
    create(server, "gen", tiny_gguf)
    status, reply = server.post(
        "/api/generate", {"model": "gen", "prompt": "hello", "stream": False}
    )
    assert status == 200 and reply["done_reason"] == "stop" and reply["response"]
    assert isinstance(reply["context"], list)
    status, short = server.post(
        "/api/generate",
        {"model": "gen", "prompt": "hello", "stream": False, "options": {"num_predict": 3}},
    )
    assert (short["done_reason"], short["eval_count"]) == ("length", 3)
    assert reply["response"].startswith(short["response"])
    word = reply["response"].split()[4]
    status, stopped = server.post(
        "/api/generate",
        {"model": "gen", "prompt": "hello", "stream": False, "options": {"stop": [word]}},
    )
    assert word not in stopped["response"] and reply["response"].startswith(stopped["response"])
    assert server.post("/api/generate", {"model": "gen", "prompt": "x", "think": True}) == (
        400,
        {"error": '"gen" does not support thinking'},
    )
    assert server.post("/api/generate", {"model": "gen", "keep_alive": "nonsense"}) == (
        400,
        {"error": 'time: invalid duration "nonsense"'},
    )


def test_ps_keep_alive_and_stop(server: Ollama, tiny_gguf: Path) -> None:
    create(server, "ka", tiny_gguf)
    assert server.post("/api/generate", {"model": "ka", "prompt": "hi", "stream": False})[0] == 200
    ps = json.loads(server.request("GET", "/api/ps")[2])["models"]
    assert [m["name"] for m in ps] == ["ka:latest"]
    assert ps[0]["size_vram"] == 0 and ps[0]["context_length"] == 4096
    table = server.run("ps")
    assert table.stdout.splitlines()[0].split() == [
        "NAME",
        "ID",
        "SIZE",
        "PROCESSOR",
        "CONTEXT",
        "UNTIL",
    ]
    assert re.search(r"100% CPU +4096 +[45] minutes from now", table.stdout)
    assert server.run("stop", "ka").code == 0
    assert loaded(server) == []
    server.post("/api/generate", {"model": "ka", "prompt": "hi", "stream": False, "keep_alive": -1})
    assert "Forever" in server.run("ps").stdout
    server.post("/api/generate", {"model": "ka", "prompt": "hi", "stream": False, "keep_alive": 0})
    assert loaded(server) == []
    missing = server.run("stop", "nope")
    assert (missing.code, missing.clean_stderr.splitlines()[-1]) == (
        1,
        'Error: couldn\'t find model "nope" to stop',
    )


def test_openai_compatible_endpoints(server: Ollama, tiny_gguf: Path) -> None:
    status, _h, body = server.request("GET", "/v1/models")
    assert (status, json.loads(body)) == (200, {"object": "list", "data": None})
    create(server, "oa", tiny_gguf)
    models = json.loads(server.request("GET", "/v1/models")[2])
    assert [(m["id"], m["object"], m["owned_by"]) for m in models["data"]] == [
        ("oa:latest", "model", "library")
    ]
    request = {"model": "oa", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    status, reply = server.post("/v1/chat/completions", request)
    assert status == 200 and reply["object"] == "chat.completion"
    assert (
        reply["choices"][0]["finish_reason"] == "length"
        and reply["usage"]["completion_tokens"] == 5
    )
    status, headers, body = server.request(
        "POST", "/v1/chat/completions", {**request, "stream": True}
    )
    assert headers["content-type"] == "text/event-stream"
    events = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    status, missing = server.post(
        "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert (status, missing["error"]["type"], missing["error"]["message"]) == (
        404,
        "not_found_error",
        "model 'nope' not found",
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_without_a_server(artifact: Path, tmp_path: Path) -> None:
    client = Ollama(artifact, tmp_path, host="127.0.0.1:9")
    version = client.run("-v")
    assert (version.code, version.stdout) == (
        0,
        "Warning: could not connect to a running Ollama instance\n"
        "Warning: client version is 0.32.15\n",
    )
    for args in (["list"], ["ps"], ["show", "m"], ["rm", "m"], ["pull", "m"]):
        result = client.run(*args)
        assert (result.code, result.stderr) == (
            1,
            "Error: could not connect to ollama server, run 'ollama serve' to start it\n",
        ), args


def test_cli_argument_errors_and_version(server: Ollama) -> None:
    assert server.run("-v").stdout == "ollama version is 0.32.15\n"
    assert server.run("--version").stdout == "ollama version is 0.32.15\n"
    assert server.run("show").stderr == "Error: accepts 1 arg(s), received 0\n"
    assert server.run("rm").stderr == "Error: requires at least 1 arg(s), only received 0\n"
    assert server.run("frobnicate").stderr.startswith(
        'Error: unknown command "frobnicate" for "ollama"'
    )
    assert server.run("list", "--bogus").stderr == "Error: unknown flag: --bogus\n"
    assert server.run("show", "x", "--license", "--system").stderr == (
        "Error: only one of '--license', '--modelfile', '--parameters', '--system', or "
        "'--template' can be specified\n"
    )


def test_run_prints_deterministic_text(server: Ollama, tiny_gguf: Path) -> None:
    create(server, "runner", tiny_gguf)
    first = server.run("run", "runner", "say something", "--nowordwrap")
    second = server.run("run", "runner", "say something", "--nowordwrap")
    assert first.code == 0 and first.stdout == second.stdout
    assert first.stdout.endswith(".\n\n")
    other = server.run("run", "runner", "something else", "--nowordwrap")
    assert other.stdout != first.stdout


# -------------------------------------------------------------------------- serve


def test_noprune_and_startup_pruning(artifact: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    blobs = home / "models" / "blobs"
    blobs.mkdir(parents=True)
    old = blobs / ("sha256-" + "a" * 64)
    young = blobs / ("sha256-" + "b" * 64)
    partial = blobs / ("sha256-" + "c" * 64 + "-partial")
    for path in (old, young, partial):
        path.write_bytes(b"x")
    stale = time.time() - 7200
    os.utime(old, (stale, stale))
    os.utime(partial, (stale, stale))
    with serving(artifact, home, OLLAMA_NOPRUNE="true"):
        pass
    assert old.exists() and young.exists() and partial.exists()
    with serving(artifact, home, OLLAMA_NOPRUNE="garbage-counts-as-true"):
        pass
    assert old.exists()
    with serving(artifact, home):
        pass
    assert not old.exists() and not partial.exists()
    assert young.exists()  # inside the one-hour grace period


def test_serve_reports_a_busy_port_and_env_keep_alive(
    artifact: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    with serving(artifact, tmp_path / "a", OLLAMA_KEEP_ALIVE="0") as first:
        busy = Ollama(artifact, tmp_path / "b", host=first.host).run("serve")
        assert (busy.code, busy.clean_stderr.splitlines()[-1]) == (
            1,
            f"Error: listen tcp {first.host}: bind: address already in use",
        )
        create(first, "k", tiny_gguf)
        first.post("/api/generate", {"model": "k", "prompt": "hi", "stream": False})
        assert loaded(first) == []
    assert (
        (tmp_path / "a" / ".ollama" / "id_ed25519")
        .read_bytes()
        .startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    )


def test_broken_release_never_becomes_healthy(broken_artifact: Path, tmp_path: Path) -> None:
    prefix = broken_artifact / "prefix-0.32.16-http500"
    with serving(prefix, tmp_path / "h") as server:
        assert server.request("GET", "/")[0] == 500
        assert server.request("GET", "/api/version")[0] == 500
        version = server.run("-v")
        assert (
            version.stdout == "Warning: could not connect to a running Ollama instance\n"
            "Warning: client version is 0.32.16\n"
        )
    exiting = Ollama(
        broken_artifact / "prefix-0.32.16-exit", tmp_path / "e", host="127.0.0.1:0"
    ).run("serve")
    assert exiting.code == 1
    assert (
        exiting.clean_stderr.splitlines()[-1]
        == "Error: unable to initialize llm runtime: deliberately broken test build"
    )


def test_gpus_come_from_nvidia_smi_and_cuda_visible_devices(
    artifact: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text('#!/bin/sh\necho "0, GPU-4090-one, NVIDIA GeForce RTX 4090, 24564, 1"\n')
    fake.chmod(0o755)
    path = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    with serving(artifact, tmp_path / "gpu", PATH=path) as server:
        assert any("default_num_ctx=32768" in line for line in server.log)
        create(server, "g", tiny_gguf)
        server.post("/api/generate", {"model": "g", "prompt": "hi", "stream": False})
        assert re.search(r"100% GPU +32768 ", server.run("ps").stdout)
    with serving(
        artifact, tmp_path / "hidden", PATH=path, CUDA_VISIBLE_DEVICES="GPU-other"
    ) as server:
        assert any("default_num_ctx=4096" in line for line in server.log)


def test_show_and_tags_output_shapes(server: Ollama, mirror: Path) -> None:
    with registry(mirror) as port:
        name = f"127.0.0.1:{port}/library/deepseek-r1:32b"
        assert server.run("pull", "--insecure", name).code == 0
    assert (
        server.run("cp", name, "deepseek-r1:32b").stdout
        == f"copied '{name}' to 'deepseek-r1:32b'\n"
    )
    shown = server.run("show", "deepseek-r1:32b")
    assert shown.code == 0
    assert shown.stdout.startswith(
        "  Model\n"
        "    architecture        qwen2     \n"
        "    parameters          32.8B     \n"
        "    context length      131072    \n"
        "    embedding length    5120      \n"
        "    quantization        Q4_K_M    \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "    thinking      \n"
        "\n"
        "  Parameters\n"
    )
    assert "    temperature    0.6                          \n" in shown.stdout
    assert server.run("show", "deepseek-r1:32b", "--parameters").stdout.splitlines()[-2:] == [
        "temperature                    0.6",
        "top_p                          0.95",
    ]
    template = server.run("show", "deepseek-r1:32b", "--template").stdout
    assert (
        template
        == (mirror / "v2/library/deepseek-r1/blobs")
        .joinpath(
            json.loads((mirror / "v2/library/deepseek-r1/manifests/32b").read_text())["layers"][1][
                "digest"
            ]
        )
        .read_text()
    )
    tags = json.loads(server.request("GET", "/api/tags")[2])["models"]
    entry = next(m for m in tags if m["name"] == "deepseek-r1:32b")
    assert list(entry) == [
        "name",
        "model",
        "modified_at",
        "size",
        "digest",
        "details",
        "capabilities",
    ]
    assert entry["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "qwen2",
        "families": ["qwen2"],
        "parameter_size": "32.8B",
        "quantization_level": "Q4_K_M",
        "context_length": 131072,
        "embedding_length": 5120,
    }
    assert entry["capabilities"] == ["completion", "thinking"]
    listed = server.run("list").stdout.splitlines()
    id_column = listed[0].index("ID")
    assert {row[id_column : id_column + 12] for row in listed[1:]} == {entry["digest"][:12]}
    assert all(row.endswith("    ") for row in listed[1:])
    assert listed[0].rstrip().endswith("MODIFIED") and listed[0].endswith(" ")


def test_blob_bytes_match_upstreams_own_test_expectations(server: Ollama) -> None:
    """Digests from ollama/ollama v0.32.15 server/routes_create_test.go: the same requests
    must produce byte-identical params, template, system and config blobs."""

    def string(text: bytes) -> bytes:
        return len(text).to_bytes(8, "little") + text

    # createBinFile(t, nil, nil): a GGUF v3 with only general.architecture = "test"
    gguf = (
        b"GGUF"
        + (3).to_bytes(4, "little")
        + (0).to_bytes(8, "little")
        + (1).to_bytes(8, "little")
        + string(b"general.architecture")
        + (8).to_bytes(4, "little")
        + string(b"test")
    )
    digest = sha(gguf)
    assert digest == "sha256:89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad"
    assert server.request("POST", f"/api/blobs/{digest}", gguf)[0] == 201

    def create_model(body: dict) -> None:
        status, _ct, lines = server.ndjson("/api/create", body)
        assert (status, lines[-1]) == (200, {"status": "success"}), lines

    def blob(hex_digest: str) -> Path:
        return server.models / "blobs" / f"sha256-{hex_digest}"

    params = {"temperature": 1, "top_k": 10, "stop": ["USER:", "ASSISTANT:"]}
    create_model({"model": "test", "files": {"test.gguf": digest}, "parameters": params})
    assert blob("1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37").exists()
    assert blob("99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c").exists()
    create_model(
        {"model": "test2", "from": "test", "parameters": {"temperature": 0.6, "top_p": 0.7}}
    )
    merged = blob("e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba")
    assert (
        merged.read_bytes()
        == b'{"stop":["USER:","ASSISTANT:"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    )
    create_model(
        {
            "model": "test2",
            "from": "test",
            "parameters": {"temperature": 0.6, "top_p": 0.7, "stop": ["<|endoftext|>"]},
        }
    )
    assert blob("12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35").exists()
    assert not merged.exists()  # test2's previous params blob is no longer referenced
    create_model({"model": "t", "files": {"test.gguf": digest}, "template": "{{ .Prompt }}"})
    assert blob("b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315").exists()
    create_model({"model": "s", "files": {"test.gguf": digest}, "system": "Say hi!"})
    assert blob("f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851").exists()


def test_show_layout_matches_upstreams_cmd_tests() -> None:
    """Cases and expected output from ollama/ollama v0.32.15 cmd/cmd_test.go TestShowInfo."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama" / "src"))
    from ollama_standin.cli import _show_info

    details = {"family": "test", "parameter_size": "7B", "quantization_level": "FP16"}
    bare = (
        "  Model\n    architecture    test    \n    parameters      7B      \n"
        "    quantization    FP16    \n\n"
    )
    assert _show_info({"details": details}, False) == bare
    info = {
        "general.architecture": "test",
        "general.parameter_count": 7e9,
        "test.context_length": 0.0,
        "test.embedding_length": 0.0,
    }
    assert _show_info({"details": details, "model_info": info}, False) == (
        "  Model\n"
        "    architecture        test    \n"
        "    parameters          7B      \n"
        "    context length      0       \n"
        "    embedding length    0       \n"
        "    quantization        FP16    \n\n"
    )
    verbose = {
        "details": {**details, "parameter_size": "8B"},
        "parameters": "\n\t\t\tstop up",
        "model_info": {
            "general.architecture": "test",
            "general.parameter_count": 8e9,
            "some.true_bool": True,
            "some.false_bool": False,
            "test.context_length": 1000.0,
            "test.embedding_length": 11434.0,
        },
        "tensors": [
            {"name": "blk.0.attn_k.weight", "type": "BF16", "shape": [42, 3117]},
            {"name": "blk.0.attn_q.weight", "type": "FP16", "shape": [3117, 42]},
        ],
    }
    assert _show_info(verbose, True) == (
        "  Model\n"
        "    architecture        test     \n"
        "    parameters          8B       \n"
        "    context length      1000     \n"
        "    embedding length    11434    \n"
        "    quantization        FP16     \n\n"
        "  Parameters\n"
        "    stop    up    \n\n"
        "  Metadata\n"
        "    general.architecture       test     \n"
        "    general.parameter_count    8e+09    \n"
        "    some.false_bool            false    \n"
        "    some.true_bool             true     \n"
        "    test.context_length        1000     \n"
        "    test.embedding_length      11434    \n\n"
        "  Tensors\n"
        "    blk.0.attn_k.weight    BF16    [42 3117]    \n"
        "    blk.0.attn_q.weight    FP16    [3117 42]    \n\n"
    )
    params = "".join(
        f"\n\t\t\t{line}"
        for line in ("stop never", "stop gonna", "stop give", "stop you", "stop up")
    )
    params += "\n\t\t\ttemperature 99"
    assert _show_info({"details": details, "parameters": params}, False) == bare[:-1] + (
        "\n  Parameters\n"
        "    stop           never    \n"
        "    stop           gonna    \n"
        "    stop           give     \n"
        "    stop           you      \n"
        "    stop           up       \n"
        "    temperature    99       \n\n"
    )
    system = "You are a pirate!\nAhoy, matey!\nWeigh anchor!\n\t\t\t"
    assert _show_info({"details": details, "system": system}, False) == bare + (
        "  System\n    You are a pirate!    \n    Ahoy, matey!         \n"
        "    ...                  \n\n"
    )
    license_text = "MIT License\nCopyright (c) Ollama\n"
    assert _show_info({"details": details, "license": license_text}, False) == bare + (
        "  License\n    MIT License             \n    Copyright (c) Ollama    \n\n"
    )
    assert _show_info({"details": details, "capabilities": ["vision", "tools"]}, False) == bare + (
        "  Capabilities\n    vision    \n    tools     \n\n"
    )


def test_list_layout_matches_upstreams_cmd_tests() -> None:
    """TestListHandler in ollama/ollama v0.32.15 cmd/cmd_test.go."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama" / "src"))
    from ollama_standin.goformat import human_bytes, human_time, render_table

    now = time.time_ns()
    hours = 3600 * 1_000_000_000
    rows = [
        [
            "model1",
            "sha256:abc123"[:12],
            human_bytes(1024),
            human_time(now - 24 * hours, "Never", now),
        ],
        [
            "model2",
            "sha256:def456"[:12],
            human_bytes(2048),
            human_time(now - 48 * hours, "Never", now),
        ],
    ]
    assert render_table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]) == (
        "NAME      ID              SIZE      MODIFIED     \n"
        "model1    sha256:abc12    1.0 KB    24 hours ago    \n"
        "model2    sha256:def45    2.0 KB    2 days ago      \n"
    )
    assert [human_bytes(n) for n in (999, 4_700_000_000, 815_000_000, 43_000_000_000)] == [
        "999 B",
        "4.7 GB",
        "815 MB",
        "43 GB",
    ]


# ------------------------------------------------------------- GPUs, placement, keep-alive


def fake_smi(directory: Path, *lines: str) -> str:
    """A PATH whose nvidia-smi prints `lines` for the stand-in's query (index, uuid, name,
    memory.total, memory.used, driver_version, compute_cap, pci.bus_id)."""
    directory.mkdir(exist_ok=True)
    fake = directory / "nvidia-smi"
    fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    fake.chmod(0o755)
    return f"{directory}:{os.environ.get('PATH', '/usr/bin:/bin')}"


RTX4090 = "0, GPU-4090-one, NVIDIA GeForce RTX 4090, 24564, 346, 550.54.15, 8.9, 00000000:01:00.0"


def ps_models(server: Ollama) -> dict[str, dict]:
    return {m["name"]: m for m in json.loads(server.request("GET", "/api/ps")[2])["models"]}


def test_a_model_too_big_for_the_card_is_split_between_cpu_and_gpu(
    artifact: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    path = fake_smi(tmp_path / "bin", RTX4090)
    with serving(artifact, tmp_path / "h", PATH=path) as server:
        # the lab's GGUFs are tiny: the tag says which real model (and size) they stand for
        create(server, "small:1.5b", tiny_gguf)
        create(server, "big:70b", tiny_gguf)
        for name in ("small:1.5b", "big:70b"):
            body = {"model": name, "prompt": "hi", "stream": False, "options": {"num_ctx": 8192}}
            assert server.post("/api/generate", body)[0] == 200
        loaded = ps_models(server)
        assert list(loaded) == ["big:70b"]  # the 70b did not fit beside the 1.5b: evicted it
        big = loaded["big:70b"]
        assert big["size"] > 40 * 10**9 and 0 < big["size_vram"] < big["size"]
        assert re.search(r"big:70b .* \d+%/\d+% CPU/GPU +8192 ", server.run("ps").stdout)
        assert any('msg="loaded model" model=big:70b' in line for line in server.log)


def test_keep_alive_forever_survives_requests_without_one_and_evictions_go_shortest_first(
    artifact: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    path = fake_smi(tmp_path / "bin", RTX4090)
    with serving(artifact, tmp_path / "h", PATH=path) as server:
        create(server, "tier:32b", tiny_gguf)
        create(server, "other:27b", tiny_gguf)
        preload = server.run("run", "tier:32b", "--keepalive=-1m", "")
        assert preload.code == 0, preload.stderr
        assert "Forever" in server.run("ps").stdout
        chat = {"model": "tier:32b", "messages": [{"role": "user", "content": "hi"}]}
        assert server.post("/api/chat", {**chat, "stream": False})[0] == 200
        assert "Forever" in server.run("ps").stdout  # no keep_alive in the request: kept
        # a second 32B-class model does not fit beside it on 24 GB: the only idle runner goes
        server.post("/api/generate", {"model": "other:27b", "prompt": "x", "stream": False})
        assert list(ps_models(server)) == ["other:27b"]


def test_a_driver_older_than_the_release_needs_leaves_the_gpu_out_and_says_so(
    artifact: Path, tmp_path: Path
) -> None:
    old = "0, GPU-t4, Tesla T4, 15360, 257, 535.183.01, 7.5, 00000000:3B:00.0"
    with serving(artifact, tmp_path / "h", PATH=fake_smi(tmp_path / "bin", old)) as server:
        log = "\n".join(server.log)
    assert 'msg="NVIDIA driver too old" device="Tesla T4" compute=7.5 driver=535' in log
    assert 'required_driver="550 or newer"' in log
    assert 'msg="inference compute" id=cpu library=cpu' in log
    pascal = "0, GPU-p40, Tesla P40, 24576, 0, 560.35.03, 6.1, 00000000:3B:00.0"
    with serving(artifact, tmp_path / "p", PATH=fake_smi(tmp_path / "b2", pascal)) as server:
        assert any('required_driver="570 or newer"' in line for line in server.log)
    with serving(artifact, tmp_path / "g", PATH=fake_smi(tmp_path / "b3", RTX4090)) as server:
        cuda = [line for line in server.log if 'msg="inference compute"' in line]
    assert len(cuda) == 1 and "library=CUDA compute=8.9 name=CUDA0" in cuda[0]
    assert 'description="NVIDIA GeForce RTX 4090"' in cuda[0]


def test_a_release_whose_inference_fails_still_answers_its_version(
    broken_artifact: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    with serving(broken_artifact / "prefix-0.32.17-inference", tmp_path / "i") as server:
        status, _h, body = server.request("GET", "/api/version")
        assert (status, json.loads(body)) == (200, {"version": "0.32.17"})
        create(server, "m", tiny_gguf)
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        status, reply = server.post("/api/chat", chat)
        assert status == 500
        assert reply["error"].startswith("llama runner process has terminated")
        assert server.post("/api/generate", {"model": "m"})[0] == 500  # a load fails too


def test_capabilities_come_from_the_template_as_ollama_derives_them(
    server: Ollama, tiny_gguf: Path
) -> None:
    tools = "{{ if .Tools }}T{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}"
    thinking = (
        "{{- range $i, $_ := .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>"
        "{{ end }}{{ .Content }}{{ end }}"
    )
    for name, template, expected in (
        ("plain", "{{ .Prompt }}", ["completion"]),
        ("tools", tools, ["completion", "tools"]),
        ("think", thinking, ["completion", "thinking"]),
        ("fim", "{{ .Prompt }}{{ .Suffix }}", ["completion", "insert"]),
    ):
        create(server, name, tiny_gguf, f'TEMPLATE """{template}"""\n')
        status, shown = server.post("/api/show", {"model": name})
        assert (status, shown["capabilities"]) == (200, expected), name
    # a model made FROM another without a TEMPLATE keeps its template, and its capabilities
    modelfile = write_modelfile(tiny_gguf.parent, "FROM tools\nPARAMETER temperature 0.1\n")
    assert server.run("create", "derived", "-f", str(modelfile)).code == 0
    assert server.post("/api/show", {"model": "derived"})[1]["capabilities"] == [
        "completion",
        "tools",
    ]


def test_a_model_that_must_evict_a_busy_one_waits_for_it_to_finish() -> None:
    """Ollama's requireFull: a model that does not fit beside the loaded ones evicts one; when
    the loaded one is still answering, the load waits for it to finish, then evicts it (the
    race behind a flaky test: the second request arrived before the first had released)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama" / "src"))
    from ollama_standin.sched import GPU, Runner, Scheduler

    gib = 1 << 30
    scheduler = Scheduler(
        [GPU(0, "GPU-0", "NVIDIA GeForce RTX 4090", 24 * gib, 0)], lambda *a: None
    )

    def build(name: str, size: int, vram: int):
        return lambda taken: Runner(name, name, "sha256:0", {}, size, vram, 8192, 300 * 10**9)

    small = scheduler.acquire("small", build("small", gib, gib), None)  # answering: refs 1
    got: list[Runner] = []
    loader = threading.Thread(
        target=lambda: got.append(scheduler.acquire("big", build("big", 40 * gib, 20 * gib), None))
    )
    loader.start()
    loader.join(0.5)
    assert loader.is_alive() and not got  # waits while the small model answers
    scheduler.release(small)
    loader.join(5)
    assert [r.name for r in got] == ["big"]
    assert list(scheduler.runners) == ["big"]  # the small one was evicted, not loaded beside
