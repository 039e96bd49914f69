"""`ollama serve`: the HTTP API (server/routes.go) over the store in store.py.

Responses follow gin as Ollama uses it: `c.JSON` bodies are compact Go JSON with
`application/json; charset=utf-8`; streams are NDJSON (`application/x-ndjson`, chunked), and an
error raised before the first streamed line becomes a plain JSON error with its status code;
after it, an `{"error": ...}` line.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import ipaddress
import os
import queue
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from . import envconfig, ggufinfo, models, names, registry, sched, store, textgen, version
from .gojson import (
    MAX_DURATION,
    EmptyBody,
    JSONSyntaxError,
    JSONTypeError,
    check_struct,
    decode_first,
    dumps,
    format_duration,
    format_time,
    go_quote,
    parse_duration,
)

# --------------------------------------------------------------------------- logging

_LEVELS = {"DEBUG": -4, "INFO": 0, "WARN": 4, "ERROR": 8}
_log_lock = threading.Lock()


def log(level: str, message: str, source: str = "routes.go:1") -> None:
    if _LEVELS.get(level, 0) < envconfig.log_level():
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    offset = time.localtime(now).tm_gmtoff or 0
    stamp += (
        "Z"
        if offset == 0
        else f"{'+' if offset >= 0 else '-'}{abs(offset) // 3600:02d}:"
        f"{abs(offset) % 3600 // 60:02d}"
    )
    if not message.startswith("msg="):
        message = f"msg={go_quote(message)}"
    with _log_lock:
        sys.stderr.write(f"time={stamp} level={level} source={source} {message}\n")
        sys.stderr.flush()


# ------------------------------------------------------------------ request schemas


def _duration(raw: Any) -> int:
    """api.Duration.UnmarshalJSON, in ns."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        kind = {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}.get(
            type(raw), "string"
        )
        raise JSONTypeError(f"Unsupported type: '{kind}'")
    if isinstance(raw, str):
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise JSONTypeError(str(exc)) from exc
        return MAX_DURATION if value < 0 else value
    if raw < 0:
        return MAX_DURATION
    return int(raw * 1_000_000_000)


