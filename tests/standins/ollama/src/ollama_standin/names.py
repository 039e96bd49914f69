"""Model names as Ollama parses them (types/model/name.go)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

MISSING = "!MISSING!"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"


@dataclass(frozen=True)
class Name:
    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""
    scheme: str = ""

    def __str__(self) -> str:
        out = ""
        if self.host:
            out += self.host + "/"
        if self.namespace:
            out += self.namespace + "/"
        out += self.model
        if self.tag:
            out += ":" + self.tag
        return out

    @property
    def valid(self) -> bool:
        return (
            _valid_part("host", self.host)
            and _valid_part("namespace", self.namespace)
            and _valid_part("model", self.model)
            and _valid_part("tag", self.tag)
        )

    def filepath(self) -> str:
        if not self.valid:
            raise ValueError("illegal attempt to get filepath of invalid name")
        return os.path.join(self.host, self.namespace, self.model, self.tag)

    def display_shortest(self) -> str:
        out = ""
        if self.host.lower() != DEFAULT_HOST:
            out = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            out = f"{self.namespace}/"
        return f"{out}{self.model}:{self.tag}"

    def namespace_model(self) -> str:
        return f"{self.namespace}/{self.model}"

    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def equal_fold(self, other: Name) -> bool:
        return (
            self.host.lower() == other.host.lower()
            and self.namespace.lower() == other.namespace.lower()
            and self.model.lower() == other.model.lower()
            and self.tag.lower() == other.tag.lower()
        )


def _cut_promised(text: str, sep: str) -> tuple[str, str, bool]:
    i = text.rfind(sep)
    if i < 0:
        return text, "", False
    before, after = text[:i], text[i + len(sep) :]
    return before or MISSING, after or MISSING, True


def parse_bare(text: str) -> Name:
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_promised(text, ":")
    text, model, promised = _cut_promised(text, "/")
    if not promised:
        return Name(model=text, tag=tag)
    text, namespace, promised = _cut_promised(text, "/")
    if not promised:
        return Name(namespace=text, model=model, tag=tag)
    scheme = ""
    host = text
    if "://" in text:
        scheme, host = text.split("://", 1)
    return Name(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme)


def parse(text: str) -> Name:
    """model.ParseName: merge with the defaults (registry.ollama.ai/library/...:latest)."""
    bare = parse_bare(text)
    return replace(
        bare,
        host=bare.host or DEFAULT_HOST,
        namespace=bare.namespace or DEFAULT_NAMESPACE,
        tag=bare.tag or DEFAULT_TAG,
        scheme=bare.scheme or DEFAULT_SCHEME,
    )


def from_filepath(rel: str) -> Name | None:
    parts = rel.split(os.sep)
    if len(parts) != 4:
        return None
    name = Name(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3], scheme="https")
    return name if name.valid else None


def _alnum_underscore(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def _valid_part(kind: str, text: str) -> bool:
    limit = 350 if kind == "host" else 80
    if not 1 <= len(text.encode()) <= limit:
        return False
    for i, ch in enumerate(text):
        if i == 0:
            if not _alnum_underscore(ch):
                return False
            continue
        if ch in "_-":
            continue
        if ch == ".":
            if kind == "namespace":
                return False
            continue
        if ch == ":":
            if kind != "host":
                return False
            continue
        if not _alnum_underscore(ch):
            return False
    return True


def parse_ref(raw: str) -> tuple[str, str]:
    """internal/modelref.ParseRef: strip an explicit :local / :cloud source suffix.

    Returns (base, source) with source "" / "local" / "cloud"; raises ValueError with
    Ollama's message for an empty or conflicting reference.
    """
    raw = raw.strip()
    if not raw:
        raise ValueError("model is required")
    base, source = _source_suffix(raw)
    if source:
        _, nested = _source_suffix(base)
        if nested:
            raise ValueError(f'use either :local or :cloud, not both: "{raw}"')
    return base, source


def _source_suffix(raw: str) -> tuple[str, str]:
    idx = raw.rfind(":")
    if idx >= 0:
        suffix_raw = raw[idx + 1 :].strip()
        suffix = suffix_raw.lower()
        if suffix in ("cloud", "local"):
            return raw[:idx], suffix
        if "/" not in suffix_raw and suffix.endswith("-cloud"):
            return raw[: idx + 1] + suffix_raw[: -len("-cloud")], "cloud"
    return raw, ""
