# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""A small client for Ollama's HTTP API, for modules that run on the managed host.

Standard library only (http.client): JSON requests, NDJSON streams that can be cut off at a
deadline, and blob uploads streamed from disk (weights can be hundreds of GB, so a body is
never held in memory). Errors say what went wrong in words an operator can act on:
`OllamaUnreachable` when nothing answers, `OllamaError` with Ollama's own text when it
refuses. Model names are parsed as Ollama parses them (types/model/name.go).

Whatever answers is not trusted: an exchange must end within the client's timeout as a whole
(a server sending one byte at a time cannot hold it longer), a stream must send a complete
line within its silence limit, answers and lines are read up to a size cap, and an answer of
the wrong shape is an OllamaError, never another exception.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._create import (
    validate_model_name,
)
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._syntax import ModelfileError

# Where the ollama role's default ollama_host is reached from the host itself; the roles pass
# the address derived from the host's ollama_host (tests/unit/test_ollama_facts.py keeps the two
# in step).
DEFAULT_API_URL = "http://127.0.0.1:11434"
# The options every API-talking module takes; documented once in doc_fragments/ollama_api.py.
API_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "api_url": {"type": "str", "default": DEFAULT_API_URL},
    "timeout": {"type": "int", "default": 600},
}
DEFAULT_TIMEOUT = 600.0
_UPLOAD_BLOCK = 1 << 20
#: The largest JSON answer read (a /api/show with a long license is a few hundred KB).
MAX_ANSWER_BYTES = 32 << 20
#: The longest line of an NDJSON stream (progress lines are about 200 bytes).
MAX_LINE_BYTES = 1 << 20
_ERROR_BYTES = 64 << 10

__all__ = [
    "API_ARGUMENT_SPEC",
    "DEFAULT_API_URL",
    "DEFAULT_TIMEOUT",
    "DeadlineReached",
    "ModelName",
    "OllamaClient",
    "OllamaError",
    "OllamaUnreachable",
    "connection_reason",
]


class OllamaUnreachable(Exception):
    """Nothing (or not Ollama) answers at the API URL."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach Ollama at {url}: {reason}; is the service running?")


class OllamaError(Exception):
    """Ollama answered with an error; str() is Ollama's own text. status 0: inside a stream."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class DeadlineReached(Exception):
    """A stream was cut off because its deadline passed (not an error of Ollama's)."""