def _think(raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        if raw not in ("high", "medium", "low", "max"):
            raise JSONTypeError(
                f"invalid think value: {go_quote(raw)} "
                '(must be "high", "medium", "low", "max", true, or false)'
            )
        return raw
    raise JSONTypeError(
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
    )


MESSAGE = (
    "struct",
    "Alias",
    {
        "role": "string",
        "content": "string",
        "thinking": "string",
        "images": "any",
        "tool_calls": "any",
        "tool_name": "string",
        "tool_call_id": "string",
    },
    "api.Message",
)
OPTIONS = ("map", "any", "map[string]interface {}")
GENERATE = {
    "model": "string", "prompt": "string", "suffix": "string", "system": "string",
    "template": "string", "context": ("slice", "int", "[]int"), "stream": ("ptr", "bool"),
    "raw": "bool", "format": "any", "keep_alive": _duration, "images": "any", "options": OPTIONS,
    "think": _think, "truncate": ("ptr", "bool"), "shift": ("ptr", "bool"), "logprobs": "bool",
    "top_logprobs": "int",
}  # fmt: skip
CHAT = {
    "model": "string", "messages": ("slice", MESSAGE, "[]api.Message"), "stream": ("ptr", "bool"),
    "format": "any", "keep_alive": _duration, "tools": "any", "options": OPTIONS, "think": _think,
    "truncate": ("ptr", "bool"), "shift": ("ptr", "bool"), "logprobs": "bool",
    "top_logprobs": "int",
}  # fmt: skip
CREATE = {
    "model": "string", "stream": ("ptr", "bool"), "quantize": "string", "draft_quantize": "string",
    "from": "string", "remote_host": "string", "files": ("map", "string", "map[string]string"),
    "draft_files": ("map", "string", "map[string]string"),
    "adapters": ("map", "string", "map[string]string"), "template": "string", "license": "any",
    "system": "string", "parameters": OPTIONS, "messages": ("slice", MESSAGE, "[]api.Message"),
    "renderer": "string", "parser": "string", "requires": "string", "info": OPTIONS,
    "name": "string", "quantization": "string",
}  # fmt: skip
DELETE = {"model": "string", "name": "string"}
SHOW = {
    "model": "string",
    "system": "string",
    "template": "string",
    "verbose": "bool",
    "options": OPTIONS,
    "name": "string",
}
PULL = {
    "model": "string", "insecure": "bool", "username": "string", "password": "string",
    "stream": ("ptr", "bool"), "name": "string",
}  # fmt: skip
COPY = {"source": "string", "destination": "string"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bind(body: bytes, schema: dict[str, Any], struct_name: str) -> dict[str, Any]:
    """gin's ShouldBindJSON: 400 with Go's decoder messages."""
    try:
        value = decode_first(body)
    except EmptyBody as exc:
        raise HTTPError(400, "missing request body") from exc
    except JSONSyntaxError as exc:
        raise HTTPError(400, str(exc)) from exc
    try:
        return check_struct(value, struct_name, schema, f"api.{struct_name}")
    except JSONTypeError as exc:
        raise HTTPError(400, str(exc)) from exc


# ----------------------------------------------------------------------- the server


class OllamaServer:
    def __init__(self, listen_addr: tuple[str, int]) -> None:
        self.listen_addr = listen_addr
        self.gpu_warnings: list[str] = []
        self.gpus = sched.discover_gpus(self.gpu_warnings.append)
        self.default_num_ctx = sched.default_num_ctx(self.gpus)
        self.scheduler = sched.Scheduler(self.gpus, log)
        self.no_prune = envconfig.no_prune()

    # ------------------------------------------------------------------ helpers
    def resolve(self, raw: str) -> names.Name:
        base, _source = names.parse_ref(raw)
        name = names.parse(base)
        if not name.valid:
            raise ValueError("invalid model name")
        return store.existing_name(name)

    def options_for(
        self, model: models.Model, request_options: dict[str, Any] | None
    ) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "num_predict": -1, "num_keep": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9,
            "typical_p": 1.0, "repeat_last_n": 64, "repeat_penalty": 1.0, "seed": -1,
            "num_ctx": envconfig.context_length(), "num_batch": 512, "num_gpu": -1,
        }  # fmt: skip
        for source in (model.options, request_options or {}):
            for key, value in source.items():
                if value is None:
                    continue
                if key in (
                    "num_predict",
                    "num_keep",
                    "top_k",
                    "seed",
                    "num_ctx",
                    "num_batch",
                    "num_gpu",
                    "repeat_last_n",
                    "main_gpu",
                    "num_thread",
                ):
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise HTTPError(500, f'option "{key}" must be of type integer')
                    opts[key] = int(value)
                elif key in (
                    "temperature",
                    "top_p",
                    "min_p",
                    "typical_p",
                    "repeat_penalty",
                    "presence_penalty",
                    "frequency_penalty",
                ):
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise HTTPError(500, f'option "{key}" must be of type float32')
                    opts[key] = float(value)
                elif key == "stop":
                    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                        raise HTTPError(500, f'option "{key}" must be of type array')
                    opts[key] = list(value)
                elif key == "use_mmap":
                    if not isinstance(value, bool):
                        raise HTTPError(500, f'option "{key}" must be of type boolean')
                    opts[key] = value
                else:
                    log("WARN", f'msg="invalid option provided" option={key}')
        return opts

    def runner_for(
        self, model: models.Model, opts: dict[str, Any], keep_alive: int | None
    ) -> sched.Runner:
        info: ggufinfo.GGUFInfo | None = None
        if model.model_path:
            if not os.path.exists(model.model_path):
                raise HTTPError(
                    404, f"model {go_quote(model.short_name)} not found, try pulling it first"
                )
            try:
                info = ggufinfo.read(model.model_path)
            except ggufinfo.GGUFError as exc:
                raise HTTPError(
                    500, f"llama runner process has terminated: error loading model: {exc}"
                ) from exc

        def build(taken: dict[int, int]) -> sched.Runner:
            trained = int(info.arch_value("context_length") or 0) if info else 0
            num_ctx = opts.get("num_ctx") or self.default_num_ctx
            if trained and num_ctx > trained:
                num_ctx = trained
            file_size = os.path.getsize(model.model_path) if model.model_path else 0
            details = model.details()
            size = sched.weights_bytes(
                file_size,
                [
                    details.get("parameter_size") or "",
                    model.name.display_shortest().rsplit(":", 1)[-1],
                    str(details.get("parent_model") or "").rsplit(":", 1)[-1],
                ],
            )
            blocks = 1
            if info is not None:
                blocks = int(info.arch_value("block_count") or 0) or 1
                heads = int(info.arch_value("attention.head_count") or 1) or 1
                heads_kv = int(info.arch_value("attention.head_count_kv") or heads)
                embd = int(info.arch_value("embedding_length") or 0)
                head_dim = int(
                    info.arch_value("attention.key_length") or (embd // heads if heads else 0)
                )
                kv_bytes = {"q8_0": 34 / 32, "q4_0": 18 / 32}.get(
                    envconfig.var("OLLAMA_KV_CACHE_TYPE"), 2.0
                )
                parallel = max(envconfig.num_parallel(), 1)
                size += int(2 * blocks * num_ctx * parallel * heads_kv * head_dim * kv_bytes)
            use = sched.place(self.gpus, taken, size, blocks + 1) if self.gpus else {}
            size_vram = sum(use.values())
            log(
                "INFO",
                f'msg="loaded model" model={model.short_name} num_ctx={num_ctx} size={size} '
                f"size_vram={size_vram} gpus={','.join(str(i) for i in sorted(use)) or 'cpu'}",
                "sched.go:500",
            )
            return sched.Runner(
                name=str(model.name),
                short=model.short_name,
                digest=model.digest,
                details=details,
                size=size,
                size_vram=size_vram,
                context_length=num_ctx,
                session_ns=keep_alive if keep_alive is not None else envconfig.keep_alive_ns(),
                gpu_use=use,
            )

        try:
            return self.scheduler.acquire(str(model.name), build, keep_alive)
        except sched.QueueFull as exc:
            raise HTTPError(503, str(exc)) from exc


# ----------------------------------------------------------------------- streaming


class Stream:
    """A producer thread feeding NDJSON lines (or an error) to the handler."""

    END = object()

    def __init__(self, work: Callable[[Callable[[dict], None]], None]) -> None:
        self.items: queue.Queue = queue.Queue()
        # Set when the client went away (upstream: the request context is cancelled).
        self.cancelled = threading.Event()

        def run() -> None:
            try:
                work(self.items.put)
            except HTTPError as exc:
                self.items.put(exc)
            except models.BadRequest as exc:
                self.items.put(HTTPError(400, str(exc)))
            except registry.PullError as exc:
                self.items.put(HTTPError(500, str(exc)))
            except FileNotFoundError as exc:
                self.items.put(HTTPError(500, store.go_os_error(exc)))
            except Exception as exc:
                self.items.put(HTTPError(500, str(exc) or type(exc).__name__))
            self.items.put(self.END)

        threading.Thread(target=run, daemon=True).start()

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.items.get()
            if item is self.END:
                return
            yield item


# ------------------------------------------------------------------------ handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-standin"
    sys_version = ""
    # Go's net package sets TCP_NODELAY on every TCP connection; without it a response
    # written in two parts waits for the peer's delayed ACK (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    app: OllamaServer

    # gin's routes, with their allowed methods
    ROUTES: ClassVar[dict[str, tuple[str, ...]]] = {
        "/": ("GET", "HEAD"),
        "/api/version": ("GET", "HEAD"),
        "/api/tags": ("GET", "HEAD"),
        "/api/ps": ("GET",),
        "/api/pull": ("POST",),
        "/api/push": ("POST",),
        "/api/show": ("POST",),
        "/api/delete": ("DELETE",),
        "/api/create": ("POST",),
        "/api/copy": ("POST",),
        "/api/generate": ("POST",),
        "/api/chat": ("POST",),
        "/api/embed": ("POST",),
        "/api/embeddings": ("POST",),
        "/v1/chat/completions": ("POST",),
        "/v1/completions": ("POST",),
        "/v1/embeddings": ("POST",),
        "/v1/models": ("GET",),
    }

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())
        self._status = code

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        chunks = list(self._iter_body())
        return b"".join(chunks)

    def _iter_body(self) -> Iterator[bytes]:
        """The request body, plain or chunked; raises EOFError when it is cut short."""
        self._body_consumed = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise EOFError
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise EOFError
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)
            return
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:
            data = (
                self.rfile.read1(min(remaining, 1 << 20))
                if hasattr(self.rfile, "read1")
                else self.rfile.read(min(remaining, 1 << 20))
            )
            if not data:
                raise EOFError
            remaining -= len(data)
            yield data

    def _headers_common(self, content_type: str | None) -> None:
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in getattr(self, "_extra_headers", {}).items():
            self.send_header(key, value)

    def send_json(
        self, status: int, value: Any, content_type: str = "application/json; charset=utf-8"
    ) -> None:
        body = dumps(value).encode()
        self.send_bytes(status, body, content_type)

    def send_bytes(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        self._headers_common(content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._finish_log()

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def stream_ndjson(self, stream: Stream, convert: Callable[[Any], Any] | None = None) -> None:
        """streamResponse: status + JSON error if nothing was written yet."""
        started = False
        for item in stream:
            if isinstance(item, HTTPError):
                if not started:
                    self.send_error_json(item.status, item.message)
                    return
                self._write_chunk(dumps({"error": item.message}).encode() + b"\n")
                break
            if not started:
                self.send_response(200)
                self._headers_common("application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                started = True
            value = convert(item) if convert else item
            if not self._write_chunk(dumps(value).encode() + b"\n"):
                stream.cancelled.set()  # gin's Stream returns when the client is gone
                self._finish_log()
                return
        if started:
            self._write_chunk(b"")
            self._finish_log()

    def wait_stream(self, stream: Stream) -> None:
        """waitForStream (stream: false): the last progress, or the error."""
        latest: Any = {"status": ""}
        for item in stream:
            if isinstance(item, HTTPError):
                self.send_json(item.status, {"error": item.message}, "application/json")
                for _ in stream:
                    pass
                return
            latest = item
        self.send_json(200, latest, "application/json")

    def _write_chunk(self, data: bytes) -> bool:
        """False when the client has gone away."""
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return False
        return True

    def _finish_log(self) -> None:
        latency = time.monotonic_ns() - getattr(self, "_start", time.monotonic_ns())
        client = self.client_address[0] if self.client_address else ""
        line = "[GIN] {} | {:3d} | {:>13} | {:>15} | {:<7} {}\n".format(
            time.strftime("%Y/%m/%d - %H:%M:%S"),
            getattr(self, "_status", 0),
            format_duration(latency),
            client,
            self.command,
            go_quote(urllib.parse.urlsplit(self.path).path),
        )
        with _log_lock:
            sys.stderr.write(line)
            sys.stderr.flush()

    # ------------------------------------------------------------------ dispatch
    def handle_one_request(self) -> None:
        self._start = time.monotonic_ns()
        self._body_consumed = False
        self._extra_headers = {}
        super().handle_one_request()

    def __getattr__(self, item: str) -> Any:
        if item.startswith("do_"):
            return self._dispatch
        raise AttributeError(item)

    def _dispatch(self) -> None:
        try:
            self._route()
        except HTTPError as exc:
            self.send_error_json(exc.status, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception as exc:
            log("ERROR", f"msg={go_quote('handler failed: ' + repr(exc))}")
            with contextlib.suppress(Exception):
                self.send_error_json(500, str(exc))
        if not self._body_consumed and self.command not in ("GET", "HEAD", "OPTIONS"):
            # like net/http: discard a small unread body to keep the connection, else close it
            length = self.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) <= 256 << 10:
                with contextlib.suppress(OSError):
                    self.rfile.read(int(length))
            else:
                self.close_connection = True

    def _route(self) -> None:
        if version.BROKEN == "http500":
            self.send_error_json(
                500, "ollama runtime failed to initialize (deliberately broken test build)"
            )
            return
        path = urllib.parse.urlsplit(self.path).path
        if version.BROKEN == "inference" and path in (
            "/api/chat",
            "/api/generate",
            "/v1/chat/completions",
            "/v1/completions",
        ):
            # The server is up (/api/version answers) but no model runner starts: every load
            # and every inference fails, as upstream reports a runner that dies at start.
            self._read_body()
            log(
                "ERROR",
                'msg="llama runner terminated" error="deliberately broken test build (inference)"',
                "server.go:1",
            )
            self.send_error_json(
                500,
                "llama runner process has terminated: deliberately broken test build (inference)",
            )
            return
        if not self._cors_and_host():
            return
        if path.startswith("/api/blobs/") and path.count("/") == 3:
            digest = urllib.parse.unquote(path[len("/api/blobs/") :])
            if self.command == "HEAD":
                self.head_blob(digest)
            elif self.command == "POST":
                self.create_blob(digest)
            else:
                self.send_bytes(405, b"405 method not allowed", "text/plain")
            return
        if path.startswith("/v1/models/") and path.count("/") == 3 and self.command == "GET":
            self.v1_retrieve(urllib.parse.unquote(path[len("/v1/models/") :]))
            return
        methods = self.ROUTES.get(path)
        if methods is None:
            if path.endswith("/") and path.rstrip("/") in self.ROUTES:
                self.send_response(301 if self.command == "GET" else 307)
                self.send_header("Location", path.rstrip("/"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._finish_log()
                return
            self.send_bytes(404, b"404 page not found", "text/plain")
            return
        if self.command not in methods:
            self.send_bytes(405, b"405 method not allowed", "text/plain")
            return
        handler = {
            "/": self.root,
            "/api/version": self.api_version,
            "/api/tags": self.api_tags,
            "/api/ps": self.api_ps,
            "/api/pull": self.api_pull,
            "/api/push": self.api_push,
            "/api/show": self.api_show,
            "/api/delete": self.api_delete,
            "/api/create": self.api_create,
            "/api/copy": self.api_copy,
            "/api/generate": self.api_generate,
            "/api/chat": self.api_chat,
            "/api/embed": self.api_embed,
            "/api/embeddings": self.api_embed,
            "/v1/chat/completions": self.v1_chat,
            "/v1/completions": self.v1_unsupported,
            "/v1/embeddings": self.v1_unsupported,
            "/v1/models": self.v1_models,
        }[path]
        handler()

    def _cors_and_host(self) -> bool:
        origin = self.headers.get("Origin")
        if origin:
            allowed = any(
                fnmatch.fnmatchcase(origin, pattern) for pattern in envconfig.allowed_origins()
            ) or origin.startswith(
                ("chrome-extension://", "moz-extension://", "safari-web-extension://")
            )
            if not allowed:
                self.send_bytes(403, b"", None)
                return False
            self._extra_headers["Access-Control-Allow-Origin"] = origin
            self._extra_headers["Vary"] = "Origin"
            if self.command == "OPTIONS":
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header(
                    "Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
                )
                self.send_header(
                    "Access-Control-Allow-Headers",
                    self.headers.get("Access-Control-Request-Headers", ""),
                )
                self.send_header("Access-Control-Max-Age", "43200")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._finish_log()
                return False
        # allowedHostsMiddleware: on a loopback listener only local Host headers pass
        try:
            listen_ip = ipaddress.ip_address(self.app.listen_addr[0])
        except ValueError:
            listen_ip = None
        if listen_ip is not None and listen_ip.is_loopback:
            host_header = self.headers.get("Host", "")
            try:
                hostname, _ = envconfig.split_host_port(host_header)
            except ValueError:
                hostname = host_header
            hostname = hostname.strip("[]").lower()
            if not _allowed_host(hostname):
                self.send_bytes(403, b"", None)
                return False
        return True

    # ------------------------------------------------------------------ handlers
    def root(self) -> None:
        self.send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")

    def api_version(self) -> None:
        self.send_json(200, {"version": version.VERSION})

    def api_tags(self) -> None:
        entries = []
        for name, manifest in store.list_manifests().items():
            entry = models.list_entry(name, manifest)
            entry["modified_at"] = format_time(entry["modified_at"])
            entries.append((manifest.mtime_ns // 1_000_000_000, str(name), entry))
        entries.sort(key=lambda e: (-e[0], e[1]))
        self.send_json(200, {"models": [e[2] for e in entries]})

    def api_ps(self) -> None:
        out = []
        for runner in sorted(
            self.app.scheduler.loaded(), key=lambda r: -(r.expires_at_ns or MAX_DURATION)
        ):
            expires = runner.expires_at_ns or (
                time.time_ns() + runner.session_ns
                if runner.session_ns < MAX_DURATION // 2
                else time.time_ns() + MAX_DURATION // 2
            )
            out.append(
                {
                    "name": runner.short,
                    "model": runner.short,
                    "size": runner.size,
                    "digest": runner.digest,
                    "details": runner.details,
                    "expires_at": format_time(min(expires, 253402300799 * 1_000_000_000)),
                    "size_vram": runner.size_vram,
                    "context_length": runner.context_length,
                }
            )
        self.send_json(200, {"models": out})

    # ---- blobs
    def head_blob(self, digest: str) -> None:
        try:
            path = store.blobs_path(digest)
        except store.InvalidDigest as exc:
            raise HTTPError(400, str(exc)) from exc
        if not os.path.isfile(path):
            raise HTTPError(404, f"blob {go_quote(digest)} not found")
        self.send_bytes(200, b"", None)

    def create_blob(self, digest: str) -> None:
        try:
            path = store.blobs_path(digest)
        except store.InvalidDigest as exc:
            raise HTTPError(400, str(exc)) from exc
        if os.path.exists(path):
            with contextlib.suppress(EOFError, OSError):
                for _chunk in self._iter_body():  # let the client finish sending
                    pass
            self.send_bytes(200, b"", None)
            return
        blobs = os.path.dirname(path)
        with store.temp_in(blobs, "sha256-") as (handle, tmp_path):
            hasher = hashlib.sha256()
            try:
                for chunk in self._iter_body():
                    handle.write(chunk)
                    hasher.update(chunk)
            except (EOFError, ConnectionError, OSError) as exc:
                self.close_connection = True
                raise HTTPError(500, "unexpected EOF") from exc
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise HTTPError(
                    400, f"digest mismatch, expected {go_quote(digest)}, got {go_quote(actual)}"
                )
            with store.LOCK:
                if not os.path.exists(path):
                    os.chmod(tmp_path, 0o644)
                    os.replace(tmp_path, path)
        store.touch(path)
        self.send_bytes(201, b"", None)

    # ---- model management
    def api_show(self) -> None:
        req = bind(self._read_body(), SHOW, "ShowRequest")
        raw = req.get("model") or req.get("name") or ""
        if not raw:
            raise HTTPError(400, "model is required")
        try:
            base, source = names.parse_ref(raw)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        if source == "cloud":
            raise HTTPError(502, "remote model details are unavailable")
        name = names.parse(base)
        if not name.valid:
            raise HTTPError(400, "invalid model name")
        name = store.existing_name(name)
        try:
            model = models.load(name)
            resp = models.show(model, bool(req.get("verbose")), req.get("system") or "")
        except FileNotFoundError as exc:
            if exc.filename and exc.filename != store.manifest_path(name):
                raise HTTPError(500, store.go_os_error(exc)) from exc
            raise HTTPError(404, f"model '{name.display_shortest()}' not found") from exc
        except RuntimeError as exc:
            raise HTTPError(500, str(exc)) from exc
        resp["modified_at"] = format_time(resp["modified_at"])
        self.send_json(200, resp)

    def api_delete(self) -> None:
        req = bind(self._read_body(), DELETE, "DeleteRequest")
        raw = req.get("model") or req.get("name") or ""
        try:
            base, _source = names.parse_ref(raw)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        name = names.parse(base)
        if not name.valid:
            raise HTTPError(400, f"name {go_quote(raw)} is invalid")
        name = store.existing_name(name)
        try:
            manifest = store.read_manifest(name)
        except FileNotFoundError as exc:
            raise HTTPError(404, f"model '{raw}' not found") from exc
        except (OSError, ValueError) as exc:
            raise HTTPError(500, str(exc)) from exc
        self.app.scheduler.expire(str(name))
        store.remove_manifest(manifest)
        store.remove_unused_layers(manifest.all_digests())
        self.send_bytes(200, b"", None)

    def api_copy(self) -> None:
        req = bind(self._read_body(), COPY, "CopyRequest")
        src = names.parse(req.get("source", ""))
        if not src.valid:
            raise HTTPError(400, f"source {go_quote(req.get('source', ''))} is invalid")
        dst = names.parse(req.get("destination", ""))
        if not dst.valid:
            raise HTTPError(400, f"destination {go_quote(req.get('destination', ''))} is invalid")
        src, dst = store.existing_name(src), store.existing_name(dst)
        try:
            with open(store.manifest_path(src), "rb") as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise HTTPError(404, f"model {go_quote(req.get('source', ''))} not found") from exc
        if src.filepath() != dst.filepath():
            store.write_manifest_raw(dst, data)
        self.send_bytes(200, b"", None)

    def api_create(self) -> None:
        req = bind(self._read_body(), CREATE, "CreateRequest")
        for path, digest in (req.get("files") or {}).items():
            if not _valid_fs_path(path):
                raise HTTPError(400, "file path must be relative")
            if not digest:
                raise HTTPError(400, "invalid digest format")
        for digest in (req.get("adapters") or {}).values():
            if not digest:
                raise HTTPError(400, "invalid digest format")
        name = names.parse(req.get("model") or req.get("name") or "")
        if not name.valid:
            raise HTTPError(400, "invalid model name")
        name = store.existing_name(name)
        app = self.app

        def work(emit: Callable[[dict], None]) -> None:
            def pull(model: str, progress: Callable[[dict], None]) -> None:
                registry.pull(model, False, progress, app.no_prune)

            models.create(name, req, emit, pull, app.no_prune)
            emit({"status": "success"})

        stream = Stream(work)
        if req.get("stream") is False:
            self.wait_stream(stream)
        else:
            self.stream_ndjson(stream)

    def api_pull(self) -> None:
        req = bind(self._read_body(), PULL, "PullRequest")
        raw = req.get("model") or req.get("name") or ""
        try:
            base, _source = names.parse_ref(raw)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        name = names.parse(base)
        if not name.valid:
            raise HTTPError(400, "invalid model name")
        name = store.existing_name(name)
        insecure = bool(req.get("insecure"))
        app = self.app
        cancelled = threading.Event()

        def work(emit: Callable[[dict], None]) -> None:
            # upstream passes DisplayShortest(): an explicit http:// scheme is dropped
            registry.pull(name.display_shortest(), insecure, emit, app.no_prune, cancelled)

        stream = Stream(work)
        stream.cancelled = cancelled
        if req.get("stream") is False:
            self.wait_stream(stream)
        else:
            self.stream_ndjson(stream)

    def api_push(self) -> None:
        self._read_body()
        raise HTTPError(500, "pushing models is not supported by this stand-in")

    def api_embed(self) -> None:
        self._read_body()
        raise HTTPError(501, "embeddings are not implemented by this stand-in")

    # ---- inference
    def _load_for_inference(
        self, raw: str, not_found_status: int
    ) -> tuple[names.Name, models.Model]:
        try:
            name = self.app.resolve(raw)
        except ValueError as exc:
            if str(exc) == "model is required":
                if not_found_status == 404:
                    raise HTTPError(404, f"model '{raw}' not found") from exc
                raise HTTPError(400, "model is required") from exc
            raise HTTPError(400, "invalid model name") from exc
        try:
            return name, models.load(name)
        except FileNotFoundError as exc:
            raise HTTPError(404, f"model '{raw}' not found") from exc

    def api_generate(self) -> None:
        start = time.monotonic_ns()
        req = bind(self._read_body(), GENERATE, "GenerateRequest")
        if not 0 <= int(req.get("top_logprobs") or 0) <= 20:
            raise HTTPError(400, "top_logprobs must be between 0 and 20")
        raw = req.get("model") or ""
        name, model = self._load_for_inference(raw, 404)
        keep_alive = req.get("keep_alive")
        prompt = req.get("prompt") or ""
        if prompt == "" and keep_alive == 0:
            self.app.scheduler.expire(str(name))
            self.send_json(200, _gen_resp(raw, "", done=True, done_reason="unload"))
            return
        if req.get("raw") and (req.get("template") or req.get("system") or req.get("context")):
            raise HTTPError(400, "raw mode does not support template, system, or context")
        caps = model.capabilities()
        think = _resolve_think(req.get("think"), caps, raw)
        if "completion" not in caps:
            raise HTTPError(400, f"{go_quote(raw)} does not support generate")
        opts = self.app.options_for(model, req.get("options"))
        runner = self.app.runner_for(model, opts, keep_alive)
        loaded = time.monotonic_ns()
        try:
            if prompt == "":
                self.send_json(200, _gen_resp(raw, "", done=True, done_reason="load"))
                return
            system = req.get("system") or model.system
            rendered = "\n".join(
                filter(None, [system, *[m["content"] for m in model.messages], prompt])
            )
            gen = self._generate(
                model,
                rendered=rendered,
                last_user=prompt,
                opts=opts,
                think=think,
                fmt=req.get("format"),
                num_ctx=runner.context_length,
            )
            stream = Stream(
                lambda emit: self._emit_pieces(
                    emit,
                    make=_gen_resp,
                    model_name=raw,
                    gen=gen,
                    start=start,
                    loaded=loaded,
                    with_context=True,
                )
            )
            if req.get("stream") is False:
                self._collect_generate(stream)
            else:
                self.stream_ndjson(stream)
        finally:
            self.app.scheduler.release(runner)

    def _generate(
        self,
        model: models.Model,
        *,
        rendered: str,
        last_user: str,
        opts: dict[str, Any],
        think: Any,
        fmt: Any,
        num_ctx: int,
    ) -> dict[str, Any]:
        want_think = think not in (None, False)
        json_format = fmt not in (None, "", b"")
        generation = textgen.generate(
            model.digest,
            rendered,
            last_user=last_user,
            options=opts,
            think=want_think,
            json_format=json_format,
        )
        prompt_tokens = (
            min(textgen.count_tokens(rendered) + 4, num_ctx)
            if num_ctx
            else textgen.count_tokens(rendered) + 4
        )
        limit = opts.get("num_predict", -1)
        stops = opts.get("stop") or []
        pieces: list[tuple[str, str]] = [("thinking", p) for p in generation.thinking] + [
            ("content", p) for p in generation.content
        ]
        done_reason = "stop"
        if isinstance(limit, int) and limit >= 0 and len(pieces) > limit:
            pieces = pieces[:limit]
            done_reason = "length"
        text = ""
        out: list[tuple[str, str]] = []
        for kind, piece in pieces:
            if kind == "content" and stops:
                candidate = text + piece
                cut = min((candidate.find(s) for s in stops if s and s in candidate), default=-1)
                if cut >= 0:
                    remainder = candidate[len(text) : cut]
                    if remainder:
                        out.append((kind, remainder))
                    done_reason = "stop"
                    break
                text = candidate
            out.append((kind, piece))
        pace = 0.0
        if envconfig.var("OLLAMA_STANDIN_PACE") not in ("", "0", "false"):
            details = model.details()
            sizes = [
                details.get("parameter_size") or "",
                model.name.display_shortest().rsplit(":", 1)[-1],
                str(details.get("parent_model") or "").rsplit(":", 1)[-1],
            ]
            rate = sched.simulated_tokens_per_second(
                self.app.gpus, sizes, details.get("family", "")
            )
            pace = 1.0 / rate
        return {
            "pieces": out,
            "done_reason": done_reason,
            "prompt_tokens": prompt_tokens,
            "pace": pace,
        }

    def _emit_pieces(
        self,
        emit: Callable[[dict], None],
        *,
        make: Callable[..., dict[str, Any]],
        model_name: str,
        gen: dict[str, Any],
        start: int,
        loaded: int,
        with_context: bool,
    ) -> None:
        """Stream the pieces as /api/generate (make=_gen_resp) or /api/chat (_chat_resp) do:
        one message per token, thinking before content, then the final one with metrics."""
        eval_start = time.monotonic_ns()
        for kind, piece in gen["pieces"]:
            if gen["pace"]:
                time.sleep(gen["pace"])
            if kind == "thinking":
                emit(make(model_name, "", done=False, thinking=piece))
            else:
                emit(make(model_name, piece, done=False))
        now = time.monotonic_ns()
        final = make(model_name, "", done=True, done_reason=gen["done_reason"])
        if with_context:
            final["context"] = list(range(1, gen["prompt_tokens"] + len(gen["pieces"]) + 1))
        final.update(
            _metrics(
                start=start,
                loaded=loaded,
                eval_start=eval_start,
                now=now,
                prompt_tokens=gen["prompt_tokens"],
                eval_tokens=len(gen["pieces"]),
            )
        )
        emit(final)

    def _collect_generate(self, stream: Stream) -> None:
        thinking, content, last = [], [], None
        for item in stream:
            if isinstance(item, HTTPError):
                raise item
            thinking.append(item.get("thinking", ""))
            content.append(item.get("response", ""))
            last = item
        assert last is not None
        last["response"] = "".join(content)
        if "".join(thinking):
            last = _insert_after(last, "response", "thinking", "".join(thinking))
        self.send_json(200, last)

    def api_chat(self, openai: bool = False) -> None:
        start = time.monotonic_ns()
        req = self._openai_request if openai else bind(self._read_body(), CHAT, "ChatRequest")
        if not 0 <= int(req.get("top_logprobs") or 0) <= 20:
            raise HTTPError(400, "top_logprobs must be between 0 and 20")
        raw = req.get("model") or ""
        name, model = self._load_for_inference(raw, 400)
        keep_alive = req.get("keep_alive")
        messages = req.get("messages") or []
        if not messages and keep_alive == 0:
            self.app.scheduler.expire(str(name))
            self.send_json(200, _chat_resp(raw, "", done=True, done_reason="unload"))
            return
        caps = model.capabilities()
        think = _resolve_think(req.get("think"), caps, raw)
        if "completion" not in caps:
            raise HTTPError(400, f"{go_quote(raw)} does not support chat")
        if req.get("tools") and "tools" not in caps:
            raise HTTPError(
                400,
                f"registry.ollama.ai/library/{raw} does not support tools"
                if "/" not in raw
                else f"{raw} does not support tools",
            )
        opts = self.app.options_for(model, req.get("options"))
        runner = self.app.runner_for(model, opts, keep_alive)
        loaded = time.monotonic_ns()
        try:
            if not messages:
                self.send_json(200, _chat_resp(raw, "", done=True, done_reason="load"))
                return
            msgs = list(model.messages) + list(messages)
            if messages[0].get("role") != "system" and model.system:
                msgs = [{"role": "system", "content": model.system}, *msgs]
            rendered = "\n".join(f"{m.get('role', '')}: {m.get('content') or ''}" for m in msgs)
            last_user = next(
                (m.get("content") or "" for m in reversed(msgs) if m.get("role") == "user"), ""
            )
            gen = self._generate(
                model,
                rendered=rendered,
                last_user=last_user,
                opts=opts,
                think=think,
                fmt=req.get("format"),
                num_ctx=runner.context_length,
            )
            stream = Stream(
                lambda emit: self._emit_pieces(
                    emit,
                    make=_chat_resp,
                    model_name=raw,
                    gen=gen,
                    start=start,
                    loaded=loaded,
                    with_context=False,
                )
            )
            if openai:
                self._openai_write(stream, req)
            elif req.get("stream") is False:
                self._collect_chat(stream)
            else:
                self.stream_ndjson(stream)
        finally:
            self.app.scheduler.release(runner)

    def _collect_chat(self, stream: Stream) -> None:
        thinking, content, last = [], [], None
        for item in stream:
            if isinstance(item, HTTPError):
                raise item
            thinking.append(item["message"].get("thinking", ""))
            content.append(item["message"].get("content", ""))
            last = item
        assert last is not None
        message = {"role": "assistant", "content": "".join(content)}
        if "".join(thinking):
            message["thinking"] = "".join(thinking)
        last["message"] = message
        self.send_json(200, last)

    # ---- OpenAI compatibility
    def v1_models(self) -> None:
        data = []
        entries = []
        for name, manifest in store.list_manifests().items():
            entries.append((manifest.mtime_ns // 1_000_000_000, str(name), name, manifest))
        entries.sort(key=lambda e: (-e[0], e[1]))
        for seconds, _key, name, _manifest in entries:
            short = name.display_shortest()
            data.append(
                {
                    "id": short,
                    "object": "model",
                    "created": seconds,
                    "owned_by": names.parse(short).namespace,
                }
            )
        self.send_json(200, {"object": "list", "data": data or None}, "application/json")

    def v1_retrieve(self, model: str) -> None:
        try:
            name = self.app.resolve(model)
            manifest = store.read_manifest(name)
        except (ValueError, FileNotFoundError):
            self._openai_error(404, f"model '{model}' not found")
            return
        self.send_json(
            200,
            {
                "id": model,
                "object": "model",
                "created": manifest.mtime_ns // 1_000_000_000,
                "owned_by": names.parse(model).namespace,
            },
            "application/json",
        )

    def _openai_error(self, status: int, message: str) -> None:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        self.send_json(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
            "application/json",
        )

    def v1_unsupported(self) -> None:
        self._read_body()
        self._openai_error(501, "this endpoint is not implemented by this stand-in")

    def v1_chat(self) -> None:
        try:
            value = decode_first(self._read_body())
        except EmptyBody:
            self._openai_error(400, "EOF")
            return
        except JSONSyntaxError as exc:
            self._openai_error(400, str(exc))
            return
        if not isinstance(value, dict):
            self._openai_error(
                400, "json: cannot unmarshal into Go value of type openai.ChatCompletionRequest"
            )
            return
        messages = value.get("messages") or []
        if not messages:
            self._openai_error(400, "[] is too short - 'messages'")
            return
        chat_messages = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                text = "".join(
                    part.get("text", "")
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
                content = text
            elif not isinstance(content, str):
                if message.get("tool_calls") is None:
                    self._openai_error(
                        400, f"invalid message content type: {type(content).__name__}"
                    )
                    return
                content = ""
            chat_messages.append({"role": str(message.get("role", "")).lower(), "content": content})
        options: dict[str, Any] = {
            "temperature": value.get("temperature", 1.0),
            "top_p": value.get("top_p", 1.0),
        }
        if value.get("max_tokens") is not None:
            options["num_predict"] = value["max_tokens"]
        if value.get("seed") is not None:
            options["seed"] = value["seed"]
        stop = value.get("stop")
        if isinstance(stop, str):
            options["stop"] = [stop]
        elif isinstance(stop, list):
            options["stop"] = [s for s in stop if isinstance(s, str)]
        effort = (
            (value.get("reasoning") or {}).get("effort")
            if isinstance(value.get("reasoning"), dict)
            else value.get("reasoning_effort")
        )
        think: Any = None
        if effort:
            think = {"none": False, "minimal": "low", "xhigh": "max", "ultra": "max"}.get(
                effort, effort
            )
        fmt = None
        rf = value.get("response_format")
        if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
            fmt = "json"
        self._openai_request = {
            "model": value.get("model", ""),
            "messages": chat_messages,
            "options": options,
            "think": think,
            "format": fmt,
            "stream": bool(value.get("stream")),
            "stream_options": value.get("stream_options"),
            "tools": value.get("tools"),
        }
        try:
            self.api_chat(openai=True)
        except HTTPError as exc:
            self._openai_error(exc.status, exc.message)

    def _openai_write(self, stream: Stream, req: dict[str, Any]) -> None:
        ident = f"chatcmpl-{int.from_bytes(os.urandom(2), 'big') % 999}"
        if not req.get("stream"):
            thinking, content, last = [], [], None
            for item in stream:
                if isinstance(item, HTTPError):
                    raise item
                thinking.append(item["message"].get("thinking", ""))
                content.append(item["message"].get("content", ""))
                last = item
            assert last is not None
            message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
            if "".join(thinking):
                message["reasoning"] = "".join(thinking)
            created = int(time.time())
            self.send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": last["model"],
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": last.get("done_reason") or None,
                        }
                    ],
                    "usage": _usage(last),
                },
                "application/json",
            )
            return
        created = int(time.time())
        first = True
        started = False
        for item in stream:
            if isinstance(item, HTTPError):
                if not started:
                    raise item
                break
            if not started:
                self.send_response(200)
                self._headers_common("text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                started = True
            msg = item["message"]
            empty_trailer = (
                item["done"] and not first and not msg.get("content") and not msg.get("thinking")
            )
            if not empty_trailer:
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                delta["content"] = msg.get("content", "")
                if msg.get("thinking"):
                    delta["reasoning"] = msg["thinking"]
                chunk = _openai_chunk(ident, created, item["model"], delta, None)
                self._write_chunk(b"data: " + dumps(chunk).encode() + b"\n\n")
                first = False
            if item["done"]:
                finish = _openai_chunk(
                    ident, created, item["model"], {}, item.get("done_reason") or "stop"
                )
                self._write_chunk(b"data: " + dumps(finish).encode() + b"\n\n")
                if (req.get("stream_options") or {}).get("include_usage"):
                    usage_chunk = dict(finish)
                    usage_chunk["choices"] = []
                    usage_chunk["usage"] = _usage(item)
                    self._write_chunk(b"data: " + dumps(usage_chunk).encode() + b"\n\n")
                self._write_chunk(b"data: [DONE]\n\n")
        if started:
            self._write_chunk(b"")
            self._finish_log()


def _insert_after(d: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = v
        if k == after:
            out[key] = value
    return out


def _openai_chunk(
    ident: str, created: int, model: str, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(resp: dict[str, Any]) -> dict[str, int]:
    prompt = int(resp.get("prompt_eval_count", 0))
    completion = int(resp.get("eval_count", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _metrics(
    *, start: int, loaded: int, eval_start: int, now: int, prompt_tokens: int, eval_tokens: int
) -> dict[str, int]:
    total = max(now - start, 1)
    load = max(loaded - start, 1)
    prompt_eval = max(eval_start - loaded, 1)
    out = {"total_duration": total, "load_duration": load}
    if prompt_tokens:
        out["prompt_eval_count"] = prompt_tokens
    out["prompt_eval_duration"] = prompt_eval
    if eval_tokens:
        out["eval_count"] = eval_tokens
        out["eval_duration"] = max(now - eval_start, 1)
    return out


def _resolve_think(think: Any, caps: list[str], raw: str) -> Any:
    """A thinking-capable model thinks unless told not to; asking another one is an error."""
    if "thinking" in caps:
        return True if think is None else think
    if think not in (None, False):
        raise HTTPError(400, f"{go_quote(raw)} does not support thinking")
    return think


def _gen_resp(
    model: str, response: str, done: bool, done_reason: str = "", thinking: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "created_at": format_time(time.time_ns(), utc=True),
        "response": response,
    }
    if thinking:
        out["thinking"] = thinking
    out["done"] = done
    if done_reason:
        out["done_reason"] = done_reason
    return out


def _chat_resp(
    model: str, content: str, done: bool, done_reason: str = "", thinking: str = ""
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    out: dict[str, Any] = {
        "model": model,
        "created_at": format_time(time.time_ns(), utc=True),
        "message": message,
        "done": done,
    }
    if done_reason:
        out["done_reason"] = done_reason
    return out


def _allowed_host(host: str) -> bool:
    if host in ("", "localhost"):
        return True
    with contextlib.suppress(OSError):
        if host == socket.gethostname().lower():
            return True
    if any(host.endswith("." + tld) for tld in ("localhost", "local", "internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified


def _valid_fs_path(path: str) -> bool:
    """io/fs.ValidPath: unrooted, slash-separated, no '.', '..' or empty elements."""
    if path == ".":
        return True
    if not path or path.startswith("/") or path.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type, family: int) -> None:
        self.address_family = family
        super().__init__(addr, handler)


def serve() -> int:
    """RunServer + Serve."""
    from . import keypair

    try:
        import numpy  # noqa: F401 - the gguf reader needs it; fail at start, not at first use
    except ImportError:
        sys.stderr.write(
            "Error: this Ollama stand-in needs numpy for python3 "
            "(Debian/Ubuntu: apt-get install python3-numpy)\n"
        )
        return 1
    try:
        keypair.ensure()
    except OSError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    url = envconfig.host()
    for warning in envconfig.take_warnings():
        log("WARN", warning, "envconfig/config.go:60")
    family = socket.AF_INET6 if ":" in url.host else socket.AF_INET
    bind_host = url.host
    if bind_host == "localhost":
        bind_host = "127.0.0.1"
    try:
        port = int(url.port)
        httpd = _Server((bind_host, port), Handler, family)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno == 98:
            reason = "address already in use"
        sys.stderr.write(f"Error: listen tcp {url.hostport}: bind: {reason}\n")
        return 1
    except socket.gaierror as exc:
        sys.stderr.write(f"Error: listen tcp {url.hostport}: {exc}\n")
        return 1
    env = " ".join(f"{k}:{v}" for k, v in sorted(envconfig.values().items()))
    log("INFO", f'msg="server config" env="map[{env}]"', "routes.go:1950")
    if version.BROKEN == "exit":
        log(
            "ERROR",
            'msg="failed to initialize the runtime (deliberately broken test build)"',
            "routes.go:1958",
        )
        sys.stderr.write(
            "Error: unable to initialize llm runtime: deliberately broken test build\n"
        )
        httpd.server_close()
        return 1
    try:
        store.blobs_path("")
        store.fix_blobs()
        if not envconfig.no_prune():
            try:
                store.list_manifests(continue_on_error=False)
            except ValueError as exc:
                log(
                    "WARN",
                    'msg="corrupt manifests detected, skipping prune operation.  '
                    f'Re-pull or delete to clear" error="{exc}"',
                )
            else:
                store.prune_layers(log)
                store.prune_directory(store.manifests_dir())
                store.manifests_dir()
    except OSError as exc:
        reason = exc.strerror if exc.strerror and ":" in exc.strerror else None
        sys.stderr.write(f"Error: {reason or store.go_os_error(exc, 'mkdir')}\n")
        httpd.server_close()
        return 1
    app = OllamaServer((bind_host, httpd.server_address[1]))
    Handler.app = app
    for warning in app.gpu_warnings:
        log("WARN", warning, "cuda_compat.go:70")
    # discover/types.go LogDetails: one line per device, by free memory; the CPU without any
    for gpu in sorted(app.gpus, key=lambda g: g.used - g.total):
        log(
            "INFO",
            f'msg="inference compute" id={gpu.uuid} filter_id="" library=CUDA '
            f"compute={gpu.compute or go_quote('')} name=CUDA{gpu.index} "
            f'description="{gpu.name}" libdirs=ollama,cuda_v12 driver="" '
            f"pci_id={gpu.bus or go_quote('')} type=discrete "
            f'total="{gpu.total / (1 << 30):.1f} GiB" '
            f'available="{(gpu.total - gpu.used) / (1 << 30):.1f} GiB"',
            "types.go:32",
        )
    if not app.gpus:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        log(
            "INFO",
            'msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu '
            'libdirs=ollama driver="" pci_id="" type="" '
            f'total="{pages / (1 << 30):.1f} GiB" available="{free / (1 << 30):.1f} GiB"',
            "types.go:50",
        )
    log(
        "INFO",
        f'msg="vram-based default context" default_num_ctx={app.default_num_ctx}',
        "routes.go:2040",
    )
    actual = envconfig.join_host_port(bind_host, str(httpd.server_address[1]))
    log("INFO", f'msg="Listening on {actual} (version {version.VERSION})"', "routes.go:1990")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    import signal

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        app.scheduler.unload_all()
        httpd.server_close()
    return 0
