"""module_utils behind the Ollama modules: API client, names, progress lines, model content
prediction and comparison, digest cache. Pure functions directly; the client against small
loopback servers and the Ollama stand-in."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ollama_module_testing import answer, free_port, raw_server

from ansible_collections.localllm.fleet.plugins.module_utils import digest_cache
from ansible_collections.localllm.fleet.plugins.module_utils.digest_cache import (
    DigestCache,
    ImportRecords,
)
from ansible_collections.localllm.fleet.plugins.module_utils.model_state import (
    DEFAULT_TEMPLATE,
    ModelContent,
    content_from_show,
    desired_content,
    differences,
    go_unquote,
    learn_import,
    parse_parameters,
    render,
    roundtrip,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    DeadlineReached,
    ModelName,
    OllamaClient,
    OllamaError,
    OllamaUnreachable,
)
from ansible_collections.localllm.fleet.plugins.module_utils.progress import (
    human_bytes,
    progress_line,
)

pytest_plugins = ["standin_fixtures"]

# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("text", "shortest", "path"),
    [
        ("qwq", "qwq:latest", "registry.ollama.ai/library/qwq/latest"),
        ("deepseek-r1:32b", "deepseek-r1:32b", "registry.ollama.ai/library/deepseek-r1/32b"),
        ("fleet/qwq:32b", "fleet/qwq:32b", "registry.ollama.ai/fleet/qwq/32b"),
        (
            "mirror:8080/library/deepseek-r1:32b",
            "mirror:8080/library/deepseek-r1:32b",
            "mirror:8080/library/deepseek-r1/32b",
        ),
        (
            "http://mirror:8080/library/x",
            "mirror:8080/library/x:latest",
            "mirror:8080/library/x/latest",
        ),
        (
            "registry.ollama.ai/library/gemma3:4b",
            "gemma3:4b",
            "registry.ollama.ai/library/gemma3/4b",
        ),
    ],
)  # fmt: skip
def test_model_names_parse_like_ollama(text: str, shortest: str, path: str) -> None:
    name = ModelName.parse(text)
    assert name.display_shortest() == shortest
    assert name.manifest_path() == path
    assert name.same(shortest.upper())


@pytest.mark.parametrize("text", ["", "a/b/c/d/e", ":tag", "model:", "-dash", "a b"])
def test_invalid_model_names(text: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid model name: "):
        ModelName.parse(text)


# ------------------------------------------------------------------------------ progress


def test_progress_lines_use_ollamas_decimal_units() -> None:
    assert human_bytes(815) == "815 B"
    assert human_bytes(2_500) == "2.5 KB"
    assert human_bytes(19_900_000_000) == "19.9 GB"
    assert human_bytes(404_000_000_000) == "404 GB"
    line = progress_line("deepseek-r1:32b", 12_300_000_000, 19_900_000_000, 85_100_000)
    assert line == "deepseek-r1:32b: 12.3 GB of 19.9 GB (61%), 85.1 MB/s, about 1m29s left"
    assert progress_line("m", 5, None) == "m: 5 B"
    assert progress_line("m", 10, 10, 3.0) == "m: 10 B of 10 B (100%), 3 B/s"


# ------------------------------------------------------------------------------ show parsing


def test_go_string_literals() -> None:
    assert go_unquote('"<|end|>"') == "<|end|>"
    assert go_unquote(r'"a\nb\t\"c\"\\"') == 'a\nb\t"c"\\'
    assert go_unquote(r'"\u00e9\x41\101"') == "éAA"
    with pytest.raises(ValueError, match="not a Go string literal"):
        go_unquote("plain")


def test_parameters_table_is_typed() -> None:
    table = "\n".join(
        [
            f"{'num_ctx':<30} 4096",
            f'{"stop":<30} "<|end|>"',
            f'{"stop":<30} "a b"',
            f"{'temperature':<30} 0.6",
            f"{'seed':<30} 1.152921504606847e+18",
            f"{'use_mmap':<30} false",
            f"{'a_very_long_parameter_name_past_30':<30} 1",
        ]
    )
    assert parse_parameters(table) == {
        "num_ctx": 4096,
        "stop": ["<|end|>", "a b"],
        "temperature": 0.6,
        "seed": 1.152921504606847e18,
        "use_mmap": False,
        "a_very_long_parameter_name_past_30": 1,
    }
    assert parse_parameters(f'{"stop":<30} "x"') == {"stop": ["x"]}


@pytest.mark.parametrize(
    ("value", "back"),
    [
        ("plain", "plain"),
        (" leading blank", " leading blank"),
        ("two\nlines", "two\nlines"),
        ('say "hi"\nnow', 'say "hi"\nnow'),
        ('"quoted"', "quoted"),  # Ollama prints it unquoted; it reads back without quotes
    ],
)
def test_text_values_read_back_as_ollama_prints_them(value: str, back: str) -> None:
    assert roundtrip("system", value) == back


SHOW = {
    "license": "base license\nchild license",
    "modelfile": (
        '# Modelfile generated by "ollama show"\n# FROM fleet/child:latest\n\n'
        "FROM /m/blobs/sha256-" + "a" * 64 + "\n"
        "ADAPTER /m/blobs/sha256-" + "b" * 64 + "\n"
        'TEMPLATE """{{ .System }} "x"\n{{ .Prompt }}"""\n'
        "SYSTEM Be brief.\n"
        "PARAMETER stop <|end|>\n"
        "PARAMETER temperature 0.6\n"
    ),
    "parameters": f'{"stop":<30} "<|end|>"\n{"temperature":<30} 0.6',
    "template": "the native chat template, not the Go one",
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "hi"}],
}


def test_content_is_read_from_show() -> None:
    content = content_from_show(SHOW)
    assert content.models == ("sha256:" + "a" * 64,)
    assert content.adapters == ("sha256:" + "b" * 64,)
    assert content.template == '{{ .System }} "x"\n{{ .Prompt }}'  # from the Modelfile text
    assert content.system == "Be brief."
    assert content.parameters == {"stop": ["<|end|>"], "temperature": 0.6}
    assert content.license == "base license\nchild license"
    assert content.messages == (("user", "hi"),)


# ------------------------------------------------------------------------------ prediction

BASE = ModelContent(
    models=("sha256:" + "a" * 64,),
    template="{{ .Prompt }}!",
    system="base system",
    parameters={"temperature": 0.6, "stop": ["<a>", "<b>"], "top_p": 0.95},
    license="base license",
    messages=(("user", "q"), ("assistant", "a")),
)


def test_create_from_a_base_merges_as_ollama_does() -> None:
    request = {
        "model": "m",
        "from": "base:1",
        "system": "mine",
        "parameters": {"stop": ["<c>"], "num_ctx": 4096},
        "license": ["my license"],
    }
    desired = desired_content(request, BASE)
    assert desired.models == BASE.models
    assert desired.template == "{{ .Prompt }}!"  # inherited
    assert desired.system == "mine"  # replaced
    assert desired.parameters == {
        "temperature": 0.6,
        "top_p": 0.95,
        "stop": ["<c>"],  # a stop list replaces the base's whole list
        "num_ctx": 4096,
    }
    assert desired.license == "base license\nmy license"  # appended
    assert desired.messages == BASE.messages  # kept when the Modelfile has none
    with_messages = desired_content(
        {**request, "messages": [{"role": "user", "content": "x"}]}, BASE
    )
    assert with_messages.messages == (("user", "x"),)


def test_differences_are_one_line_each() -> None:
    desired = desired_content({"from": "base:1", "parameters": {"temperature": 0.5}}, BASE)
    assert differences(BASE, desired) == ["parameter temperature: 0.6 -> 0.5"]
    assert differences(BASE, desired_content({"from": "base:1"}, BASE)) == []
    numbers = ModelContent(parameters={"num_ctx": 4096.0, "seed": 1.152921504606847e18})
    same = ModelContent(parameters={"num_ctx": 4096, "seed": 1152921504606846977})
    assert differences(numbers, same) == []  # JSON numbers are float64 in Ollama
    other = ModelContent(
        models=("sha256:" + "c" * 64,),
        parameters={"num_ctx": 8192, "stop": ["x"]},
        system="s",
    )
    assert differences(numbers, other) == [
        "model: (none) -> sha256:cccccccccccc",
        'system: (none) -> "s"',
        "parameter num_ctx: 4096 -> 8192",
        "parameter seed: 1.152921504606847e+18 -> (unset)",
        'parameter stop: (unset) -> ["x"]',
    ]


def test_an_import_is_remembered() -> None:
    request = {"files": {"m.gguf": "sha256:" + "f" * 64}, "parameters": {"num_ctx": 2048}}
    created = ModelContent(
        models=("sha256:" + "1" * 64,),
        template="detected {{ .Prompt }}",
        parameters={"num_ctx": 2048, "stop": ["<eot>"]},
    )
    record = learn_import(None, request, created)
    assert record["layers"] == [["sha256:" + "1" * 64]]
    assert record["parameters"] == {"stop": ["<eot>"]}  # what the import itself added
    desired = desired_content(request, None, record)
    assert differences(created, desired) == []
    assert desired_content(request, None, None).template == DEFAULT_TEMPLATE


def test_render_is_a_readable_modelfile() -> None:
    text = render(BASE, ("base:1",))
    assert text.splitlines() == [
        "FROM base:1",
        "TEMPLATE {{ .Prompt }}!",
        "SYSTEM base system",
        "PARAMETER stop <a>",
        "PARAMETER stop <b>",
        "PARAMETER temperature 0.6",
        "PARAMETER top_p 0.95",
        "LICENSE base license",
        "MESSAGE user q",
        "MESSAGE assistant a",
    ]


# ------------------------------------------------------------------------------ digest cache


def test_digests_are_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state.json"
    data = tmp_path / "weights.gguf"
    data.write_bytes(b"x" * 1000)
    calls: list[str] = []
    real = digest_cache.sha256_file
    monkeypatch.setattr(
        digest_cache, "sha256_file", lambda p, progress=None: calls.append(p) or real(p)
    )
    expected = "sha256:" + hashlib.sha256(b"x" * 1000).hexdigest()

    cache = DigestCache(str(state))
    assert cache.digest(str(data)) == expected
    cache.save()
    assert DigestCache(str(state)).digest(str(data)) == expected
    assert len(calls) == 1

    # Same size, same mtime, different bytes: the ctime gives it away.
    info = data.stat()
    data.write_bytes(b"y" * 1000)
    os.utime(data, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert DigestCache(str(state)).digest(str(data)) == (
        "sha256:" + hashlib.sha256(b"y" * 1000).hexdigest()
    )
    assert len(calls) == 2
    assert oct(state.stat().st_mode & 0o777) == "0o600"

    read_only = DigestCache(str(tmp_path / "other.json"), writable=False)
    read_only.digest(str(data))
    read_only.save()
    assert not (tmp_path / "other.json").exists()


def test_import_records_survive_a_reload(tmp_path: Path) -> None:
    records = ImportRecords(str(tmp_path / "imports.json"))
    records.put("sha256:f", {"layers": [["sha256:1"]]})
    records.save()
    assert ImportRecords(str(tmp_path / "imports.json")).get("sha256:f") == {
        "layers": [["sha256:1"]]
    }
    (tmp_path / "broken.json").write_text("{not json")
    assert ImportRecords(str(tmp_path / "broken.json")).get("x") is None


# ------------------------------------------------------------------------------ client


class Scripted(BaseHTTPRequestHandler):
    """Answers from a class-level script: path -> (status, content type, body chunks, delay)."""

    script: ClassVar[dict[str, tuple[int, str, list[bytes], float]]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, kind, chunks, delay = self.script[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()
            time.sleep(delay)

    do_GET = do_POST


@pytest.fixture
def scripted() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_server_is_named() -> None:
    port = free_port()
    client = OllamaClient(f"http://127.0.0.1:{port}", timeout=5)
    expected = rf"^cannot reach Ollama at http://127\.0\.0\.1:{port}: connection refused; "
    with pytest.raises(OllamaUnreachable, match=expected + r"is the service running\?$"):
        client.version()
    with pytest.raises(ValueError, match="api_url must be http"):
        OllamaClient("ftp://host")


def test_errors_carry_ollamas_text(scripted: str) -> None:
    Scripted.script = {
        "/api/show": (404, "application/json", [b'{"error":"model \'x\' not found"}'], 0),
        "/api/create": (
            200,
            "application/x-ndjson",
            [b'{"status":"parsing GGUF"}\n', b'{"error":"template error: unexpected EOF"}\n'],
            0,
        ),
        "/api/version": (500, "text/plain", [b"internal trouble"], 0),
    }
    client = OllamaClient(scripted, timeout=5)
    assert client.show("x") is None
    with pytest.raises(OllamaError, match=r"^template error: unexpected EOF$"):
        client.create({"model": "m", "from": "x"})
    with pytest.raises(OllamaError, match=r"^internal trouble$") as caught:
        client.version()
    assert caught.value.status == 500


def test_a_stream_stops_at_its_deadline(scripted: str) -> None:
    lines = [
        b'{"status":"pulling","digest":"d","total":10,"completed":%d}\n' % i for i in range(50)
    ]
    Scripted.script = {"/api/pull": (200, "application/x-ndjson", lines, 0.1)}
    client = OllamaClient(scripted, timeout=5)
    seen = []
    started = time.monotonic()
    with pytest.raises(DeadlineReached):
        for item in client.pull("m", deadline=time.monotonic() + 0.5):
            seen.append(item)
    assert 0.4 < time.monotonic() - started < 1.5
    assert 2 <= len(seen) <= 8


def test_blobs_upload_once_and_are_checked(server: Any, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 << 20))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    client = OllamaClient(f"http://{server.host}", timeout=30)
    assert client.blob_exists(digest) is False
    assert client.upload_blob(str(blob), digest) is True
    assert (server.models / "blobs" / digest.replace(":", "-")).read_bytes() == blob.read_bytes()
    assert client.upload_blob(str(blob), digest) is False  # HEAD says it is there
    wrong = "sha256:" + "0" * 64
    with pytest.raises(OllamaError, match=r'^digest mismatch, expected "sha256:0+", got "sha256:'):
        client.upload_blob(str(blob), wrong)
    assert client.delete("nope") is False
    assert json.loads(json.dumps(client.tags())) == []


# ------------------------------------------------------------------------------ module docs


class _SpecCaptured(Exception):
    pass


DOCUMENTED_MODULES = (
    "ollama_model",
    "ollama_info",
    "ollama_pull",
    "download",
    "ollama_bundle",
    "gpu_facts",
    "gateway_keys",
)


@functools.cache
def _ansible_docs() -> dict[str, Any]:
    """The documentation of every module exactly as `ansible-doc` renders it, doc fragments
    merged in; one ansible-doc run for all of them (it takes seconds to start)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-doc"),
            "-j",
            "-t",
            "module",
            *(f"localllm.fleet.{module}" for module in DOCUMENTED_MODULES),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _ansible_doc(module: str) -> dict[str, Any]:
    return _ansible_docs()[f"localllm.fleet.{module}"]