class _Watchdog:
    """Closes a connection's socket when its time is up, so that a read blocked on a server
    that sends one byte at a time ends (a socket timeout only bounds each recv)."""

    def __init__(self, sock: socket.socket | None) -> None:
        # The socket itself: http.client drops conn.sock once a response will close it.
        self.sock = sock
        self.fired = False
        self._deadline: float | None = None
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="ollama-watchdog")
        self._thread.start()

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired = True
                self._deadline = None
                sock = self.sock
                if sock is not None:
                    # The plain socket's shutdown, also under TLS: the reader sees EOF.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def connection_reason(exc: BaseException) -> str:
    """A connection failure in a few words: `connection refused`, `timed out`, ..."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- names


@dataclass(frozen=True)
class ModelName:
    """A model reference with Ollama's defaults filled in (registry.ollama.ai/library/x:latest)."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse like Ollama's ParseName; ValueError `invalid model name: <text>` otherwise."""
        try:
            validate_model_name(text)
        except ModelfileError as err:
            raise ValueError(str(err)) from None
        rest, host, namespace, tag = text, "", "", ""
        if rest.rfind(":") > rest.rfind("/"):
            rest, _, tag = rest.rpartition(":")
        rest, slash, model = rest.rpartition("/")
        if slash:
            rest, slash, namespace = rest.rpartition("/")
            if slash:
                host = rest.partition("://")[2] if "://" in rest else rest
        return cls(
            host=host or "registry.ollama.ai",
            namespace=namespace or "library",
            model=model,
            tag=tag or "latest",
        )

    def display_shortest(self) -> str:
        """The name `ollama list` shows: `m:latest`, `ns/m:tag`, `host/ns/m:tag`."""
        if self.host.lower() != "registry.ollama.ai":
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != "library":
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest_path(self) -> str:
        """Where the manifest lives below OLLAMA_MODELS/manifests."""
        return "/".join((self.host, self.namespace, self.model, self.tag))

    def same(self, other: str) -> bool:
        """Ollama compares names case-insensitively."""
        try:
            parsed = ModelName.parse(other)
        except ValueError:
            return False
        return parsed.display_shortest().lower() == self.display_shortest().lower()


# --------------------------------------------------------------------------- client


class OllamaClient:
    """One Ollama server. Every call opens its own connection (the API is not chatty)."""

    def __init__(self, api_url: str = DEFAULT_API_URL, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            seconds = float(timeout)
        except (TypeError, ValueError):
            seconds = 0.0
        if not seconds >= 1:  # also nan
            raise ValueError(
                f"timeout must be at least 1 second (how long Ollama may take to answer), "
                f"not {timeout!r}"
            )
        parts = urllib.parse.urlsplit(api_url if "://" in api_url else "http://" + api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_url must be http(s)://host[:port], not {api_url!r}")
        self.url = api_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as err:
            raise ValueError(f"api_url has an invalid port: {api_url!r}") from err
        self.base_path = parts.path.rstrip("/")
        self.timeout = seconds

    # ------------------------------------------------------------------ plumbing
    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        limit = self.timeout if timeout is None else timeout
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host,
                self.port,
                timeout=limit,
                context=ssl.create_default_context(),
                blocksize=_UPLOAD_BLOCK,
            )
        return http.client.HTTPConnection(
            self.host, self.port, timeout=limit, blocksize=_UPLOAD_BLOCK
        )

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        answer_within: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, _Watchdog]:
        """Connect, send, and read the status line and headers.

        The watchdog bounds the status line and headers by `answer_within` (default: the
        timeout) once the request is sent; the caller re-arms or stops it.
        """
        conn = self._connection(timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise OllamaUnreachable(self.url, connection_reason(exc)) from exc
        all_headers = {"Accept": "application/json", "User-Agent": "localllm.fleet"}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        limit = conn.timeout if answer_within is None else answer_within
        watchdog = _Watchdog(conn.sock)
        try:
            conn.request(method, self.base_path + path, body=body, headers=all_headers)
            watchdog.arm(limit)
            return conn, conn.getresponse(), watchdog
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            watchdog.stop()
            conn.close()
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise OllamaError(self._late(method, path, limit)) from exc
            raise OllamaUnreachable(self.url, connection_reason(exc)) from exc

    def _late(self, method: str, path: str, seconds: float | None) -> str:
        return f"Ollama at {self.url} did not answer {method} {path} within {seconds:g} s"

    @staticmethod
    def _read_capped(resp: http.client.HTTPResponse, limit: int) -> bytes | None:
        """The body, or None when it is longer than `limit` (not read further)."""
        length = resp.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length.strip()) > limit:
            return None
        data = resp.read(limit + 1)
        return None if len(data) > limit else data

    @staticmethod
    def _error_text(status: int, payload: bytes) -> str:
        text = payload[:_ERROR_BYTES].decode("utf-8", errors="replace").strip()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return text[:2000] or f"HTTP {status}"
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"][:2000]
        return text[:2000]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One exchange: (status, body), all of it within the timeout. Raises OllamaError
        for 4xx/5xx answers, answers larger than MAX_ANSWER_BYTES and late ones."""
        conn, resp, watchdog = self._send(method, path, body, headers, timeout)
        try:
            payload = self._read_capped(
                resp, _ERROR_BYTES if resp.status >= 400 else MAX_ANSWER_BYTES
            )
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise OllamaError(self._late(method, path, conn.timeout)) from exc
            raise OllamaError(
                f"lost the connection to Ollama at {self.url}: {connection_reason(exc)}"
            ) from exc
        finally:
            watchdog.stop()
            conn.close()
        if watchdog.fired:
            raise OllamaError(self._late(method, path, conn.timeout))
        if resp.status >= 400:
            raise OllamaError(self._error_text(resp.status, payload or b""), resp.status)
        if payload is None:
            raise OllamaError(
                f"the answer of {method} {path} is larger than {MAX_ANSWER_BYTES >> 20} MiB "
                f"(is {self.url} an Ollama server?)"
            )
        return resp.status, payload

    def json(self, method: str, path: str, body: Any = None) -> Any:
        _status, payload = self.request(method, path, body)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except RecursionError:
            raise OllamaError(
                f"unexpected answer from {self.url}{path}: JSON nested too deeply"
            ) from None
        except ValueError as exc:
            raise OllamaError(
                f"{self.url}{path} did not answer JSON (is this an Ollama server?)"
            ) from exc

    def _object(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A JSON answer that must be an object."""
        data = self.json(method, path, body)
        if not isinstance(data, dict):
            raise OllamaError(
                f"unexpected answer from {self.url}{path}: not a JSON object "
                f"({type(data).__name__})"
            )
        return data

    def _models(self, path: str) -> list[dict[str, Any]]:
        """The `models` list of /api/tags or /api/ps, each entry an object."""
        data = self.json("GET", path)
        if data is None:
            return []
        if not isinstance(data, dict):
            raise OllamaError(f"unexpected answer from {self.url}{path}: not a JSON object")
        models = data.get("models")
        if models is None:
            return []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise OllamaError(
                f"unexpected answer from {self.url}{path}: 'models' is not a list of objects"
            )
        return models

    def stream(
        self,
        method: str,
        path: str,
        body: Any,
        deadline: float | None = None,
        silence: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the objects of an NDJSON answer. An `{"error"}` line raises OllamaError.

        With a deadline (time.monotonic() value), DeadlineReached is raised once it has
        passed, and the connection is closed: that is how Ollama learns the client left.
        `silence` (default: the client's timeout) is how long a line may take.
        """
        silence = self.timeout if silence is None else silence
        conn, resp, watchdog = self._send(method, path, body, answer_within=silence)
        try:
            if resp.status >= 400:
                try:
                    payload = resp.read(_ERROR_BYTES)
                except (OSError, http.client.HTTPException):
                    payload = b""
                raise OllamaError(self._error_text(resp.status, payload), resp.status)
            sock = watchdog.sock  # conn.sock is None once the response owns the connection
            if sock is not None:
                sock.settimeout(silence)
            while True:
                wait = silence
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DeadlineReached()
                    wait = min(silence, max(left, 0.01))
                    if sock is not None:
                        sock.settimeout(wait)
                watchdog.arm(wait)  # a whole line within `wait`, not one byte at a time
                try:
                    line = resp.readline(MAX_LINE_BYTES + 1)
                except (TimeoutError, OSError, http.client.HTTPException) as exc:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineReached() from exc
                    if watchdog.fired or isinstance(exc, TimeoutError):
                        raise OllamaError(
                            f"Ollama at {self.url} sent no complete line for {silence:g} s ({path})"
                        ) from exc
                    raise OllamaError(
                        f"lost the connection to Ollama at {self.url}: {connection_reason(exc)}"
                    ) from exc
                if watchdog.fired:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineReached()
                    raise OllamaError(
                        f"Ollama at {self.url} sent no complete line for {silence:g} s ({path})"
                    )
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    raise OllamaError(
                        f"a line of the answer of {method} {path} is longer than "
                        f"{MAX_LINE_BYTES >> 20} MiB (is {self.url} an Ollama server?)"
                    )
                line = line.strip()
                if not line:
                    continue
                try:
                    item = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    raise OllamaError(
                        f"unexpected answer from {self.url}{path}: {line[:200]!r}"
                    ) from exc
                if isinstance(item, dict) and item.get("error"):
                    raise OllamaError(str(item["error"])[:2000])
                if isinstance(item, dict):
                    yield item
        finally:
            watchdog.stop()
            resp.close()  # the response holds the socket open; Ollama must see us leave
            conn.close()

    # ------------------------------------------------------------------ API
    def version(self) -> str:
        data = self.json("GET", "/api/version")
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str) or not 0 < len(version) <= 64:
            raise OllamaError(f"unexpected answer from {self.url}/api/version: no version")
        return version

    def tags(self) -> list[dict[str, Any]]:
        return self._models("/api/tags")

    def ps(self) -> list[dict[str, Any]]:
        return self._models("/api/ps")

    def find(self, name: ModelName) -> dict[str, Any] | None:
        """The /api/tags entry of a model, or None."""
        for entry in self.tags():
            label = entry.get("name") or entry.get("model")
            if isinstance(label, str) and name.same(label):
                return entry
        return None

    def show(self, name: str) -> dict[str, Any] | None:
        """POST /api/show; None when the model does not exist (404)."""
        try:
            return self._object("POST", "/api/show", {"model": name})
        except OllamaError as err:
            if err.status == 404:
                return None
            raise

    def delete(self, name: str) -> bool:
        """DELETE /api/delete; False when there was nothing to delete (404)."""
        try:
            self.request("DELETE", "/api/delete", {"model": name})
        except OllamaError as err:
            if err.status == 404:
                return False
            raise
        return True

    def blob_exists(self, digest: str) -> bool:
        try:
            self.request("HEAD", f"/api/blobs/{digest}")
        except OllamaError as err:
            if err.status == 404:
                return False
            raise
        return True

    def upload_blob(self, path: str, digest: str) -> bool:
        """Make the blob `digest` exist on the server from the local file `path`.

        HEAD first (nothing is sent when the server has it); otherwise the file is streamed
        with a Content-Length. Ollama hashes what it receives and refuses a mismatch.
        Returns True when bytes were uploaded.
        """
        if self.blob_exists(digest):
            return False
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            self.request(
                "POST",
                f"/api/blobs/{digest}",
                body=handle,
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            )
        return True

    def create(
        self,
        request: dict[str, Any],
        on_status: Callable[[dict[str, Any]], None] | None = None,
        import_bytes: int = 0,
    ) -> list[str]:
        """POST /api/create; the status lines Ollama sent. Raises OllamaError with its text.

        Importing a GGUF ends with Ollama hashing the re-serialized copy without reporting
        progress, so the silence allowed grows with `import_bytes` (at 100 MB/s).
        """
        statuses: list[str] = []
        silence = max(self.timeout, import_bytes / 100e6)
        for item in self.stream(
            "POST", "/api/create", {**request, "stream": True}, silence=silence
        ):
            status = str(item.get("status") or "")
            if status and (not statuses or statuses[-1] != status):
                statuses.append(status)
            if on_status is not None:
                on_status(item)
        if not statuses or statuses[-1] != "success":
            raise OllamaError("the create stream ended before Ollama reported success")
        return statuses

    def pull(
        self, name: str, insecure: bool = False, deadline: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """POST /api/pull, streamed; see stream() for the deadline."""
        body: dict[str, Any] = {"model": name, "stream": True}
        if insecure:
            body["insecure"] = True
        return self.stream("POST", "/api/pull", body, deadline=deadline)
