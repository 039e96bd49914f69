"""`ollama pull` from any registry speaking the OCI distribution API (server/images.go and
server/download.go).

What Ollama v0.32.15 does, and so what this does:
- GET <scheme>://<host>/v2/<namespace>/<model>/manifests/<tag>; https unless the request says
  insecure (then plain http). A 404 becomes "file does not exist".
- Per blob: HEAD the blob URL for its size (redirects followed), then GET it without following
  redirects to another host name and take the Location header as the direct URL; a registry
  that answers 200 without a Location header fails the pull with
  "http: no Location header in response" (upstream issue #9083 / PR #15512, unfixed in this
  release). The data is then fetched from the direct URL with a Range header into
  sha256-<hex>-partial (+ -partial-0 part bookkeeping, so a pull resumes).
- "verifying sha256 digest": each downloaded blob is hashed; a mismatch deletes it and fails.
  Here the check happens before the blob is renamed to its final name, so a store never holds
  a wrong blob under a digest name, even for a moment.
- The manifest is stored byte for byte as the registry sent it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from . import names, store
from .names import Name

Progress = Callable[[dict], None]
# One download per blob at a time (upstream: blobDownloadManager); a second pull of the
# same blob waits for the first and then resumes from its part file.
_DOWNLOADS: dict[str, threading.Lock] = {}
_DOWNLOADS_LOCK = threading.Lock()
REDIRECT_CODES = (301, 302, 303, 307, 308)
TLS_VERIFY = "tls: failed to verify certificate"


class PullError(Exception):
    pass


class Cancelled(PullError):
    """The client went away: upstream cancels the request context, the download stops
    (its part files stay, so the next pull resumes) and no manifest is written."""

    def __str__(self) -> str:
        return "context canceled"


def _blob_lock(digest: str) -> threading.Lock:
    with _DOWNLOADS_LOCK:
        return _DOWNLOADS.setdefault(digest, threading.Lock())


def _check(cancelled: threading.Event | None) -> None:
    if cancelled is not None and cancelled.is_set():
        raise Cancelled()


class NotExist(PullError):
    def __str__(self) -> str:
        return "file does not exist"


def _resolver() -> str:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1] + ":53"
    except OSError:
        pass
    return "127.0.0.53:53"


def _go_net_error(exc: BaseException, host: str, port: int) -> str:
    """The text Go's net/http puts after `Get "url": `."""
    addr = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0)
        if code == 62:
            return f"{TLS_VERIFY}: x509: certificate is valid for other names, not {host}"
        if code == 10:
            return f"{TLS_VERIFY}: x509: certificate has expired or is not yet valid"
        return f"{TLS_VERIFY}: x509: certificate signed by unknown authority"
    if isinstance(exc, ssl.SSLError):
        if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
            return "http: server gave HTTP response to HTTPS client"
        return f"tls: {exc.reason or exc}".lower()
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {host} on {_resolver()}: no such host"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {addr}: connect: connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, ConnectionResetError):
        return f"read tcp {addr}: read: connection reset by peer"
    if isinstance(exc, OSError) and exc.errno:
        return f"dial tcp {addr}: connect: {os.strerror(exc.errno).lower()}"
    return str(exc)


@dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    conn: http.client.HTTPConnection
    raw: http.client.HTTPResponse
    url: str

    def read(self, amount: int | None = None) -> bytes:
        return self.raw.read(amount) if amount is not None else self.raw.read()

    def close(self) -> None:
        self.raw.close()
        self.conn.close()


def _user_agent() -> str:
    from . import version

    return f"ollama/{version.VERSION} (amd64 linux) Go/go1.26.0"


def _open(method: str, url: str, headers: dict[str, str], timeout: float | None) -> Response:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    op = method[:1] + method[1:].lower()
    try:
        conn.request(method, path, headers={"User-Agent": _user_agent(), **headers})
        raw = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise PullError(f'{op} "{url}": {_go_net_error(exc, host, port)}') from exc
    return Response(raw.status, raw.reason, raw.headers, conn, raw, url)


def request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    follow: Callable[[str, str], bool] | None = None,
    timeout: float | None = 60,
) -> Response:
    """One HTTP exchange with Go's redirect policy: follow(next_url, original_url) decides;
    at most 10 redirects."""
    original = url
    for _ in range(11):
        resp = _open(method, url, headers or {}, timeout)
        location = resp.headers.get("Location")
        if resp.status in REDIRECT_CODES and location:
            target = urllib.parse.urljoin(url, location)
            allowed = True if follow is None else follow(target, original)
            if allowed:
                resp.close()
                url = target
                if resp.status == 303:
                    method = "GET"
                continue
        return resp
    raise PullError(f'{method[:1] + method[1:].lower()} "{url}": stopped after 10 redirects')