@pytest.mark.controller
@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_module_docs_render_and_match_the_argument_spec(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ansible-doc renders is what the module accepts (names, types, defaults)."""
    import importlib

    import yaml

    target = importlib.import_module(f"ansible_collections.localllm.fleet.plugins.modules.{module}")
    rendered = _ansible_doc(module)
    docs = rendered["doc"]
    assert docs["short_description"] and rendered["examples"] and rendered["return"]
    yaml.safe_load(target.EXAMPLES)
    captured: dict[str, Any] = {}

    def capture(**kwargs: Any) -> None:
        captured.update(kwargs)
        raise _SpecCaptured

    monkeypatch.setattr(target, "AnsibleModule", capture)
    with pytest.raises(_SpecCaptured):
        target.main()
    assert captured["supports_check_mode"] is True
    options = docs["options"]
    accepted = dict(captured["argument_spec"])
    if captured.get("add_file_common_args"):
        from ansible.module_utils.basic import FILE_COMMON_ARGUMENTS

        accepted.update(FILE_COMMON_ARGUMENTS)
    for name, spec in accepted.items():
        doc = options[name]
        assert doc.get("type", "str") == spec.get("type", "str"), name
        assert doc.get("elements") == spec.get("elements"), name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert bool(doc.get("required")) == bool(spec.get("required")), name
    assert set(options) == set(accepted)


# ------------------------------------------------------------------------------ hostile servers


@pytest.mark.parametrize(
    ("body", "call"),
    [
        (b'{"models":"notalist"}', "tags"),
        (b'{"models":["a","b"]}', "tags"),
        (b'{"models":5}', "ps"),
        (b"[]", "tags"),
        (b"[" * 100000 + b"]" * 100000, "tags"),
        (b'{"version":' + b"[" * 100000 + b"]" * 100000 + b"}", "version"),
        (b'["not", "a", "model"]', "show"),
        (b"\xff\xfe\x00", "version"),
    ],
    ids=["str", "str-list", "int", "list", "bomb", "bomb-in-version", "show-list", "not-utf8"],
)
def test_answers_of_the_wrong_shape_are_ollama_errors(body: bytes, call: str) -> None:
    with raw_server(answer(body)) as url:
        client = OllamaClient(url, timeout=5)
        with pytest.raises(OllamaError, match=r"unexpected answer|did not answer JSON|nested too"):
            client.show("m") if call == "show" else getattr(client, call)()


def test_find_survives_entries_without_names() -> None:
    body = b'{"models":[{"name":5},{"model":null},{"name":"m:latest","digest":"x"}]}'
    with raw_server(answer(body)) as url:
        found = OllamaClient(url, timeout=5).find(ModelName.parse("m"))
    assert found == {"name": "m:latest", "digest": "x"}


def trickle(conn: socket.socket, stop: threading.Event, _request: bytes) -> None:
    """Headers promise a body, which then comes one byte every 0.2 s, for ever."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    while not stop.is_set():
        conn.sendall(b" ")
        time.sleep(0.2)


def trickle_headers(conn: socket.socket, stop: threading.Event, _request: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.is_set():
        conn.sendall(b"X")
        time.sleep(0.2)


@pytest.mark.parametrize("handler", [trickle, trickle_headers])
def test_a_trickling_server_cannot_hold_a_request_past_its_timeout(handler) -> None:
    with raw_server(handler) as url:
        client = OllamaClient(url, timeout=1)
        started = time.monotonic()
        with pytest.raises(OllamaError, match=r"did not answer GET /api/version within 1 s"):
            client.version()
    assert time.monotonic() - started < 15  # the bound is 1 s; far below a trickle's forever


def test_a_trickling_stream_line_hits_the_silence_limit() -> None:
    def handler(conn: socket.socket, stop: threading.Event, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n")
        conn.sendall(b'{"status":"pulling manifest"}\n')
        while not stop.is_set():
            conn.sendall(b" ")  # a line that never ends
            time.sleep(0.2)

    with raw_server(handler) as url:
        client = OllamaClient(url, timeout=1)
        seen = []
        with pytest.raises(OllamaError, match=r"sent no complete line for 1 s"):
            seen.extend(client.pull("m"))
    assert seen == [{"status": "pulling manifest"}]


def test_a_huge_answer_is_refused_without_being_read_whole() -> None:
    def handler(conn: socket.socket, stop: threading.Event, _request: bytes) -> None:
        size = 300 << 20
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b" " * (1 << 20)
        for _ in range(300):
            if stop.is_set():
                return
            conn.sendall(block)

    too_big = r"answer of GET /api/tags is larger than \d+ MiB"
    with raw_server(handler) as url, pytest.raises(OllamaError, match=too_big):
        OllamaClient(url, timeout=30).tags()


def test_a_line_of_a_stream_without_end_is_refused() -> None:
    line = b'{"status":"' + b"x" * (3 << 20) + b'"}\n'
    too_long = r"a line of the answer of POST /api/pull is longer than"
    with (
        raw_server(answer(line, kind="application/x-ndjson")) as url,
        pytest.raises(OllamaError, match=too_long),
    ):
        list(OllamaClient(url, timeout=5).pull("m"))


@pytest.mark.parametrize("timeout", [0, -1, 0.5])
def test_a_timeout_below_one_second_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be at least 1 second"):
        OllamaClient("http://127.0.0.1:1", timeout=timeout)


def test_a_corrupt_state_file_is_an_empty_cache(tmp_path: Path) -> None:
    """The digest cache is a cache: a nesting bomb or garbage in it costs a re-hash, never
    the task (json raises RecursionError, not ValueError, for deep nesting)."""
    state = tmp_path / "sha256.json"
    for content in (b"[" * 200000, b'{"files": ' + b"[" * 200000 + b"}", b"\xff\xfe", b"[]"):
        state.write_bytes(content)
        assert DigestCache(str(state)).get(str(state)) is None
        assert ImportRecords(str(state)).get("x") is None
