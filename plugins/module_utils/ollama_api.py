# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""A small client for Ollama's HTTP API, for modules that run on the managed host.

Standard library only (http.client): JSON requests, NDJSON streams that can be cut off at a
deadline, and blob uploads streamed from disk (weights can be hundreds of GB, so a body is
never held in memory). Errors say what went wrong in words an operator can act on:
`OllamaUnreachable` when nothing answers, `OllamaError` with Ollama's own text when it
refuses. Model names are parsed as Ollama parses them (types/model/name.go).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.modelfile import (
    ModelfileError,
    validate_model_name,
)

DEFAULT_API_URL = "http://127.0.0.1:11434"
# The options every API-talking module takes; documented once in doc_fragments/ollama_api.py.
API_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "api_url": {"type": "str", "default": DEFAULT_API_URL},
    "timeout": {"type": "int", "default": 600},
}
DEFAULT_TIMEOUT = 600.0
_UPLOAD_BLOCK = 1 << 20

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
        self.timeout = float(timeout)

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
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Connect, send, and read the status line and headers."""
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
        try:
            conn.request(method, self.base_path + path, body=body, headers=all_headers)
            return conn, conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise OllamaError(
                f"Ollama at {self.url} did not answer {method} {path} within {conn.timeout:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise OllamaUnreachable(self.url, connection_reason(exc)) from exc

    @staticmethod
    def _error_text(status: int, payload: bytes) -> str:
        text = payload.decode("utf-8", errors="replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            return text or f"HTTP {status}"
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"]
        return text

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One exchange: (status, body). Raises OllamaError for 4xx/5xx answers."""
        conn, resp = self._send(method, path, body, headers, timeout)
        try:
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise OllamaError(
                f"lost the connection to Ollama at {self.url}: {connection_reason(exc)}"
            ) from exc
        finally:
            conn.close()
        if resp.status >= 400:
            raise OllamaError(self._error_text(resp.status, payload), resp.status)
        return resp.status, payload

    def json(self, method: str, path: str, body: Any = None) -> Any:
        _status, payload = self.request(method, path, body)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise OllamaError(
                f"{self.url}{path} did not answer JSON (is this an Ollama server?)"
            ) from exc

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
        conn, resp = self._send(method, path, body)
        try:
            if resp.status >= 400:
                raise OllamaError(self._error_text(resp.status, resp.read()), resp.status)
            if conn.sock is not None:
                conn.sock.settimeout(silence)
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DeadlineReached()
                    if conn.sock is not None:
                        conn.sock.settimeout(min(silence, max(left, 0.01)))
                try:
                    line = resp.readline()
                except TimeoutError as exc:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineReached() from exc
                    raise OllamaError(
                        f"Ollama at {self.url} sent nothing for {silence:g} s ({path})"
                    ) from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise OllamaError(
                        f"lost the connection to Ollama at {self.url}: {connection_reason(exc)}"
                    ) from exc
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise OllamaError(f"unexpected answer from {self.url}{path}: {line!r}") from exc
                if isinstance(item, dict) and item.get("error"):
                    raise OllamaError(str(item["error"]))
                if isinstance(item, dict):
                    yield item
        finally:
            resp.close()  # the response holds the socket open; Ollama must see us leave
            conn.close()

    # ------------------------------------------------------------------ API
    def version(self) -> str:
        data = self.json("GET", "/api/version")
        if not isinstance(data, dict) or "version" not in data:
            raise OllamaError(f"{self.url}/api/version did not answer a version")
        return str(data["version"])

    def tags(self) -> list[dict[str, Any]]:
        data = self.json("GET", "/api/tags") or {}
        return list(data.get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        data = self.json("GET", "/api/ps") or {}
        return list(data.get("models") or [])

    def find(self, name: ModelName) -> dict[str, Any] | None:
        """The /api/tags entry of a model, or None."""
        for entry in self.tags():
            if name.same(str(entry.get("name") or entry.get("model") or "")):
                return entry
        return None

    def show(self, name: str) -> dict[str, Any] | None:
        """POST /api/show; None when the model does not exist (404)."""
        try:
            data = self.json("POST", "/api/show", {"model": name})
        except OllamaError as err:
            if err.status == 404:
                return None
            raise
        return data if isinstance(data, dict) else None

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
