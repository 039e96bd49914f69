"""Run localllm.fleet modules in-process the way Ansible invokes them, for the unit tests.

Ansible hands a module its arguments as `{"ANSIBLE_MODULE_ARGS": {...}}` (with `_ansible_*`
keys for check and diff mode) and reads one JSON object from its stdout; exit_json and
fail_json end the process. `run()` does exactly that inside the test process, so a module
goes through AnsibleModule's argument validation and its real main().
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as module_warnings

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins" / "ollama"
if str(STANDINS) not in sys.path:
    sys.path.insert(0, str(STANDINS))


def run(
    module: str, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run plugins/modules/<module>.py's main() with `args`; the JSON result it printed.

    A failed module gives a result with `failed: true` and `msg`, as Ansible would see it.
    """
    payload = {
        "ANSIBLE_MODULE_ARGS": {
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
            "_ansible_tmpdir": os.environ.get("TMPDIR", "/tmp"),
            "_ansible_remote_tmp": os.environ.get("TMPDIR", "/tmp"),
            "_ansible_keep_remote_files": False,
        }
    }
    target = importlib.import_module(f"ansible_collections.localllm.fleet.plugins.modules.{module}")
    out = io.StringIO()
    saved = (basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE, module_utils_internal.is_controller)
    basic._ANSIBLE_ARGS = json.dumps(payload).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    # A module runs on the target: once another test has loaded Ansible's controller code,
    # warnings would go to the controller's display instead of into the result.
    module_utils_internal.is_controller = False
    # Each module run on a host is a new process: no warning of an earlier run in this one
    # may reach its result (ansible-core keeps them in module-level dicts).
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            target.main()
    finally:
        (
            basic._ANSIBLE_ARGS,
            basic._ANSIBLE_PROFILE,
            module_utils_internal.is_controller,
        ) = saved
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"{module} printed no result:\n{out.getvalue()}")
    return json.loads(lines[-1])


def warning_texts(result: dict[str, Any]) -> list[str]:
    """The texts of a module's module.warn() calls: Ansible prints `[WARNING]: ...`, and
    ansible-core 2.19 carries each as a summary ({"event": {"msg": ...}})."""
    return [w if isinstance(w, str) else w["event"]["msg"] for w in result.get("warnings", [])]


def store_listing(models: Path) -> dict[str, int]:
    """Every file below an OLLAMA_MODELS directory with its size (to prove nothing moved)."""
    if not models.exists():
        return {}
    return {
        str(path.relative_to(models)): path.stat().st_size
        for path in sorted(models.rglob("*"))
        if path.is_file()
    }


def store_snapshot(models: Path) -> dict[str, tuple[int, int]]:
    """Like store_listing, with modification times: a rewrite in place shows up too."""
    if not models.exists():
        return {}
    return {
        str(path.relative_to(models)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(models.rglob("*"))
        if path.is_file()
    }


def api_url(server: Any) -> str:
    return f"http://{server.host}"


# --------------------------------------------------------------------------- test data


def write_gguf(
    path: Path, megabytes: float = 0.01, name: str = "lab", canonical: bool = True
) -> Path:
    """A real GGUF file (llama architecture) of about `megabytes`, deterministic per name.

    canonical=False leaves out general.quantization_version, so that Ollama's import
    re-serializes it into a blob with a different digest (as it does for many files).
    """
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("model")
    writer.add_name(f"localllm.fleet test model {name}")
    writer.add_file_type(0)
    if canonical:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(4096)
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<unk>", "<s>", "</s>", "a"])
    writer.add_token_types([3, 3, 3, 1])
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    count = max(int(megabytes * 1_000_000 / 4), 64)
    weights = np.random.default_rng(seed).standard_normal(count).astype(np.float32)
    writer.add_tensor("token_embd.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish_model(
    root: Path, repo: str, tag: str, gguf_path: Path, template: str = "{{ .Prompt }}"
) -> str:
    """Put a model into a static OCI registry tree (as make-models does); its manifest digest."""
    model = gguf_path.read_bytes()
    blobs = [
        ("application/vnd.ollama.image.model", model),
        ("application/vnd.ollama.image.template", template.encode()),
        ("application/vnd.ollama.image.params", b'{"temperature":0.6}\n'),
    ]
    config = json.dumps(
        {
            "model_format": "gguf",
            "model_family": "llama",
            "model_families": ["llama"],
            "model_type": "1M",
            "file_type": "F32",
            "architecture": "amd64",
            "os": "linux",
        },
        separators=(",", ":"),
    ).encode()
    layers = [
        {"mediaType": media, "digest": "sha256:" + sha256_hex(data), "size": len(data)}
        for media, data in blobs
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + sha256_hex(config),
                "size": len(config),
            },
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    base = root / "v2" / repo
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "manifests").mkdir(parents=True, exist_ok=True)
    for _media, data in [*blobs, ("config", config)]:
        (base / "blobs" / ("sha256:" + sha256_hex(data))).write_bytes(data)
    (base / "manifests" / tag).write_bytes(manifest)
    return sha256_hex(manifest)


