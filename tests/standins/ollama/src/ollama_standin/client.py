"""The CLI's API client (api/client.go): same requests, same error texts."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from . import envconfig, registry, version
from .gojson import dumps


class ClientError(Exception):
    pass


class StatusError(ClientError):
    """api.StatusError: 'Status: message' when the status line is known (streams)."""

    def __init__(self, code: int, message: str, status: str = "") -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(self._text())

    def _text(self) -> str:
        if self.status and self.message:
            return f"{self.status}: {self.message}"
        if self.status:
            return self.status
        if self.message:
            return self.message
        return "something went wrong, please see the ollama server logs for details"


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


class Client:
    def __init__(self) -> None:
        url = envconfig.host()
        self.url = url
        self.base = url.url()

    def _connect(self) -> http.client.HTTPConnection:
        if self.url.scheme == "https":
            import ssl

            return http.client.HTTPSConnection(
                self.url.host, int(self.url.port), context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.url.host, int(self.url.port))

    def _send(
        self, method: str, path: str, body: bytes | Iterable[bytes] | None, accept: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connect()
        full = self.base.rstrip("/") + path
        headers = {
            "Content-Type": "application/json",
            "Accept": accept,
            "User-Agent": f"ollama/{version.VERSION} (amd64 linux) Go/go1.26.0",
        }
        try:
            if body is None or isinstance(body, bytes):
                conn.request(method, path, body=body, headers=headers)
            else:
                conn.request(method, path, body=body, headers=headers, encode_chunked=True)
            return conn, conn.getresponse()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # the server answered before reading the whole body (as net/http may): use it
            try:
                return conn, conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                op = method[:1] + method[1:].lower()
                raise ClientError(
                    f'{op} "{full}": '
                    f"{registry._go_net_error(exc, self.url.host, int(self.url.port))}"
                ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            op = method[:1] + method[1:].lower()
            raise ClientError(
                f'{op} "{full}": {registry._go_net_error(exc, self.url.host, int(self.url.port))}'
            ) from exc

    def do(
        self, method: str, path: str, data: Any = None, raw: Iterable[bytes] | None = None
    ) -> Any:
        body: bytes | Iterable[bytes] | None = (
            raw if raw is not None else (dumps(data).encode() if data is not None else None)
        )
        conn, resp = self._send(method, path, body, "application/json")
        try:
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(payload).get("error", "")
            except (ValueError, AttributeError):
                message = payload.decode("utf-8", errors="replace")
            raise StatusError(resp.status, message if isinstance(message, str) else str(message))
        if payload:
            try:
                return json.loads(payload)
            except ValueError:
                return None
        return None

    def stream(self, method: str, path: str, data: Any, fn: Callable[[dict], None]) -> None:
        conn, resp = self._send(method, path, dumps(data).encode(), "application/x-ndjson")
        try:
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    if resp.status >= 400:
                        raise StatusError(
                            resp.status, line.decode(errors="replace"), _status_line(resp.status)
                        ) from None
                    raise ClientError(line.decode(errors="replace")) from None
                if resp.status >= 400:
                    raise StatusError(
                        resp.status,
                        obj.get("error", "") if isinstance(obj, dict) else "",
                        _status_line(resp.status),
                    )
                if isinstance(obj, dict) and obj.get("error"):
                    raise ClientError(str(obj["error"]))
                fn(obj)
        finally:
            conn.close()

    def heartbeat(self) -> None:
        self.do("HEAD", "/")

    def version(self) -> str:
        return str((self.do("GET", "/api/version") or {}).get("version", ""))