def request_checked(
    method: str, url: str, headers: dict[str, str] | None = None, **kwargs
) -> Response:
    """makeRequestWithRetry: 404 -> file does not exist, >=400 -> '<code>: <body>'."""
    resp = request(method, url, headers, **kwargs)
    if resp.status == 401:
        resp.close()
        raise PullError("unauthorized: access denied")
    if resp.status == 404:
        resp.close()
        raise NotExist()
    if resp.status >= 400:
        body = resp.read().decode("utf-8", errors="replace") if method != "HEAD" else ""
        resp.close()
        raise PullError(f"{resp.status}: {body}")
    return resp


def registry_base(name: Name, insecure: bool) -> str:
    scheme = "http" if insecure else (name.scheme or "https")
    return f"{scheme}://{name.host}"


def _part_paths(blob_path: str) -> tuple[str, str]:
    return blob_path + "-partial", blob_path + "-partial-0"


def _download_blob(
    base: str,
    name: Name,
    digest: str,
    progress: Progress,
    cancelled: threading.Event | None = None,
) -> bool:
    """downloadBlob: True on cache hit. The verified rename happens in pull()."""
    with _blob_lock(digest):
        return _download_blob_locked(base, name, digest, progress, cancelled)


def _download_blob_locked(
    base: str,
    name: Name,
    digest: str,
    progress: Progress,
    cancelled: threading.Event | None,
) -> bool:
    _check(cancelled)
    final = store.blobs_path(digest)
    status = f"pulling {digest[7:19]}"
    if os.path.exists(final):
        size = os.path.getsize(final)
        progress({"status": status, "digest": digest, "total": size, "completed": size})
        return True
    url = f"{base}/v2/{name.namespace_model()}/blobs/{digest}"
    partial, part_file = _part_paths(final)
    total = 0
    completed = 0
    if os.path.exists(part_file):
        with open(part_file, encoding="utf-8") as handle:
            part = json.load(handle)
        total = int(part.get("Size", 0))
        completed = int(part.get("Completed", 0))
    else:
        head = request_checked("HEAD", url)
        total = int(head.headers.get("Content-Length") or 0)
        head.close()
        _write_part(part_file, total, 0)
    progress({"status": status, "digest": digest, "total": total, "completed": completed})
    if completed < total or total == 0:
        direct = _direct_url(url)
        _fetch_range(
            url=direct,
            partial=partial,
            part_file=part_file,
            total=total,
            completed=completed,
            status=status,
            digest=digest,
            progress=progress,
            cancelled=cancelled,
        )
    progress({"status": status, "digest": digest, "total": total, "completed": total})
    return False


def _write_part(path: str, size: int, completed: int) -> None:
    data = (
        json.dumps(
            {"N": 0, "Offset": 0, "Size": size, "Completed": completed}, separators=(",", ":")
        )
        + "\n"
    ).encode()
    with open(path, "wb") as handle:
        handle.write(data)


def _direct_url(url: str) -> str:
    """The first GET: follow same-host redirects only, then require a Location header."""
    origin_host = urllib.parse.urlsplit(url).hostname

    def same_host(target: str, _original: str) -> bool:
        return urllib.parse.urlsplit(target).hostname == origin_host

    deadline = time.monotonic() + 30
    delay = 0
    while True:
        try:
            resp = request_checked("GET", url, follow=same_host, timeout=30)
        except PullError:
            delay += 1
            if time.monotonic() + (delay * delay) / 100 > deadline:
                raise PullError("context deadline exceeded") from None
            time.sleep(min(delay * delay / 100, 10))
            continue
        status, location = resp.status, resp.headers.get("Location")
        resp.close()
        if status not in (307, 200):
            raise PullError(f"unexpected status code {status}")
        if not location:
            raise PullError("http: no Location header in response")
        return urllib.parse.urljoin(resp.url, location)


