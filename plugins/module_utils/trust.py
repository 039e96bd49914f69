# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What the toolkit trusts, and what it never prints (pure functions, standard library).

A download is verified against a digest; when the digest comes from the same plain-HTTP
server as the file (a mirror's sha256sum.txt, SHA256SUMS, a keyring package), anyone on the
path can change both, and nothing was verified. The roles refuse such a source unless the
operator pins a checksum or sets `<role>_allow_unverified_http: true` (docs/security.md).

URLs may carry credentials (`https://user:token@mirror/...`): every message and loop label
shows them redacted.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme://, userinfo, rest) of a URL with userinfo; None when it has none."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or "/" in scheme:
        return None
    # Up to the path's "/" only: an unencoded "?" or "#" before the "@" is more likely part of
    # a password than a query, and redacting too much is the safe side.
    authority = rest.split("/", 1)[0]
    if "@" not in authority:
        return None
    userinfo = authority.rsplit("@", 1)[0]
    return scheme + "://", userinfo, rest[len(userinfo) + 1 :]


def redact_url(url: object) -> str:
    """The URL with its userinfo (user, password, token) replaced by `***`."""
    text = "" if url is None else str(url)
    parts = _split(text)
    if parts is None:
        return text
    prefix, _userinfo, rest = parts
    return f"{prefix}{REDACTED}@{rest}"


def url_secrets(url: object) -> list[str]:
    """The strings of a URL that must never be shown: its userinfo, and its password as
    written and percent-decoded (longest first, so that replacing them in order works)."""
    parts = _split("" if url is None else str(url))
    if parts is None:
        return []
    userinfo = parts[1]
    found = [userinfo]
    password = userinfo.partition(":")[2]
    if password:
        found.append(password)
        decoded = urllib.parse.unquote(password)
        if decoded != password:
            found.append(decoded)
    return [s for s in dict.fromkeys(found) if s]


def redact_text(text: object, url: object) -> str:
    """`text` with the URL redacted and its secrets, in any spelling, replaced by `***`."""
    result = "" if text is None else str(text)
    raw = "" if url is None else str(url)
    if raw:
        result = result.replace(raw, redact_url(raw))
    for secret in sorted(url_secrets(raw), key=len, reverse=True):
        result = result.replace(secret, REDACTED)
    return result


def is_plain_http(url: object) -> bool:
    return str(url or "").strip().lower().startswith("http://")


def unverified_http_sources(sources: Iterable[Mapping[str, Any]]) -> list[str]:
    """`what (url)` for every source reached over plain HTTP whose digest is not pinned.

    Each source is {what, url, pinned}: `pinned` is true when the expected checksum (or key
    fingerprint) comes from the operator rather than from the same server.
    """
    return [
        "{} ({})".format(source.get("what"), redact_url(source.get("url")))
        for source in sources
        if is_plain_http(source.get("url")) and not source.get("pinned")
    ]


def unverified_model_sources(plan: Iterable[Mapping[str, Any]]) -> list[str]:
    """The planned model bases that would arrive unauthenticated: a GGUF over plain HTTP
    whose checksum comes from the mirror's SHA256SUMS, or a pull from a registry marked
    `insecure` (plain HTTP or unverified TLS, so the manifest naming the blobs is unverified).
    """
    found = []
    for entry in plan:
        name = entry.get("name")
        if entry.get("source") == "gguf":
            url = entry.get("gguf_url")
            if is_plain_http(url) and not entry.get("gguf_sha256"):
                found.append(
                    f"{name}: GGUF {redact_url(url)} with its checksum read from the same server"
                )
        elif entry.get("source") == "registry" and entry.get("insecure"):
            found.append(
                f"{name}: registry {redact_url(entry.get('pull'))} without TLS verification "
                "(insecure)"
            )
    return found