def _load_script(path: Path, name: str) -> Any:
    """Import a script without a .py suffix (registry-server, mirror-server) as a module."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@dataclass
class SlowServer:
    """A registry or mirror on 127.0.0.1 that sends file bodies at `rate` bytes/s and
    records the Range header of every GET (to prove that a transfer resumed)."""

    port: int
    ranges: list[str]
    server: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def slow_server(
    root: Path, kind: str, rate: float | None = None, hold_after: int | None = None
) -> Iterator[SlowServer]:
    """kind `registry` (tests/standins/ollama/registry-server, blob redirects), `mirror`
    (tests/lab/mirror-server, byte ranges) or `plain` (http.server, ignores ranges).

    `hold_after`: the first body longer than that stops after `hold_after` bytes until the
    client comes back with another request (then the rest follows at full speed), so that a
    transfer is cut into at least two calls whatever the machine's load: no clock involved.
    """
    if kind == "registry":
        script = _load_script(STANDINS / "registry-server", "registry_server")
        base = script.RegistryHandler
    elif kind == "plain":  # http.server as is: no Range support
        base = SimpleHTTPRequestHandler
    else:
        script = _load_script(REPO / "tests" / "lab" / "mirror-server", "mirror_server")
        base = script.MirrorHandler
    ranges: list[str] = []
    holding = threading.Event()  # a body is on hold
    released = threading.Event()  # a later request came: let it go
    hold_lock = threading.Lock()

    class Handler(base):  # type: ignore[misc, valid-type]
        def log_message(self, format: str, *args: Any) -> None:
            return

        def send_head(self):  # type: ignore[no-untyped-def]
            if self.command == "GET":
                ranges.append(self.headers.get("Range") or "")
            if holding.is_set():
                released.set()
            return super().send_head()

        def copyfile(self, source: Any, outputfile: Any) -> None:
            if hold_after is not None:
                with hold_lock:
                    first = not holding.is_set()
                    head = source.read(hold_after + 1) if first else b""
                    if len(head) > hold_after:
                        holding.set()
                if head:
                    try:
                        outputfile.write(head[:hold_after])
                        outputfile.flush()
                        if len(head) > hold_after:
                            released.wait(120)
                        outputfile.write(head[hold_after:])
                    except OSError:
                        return
            if rate is None:
                super().copyfile(source, outputfile)
                return
            remaining = getattr(self, "_remaining", None)
            block = 32 * 1024
            while remaining is None or remaining > 0:
                chunk = source.read(block if remaining is None else min(block, remaining))
                if not chunk:
                    break
                try:
                    outputfile.write(chunk)
                    outputfile.flush()
                except OSError:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                time.sleep(len(chunk) / rate)
            self._remaining = None

    def factory(*args: Any, **kwargs: Any) -> Any:
        return Handler(*args, directory=str(root), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), factory)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield SlowServer(server.server_address[1], ranges, server)
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME: the modules keep their digest cache in ~/.cache/localllm-fleet."""
    home = tmp_path / "remote-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(scope="module")
def shared_server(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One `ollama serve` for a test module whose tests use distinct model names."""
    from standin_testing import serving

    with serving(artifact, tmp_path_factory.mktemp("ollama-home")) as running:
        yield running


# --------------------------------------------------------------------------- hostile servers


@contextlib.contextmanager
def raw_server(handler: Any) -> Iterator[str]:
    """A loopback TCP server whose `handler(conn, stop, request)` writes whatever bytes it
    likes (`request`: the first bytes the client sent; `stop` is set when the test ends)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=_handle, args=(conn,), daemon=True).start()

    def _handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                request = _read_request(conn)  # all of it: unread bytes would reset the socket
                handler(conn, stop, request)
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _read_request(conn: socket.socket) -> bytes:
    """The request line, headers and a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def answer(body: bytes, status: str = "200 OK", kind: str = "application/json") -> Any:
    """A raw_server handler that answers `body` once."""

    def handler(conn: socket.socket, _stop: threading.Event, _request: bytes) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)

    return handler


def routed(answers: dict[str, Any]) -> Any:
    """A raw_server handler answering by request path: {path: raw_server handler}."""

    def handler(conn: socket.socket, stop: threading.Event, request: bytes) -> None:
        path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else ""
        answers[path](conn, stop, request)

    return handler


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_from_registry(registry_root: Path, store: Path, models: list[tuple[str, str]]) -> None:
    """Lay out an Ollama store (manifests + blobs) holding `models` of a registry tree, as
    `ollama pull` leaves it (the manifest is stored exactly as the registry sent it)."""
    for model, tag in models:
        repo = registry_root / "v2" / "library" / model
        raw = (repo / "manifests" / tag).read_bytes()
        target = store / "manifests" / "registry.ollama.ai" / "library" / model / tag
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        data = json.loads(raw)
        (store / "blobs").mkdir(parents=True, exist_ok=True)
        for entry in [data["config"], *data["layers"]]:
            blob = store / "blobs" / entry["digest"].replace(":", "-")
            if not blob.exists():
                blob.write_bytes((repo / "blobs" / entry["digest"]).read_bytes())


def flip_byte(archive: Path, member: str, at: int = 10) -> None:
    """Corrupt one byte of a tar member's data in place (its size stays the same)."""
    import tarfile

    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data + at
    with open(archive, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