def _fetch_range(
    *,
    url: str,
    partial: str,
    part_file: str,
    total: int,
    completed: int,
    status: str,
    digest: str,
    progress: Progress,
    cancelled: threading.Event | None = None,
) -> None:
    last_error: Exception | None = None
    for attempt in range(6):
        _check(cancelled)
        try:
            resp = request(
                "GET", url, {"Range": f"bytes={completed}-{max(total - 1, 0)}"}, timeout=30
            )
        except PullError as exc:
            last_error = exc
            time.sleep(min(2**attempt, 4))
            continue
        if resp.status >= 400:
            resp.close()
            last_error = PullError(f"unexpected status code {resp.status}")
            time.sleep(min(2**attempt, 4))
            continue
        start = completed if resp.status == 206 else 0
        if resp.status != 206:
            completed = 0
        mode = "r+b" if os.path.exists(partial) else "w+b"
        last_report = time.monotonic()
        try:
            with open(partial, mode) as handle:
                handle.seek(start)
                while completed < total:
                    if cancelled is not None and cancelled.is_set():
                        break
                    chunk = resp.read(min(1 << 20, total - completed))
                    if not chunk:
                        break
                    handle.write(chunk)
                    completed += len(chunk)
                    if time.monotonic() - last_report > 0.06:
                        progress(
                            {
                                "status": status,
                                "digest": digest,
                                "total": total,
                                "completed": completed,
                            }
                        )
                        last_report = time.monotonic()
                handle.truncate(total)
        except OSError as exc:
            last_error = exc
        finally:
            resp.close()
            _write_part(part_file, total, completed)
        if completed >= total:
            return
        _check(cancelled)
        last_error = last_error or PullError("unexpected EOF")
        time.sleep(min(2**attempt, 4))
    raise PullError(f"max retries exceeded: {last_error}")


def _install_verified(digest: str) -> None:
    with _blob_lock(digest):
        _install_verified_locked(digest)


def _install_verified_locked(digest: str) -> None:
    final = store.blobs_path(digest)
    partial, part_file = _part_paths(final)
    if os.path.exists(final) and not os.path.exists(partial):  # another pull installed it
        with contextlib.suppress(FileNotFoundError):
            os.remove(part_file)
        return
    actual = store.sha256_file(partial)
    if actual != digest:
        for path in (partial, part_file):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise PullError(
            f"digest mismatch, file must be downloaded again: want {digest}, got {actual}"
        )
    os.chmod(partial, 0o644)
    with store.LOCK:
        os.replace(partial, final)
    with contextlib.suppress(FileNotFoundError):
        os.remove(part_file)


def pull(
    model: str,
    insecure: bool,
    progress: Progress,
    no_prune: bool,
    cancelled: threading.Event | None = None,
) -> None:
    """PullModel. `cancelled` is set when the client goes away (the request context)."""
    name = names.parse(model)
    delete_candidates: set[str] = set()
    try:
        existing = store.read_manifest(name)
        delete_candidates.update(d for d in existing.all_digests() if d)
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        pass
    if name.scheme == "http" and not insecure:
        raise PullError("insecure protocol http")
    progress({"status": "pulling manifest"})
    base = registry_base(name, insecure)
    url = f"{base}/v2/{name.namespace_model()}/manifests/{name.tag}"
    try:
        resp = request_checked("GET", url, {"Accept": store.MANIFEST_MEDIA_TYPE})
        data = resp.read()
        resp.close()
    except PullError as exc:
        raise PullError(f"pull model manifest: {exc}") from None
    try:
        parsed = json.loads(data.decode("utf-8", errors="replace"))
        if not isinstance(parsed, dict):
            raise ValueError("json: cannot unmarshal into Go value of type manifest.Manifest")
    except ValueError as exc:
        raise PullError(f"pull model manifest: {exc}") from None
    manifest = store.parse_manifest_bytes(name, data, "", 0)
    layers = list(manifest.layers)
    if manifest.config.digest:
        layers.append(manifest.config)
    for layer in layers:
        if layer.media_type == "application/vnd.ollama.image.tensor":
            raise PullError("this model requires MLX support, but the MLX runtime is not available")
    skip_verify: dict[str, bool] = {}
    for layer in layers:
        if not layer.digest:
            raise PullError(f"{name.namespace_model()}: digest is empty")
        store.blobs_path(layer.digest)  # validates the digest format
        hit = _download_blob(base, name, layer.digest, progress, cancelled)
        skip_verify[layer.digest] = skip_verify.get(layer.digest, True) and hit
        delete_candidates.discard(layer.digest)
    _check(cancelled)
    progress({"status": "verifying sha256 digest"})
    for digest, skip in skip_verify.items():
        if not skip:
            _install_verified(digest)
    _check(cancelled)  # upstream blocks on this progress send forever: no manifest
    progress({"status": "writing manifest"})
    store.write_manifest_raw(name, data)
    if not no_prune and delete_candidates:
        progress({"status": "removing unused layers"})
        store.remove_unused_layers(delete_candidates)
    progress({"status": "success"})


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
