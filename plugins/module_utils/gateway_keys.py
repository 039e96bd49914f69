# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The gateway's client keys (validation, hashing, the keys file and its reader) and the
other pure logic of its LiteLLM hook (the errors it gives clients).

One source for three places: the fleet_gateway role validates the inventory's clients with
it on the control node (plan time), the gateway_keys module writes the keys file with it on
the gateway host, and LiteLLM's custom_auth hook (installed beside this file on the gateway)
reads that file with it on every request. Standard library only, Python 3.9+, and it never
imports LiteLLM, so the unit tests exercise exactly the code the hook runs.

A key is never stored: the file holds HMAC-SHA256(pepper, salt || key) per client, where the
pepper is a secret that only the gateway host holds (a file beside the keys file, readable
by root and the service) and the salt is random per keys file. Error messages name clients,
never keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from typing import Any

FORMAT = 1
ALGORITHM = "hmac-sha256"
ALL_MODELS = "*"
DEFAULT_MIN_LENGTH = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# What an Authorization header can carry: visible ASCII, no spaces.
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_CLIENT_KEYS = {"name", "key", "models", "rpm"}


class GatewayKeysError(ValueError):
    """A client entry or keys file that cannot be used, said without revealing any key."""


def _client_label(index: int, item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
        return f"client {item['name']!r}"
    return f"client #{index + 1}"


def validate_clients(
    clients: Any,
    known_models: list[str],
    min_length: int = DEFAULT_MIN_LENGTH,
    aliases: dict[str, str] | None = None,
    complete: bool = True,
) -> list[dict[str, Any]]:
    """The clients, checked and normalised: [{name, key, models, rpm}].

    Refused, naming the client: a missing or malformed name, a duplicate name, an empty,
    short or unprintable key, a key another client has too, models that are not a list of
    the fleet's names (or `*`), an rpm that is not a positive whole number, unknown fields.
    Aliases and the models they name are interchangeable: allowing one allows the other.
    With `complete` false (some model host's models could not be known), a name outside
    `known_models` is kept rather than refused: see unknown_models() for a warning.
    """
    if clients is None:
        return []
    if not isinstance(clients, list):
        raise GatewayKeysError("fleet_gateway_clients must be a list of {name, key, models, rpm}")
    if int(min_length) < 16:
        raise GatewayKeysError("the minimum key length cannot be below 16 characters")
    known = set(known_models)
    aliases = dict(aliases or {})
    names: dict[str, int] = {}
    digests: dict[str, str] = {}
    result = []
    for index, item in enumerate(clients):
        label = _client_label(index, item)
        if not isinstance(item, dict):
            raise GatewayKeysError(f"{label}: a client is a mapping of name, key, models, rpm")
        unknown = sorted(set(item) - _CLIENT_KEYS)
        if unknown:
            raise GatewayKeysError(
                f"{label}: unknown fields {unknown}; a client has {sorted(_CLIENT_KEYS)}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise GatewayKeysError(
                f"{label}: the name must be 1-64 letters, digits, '.', '_', '@' or '-' "
                "(it appears in logs and metrics)"
            )
        if name in names:
            raise GatewayKeysError(
                f"{label} is declared twice (entries #{names[name] + 1} and #{index + 1})"
            )
        names[name] = index
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise GatewayKeysError(f"{label}: the key is empty")
        if len(key) < int(min_length):
            raise GatewayKeysError(
                f"{label}: the key is {len(key)} characters, shorter than the minimum "
                f"{int(min_length)}; make one with: openssl rand -hex 32"
            )
        if not _KEY_CHARS.match(key):
            raise GatewayKeysError(
                f"{label}: the key has spaces or characters an Authorization header cannot carry"
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        if digest in digests:
            raise GatewayKeysError(
                f"{label} has the same key as client {digests[digest]!r}: "
                "every client needs its own"
            )
        digests[digest] = name
        result.append(
            {
                "name": name,
                "key": key,
                "models": _client_models(
                    label, item.get("models"), known if complete else None, aliases
                ),
                "rpm": _client_rpm(label, item.get("rpm")),
            }
        )
    return result


def _client_models(
    label: str, models: Any, known: set[str] | None, aliases: dict[str, str]
) -> list[str]:
    if models is None:
        raise GatewayKeysError(f"{label}: say which models it may use (a list of names, or ['*'])")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise GatewayKeysError(f"{label}: models must be a non-empty list of names, or ['*']")
    if ALL_MODELS in models:
        if len(models) > 1:
            raise GatewayKeysError(f"{label}: '*' already allows every model; list nothing else")
        return [ALL_MODELS]
    if not all(isinstance(m, str) and m for m in models):
        raise GatewayKeysError(f"{label}: every model must be a name (a string)")
    unknown = sorted(m for m in models if known is not None and m not in known)
    if unknown:
        raise GatewayKeysError(
            f"{label}: {unknown} {'is' if len(unknown) == 1 else 'are'} not a model name of the "
            f"fleet (known: {', '.join(sorted(known)) or 'none'})"
        )
    allowed = set(models)
    for alias, target in aliases.items():
        if alias in allowed:
            allowed.add(target)
        if target in allowed:
            allowed.add(alias)
    return sorted(allowed)


def unknown_models(clients: list[dict[str, Any]], known_models: list[str]) -> list[str]:
    """`client: model` for each allowed model that is not a known name (for a warning)."""
    known = set(known_models) | {ALL_MODELS}
    return [
        f"{client['name']}: {model}"
        for client in clients
        for model in client["models"]
        if model not in known
    ]


def _client_rpm(label: str, rpm: Any) -> int | None:
    if rpm is None:
        return None
    if isinstance(rpm, bool) or not isinstance(rpm, int) or rpm <= 0:
        raise GatewayKeysError(f"{label}: rpm must be a whole number of requests per minute > 0")
    return rpm


def new_secret() -> str:
    """32 random bytes, hex: a pepper or a salt."""
    return secrets.token_hex(32)


def key_hash(pepper: str, salt: str, key: str) -> str:
    """HMAC-SHA256 keyed by the pepper over salt || key, hex."""
    return hmac.new(pepper.encode(), salt.encode() + key.encode(), hashlib.sha256).hexdigest()


def build_document(
    clients: list[dict[str, Any]], pepper: str, salt: str, models: list[str]
) -> dict[str, Any]:
    """The keys file's content: salt, public model names, and per client its hash."""
    return {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "salt": salt,
        "models": sorted(models),
        "clients": [
            {
                "name": client["name"],
                "hash": key_hash(pepper, salt, client["key"]),
                "models": list(client["models"]),
                "rpm": client["rpm"],
            }
            for client in sorted(clients, key=lambda c: c["name"])
        ],
    }


def render_document(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def parse_document(text: str) -> dict[str, Any]:
    """A keys file, checked; GatewayKeysError when it cannot be trusted."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise GatewayKeysError(f"the keys file is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise GatewayKeysError(f"the keys file is not format {FORMAT}")
    if document.get("algorithm") != ALGORITHM:
        raise GatewayKeysError(f"the keys file's algorithm is not {ALGORITHM}")
    salt = document.get("salt")
    if not isinstance(salt, str) or len(salt) < 32 or not _HEX.match(salt):
        raise GatewayKeysError("the keys file's salt is missing or not hex")
    if not isinstance(document.get("models"), list):
        raise GatewayKeysError("the keys file lists no models")
    clients = document.get("clients")
    if not isinstance(clients, list):
        raise GatewayKeysError("the keys file has no client list")
    for client in clients:
        if not isinstance(client, dict) or not isinstance(client.get("name"), str):
            raise GatewayKeysError("a keys file entry has no name")
        digest = client.get("hash")
        if not isinstance(digest, str) or len(digest) != 64 or not _HEX.match(digest):
            raise GatewayKeysError(f"client {client['name']!r}: its hash is not HMAC-SHA256 hex")
        if not isinstance(client.get("models"), list) or not client["models"]:
            raise GatewayKeysError(f"client {client['name']!r}: no models")
    return document


def describe(document: dict[str, Any] | None) -> str:
    """One line per client (name, models, rate): what a diff may show. No hash, no key."""
    if not document:
        return ""
    lines = []
    for client in document.get("clients", []):
        rpm = client.get("rpm")
        lines.append(
            f"{client['name']}: models={','.join(client['models'])} "
            f"rpm={rpm if rpm is not None else 'unlimited'}\n"
        )
    lines.append(f"(public models: {', '.join(document.get('models', []))})\n")
    return "".join(lines)


def read_secret(path: str) -> str:
    with open(path) as handle:
        value = handle.read().strip()
    if len(value) < 32:
        raise GatewayKeysError(f"{path}: the pepper is missing or shorter than 32 characters")
    return value


class KeyStore:
    """The keys file as the hook sees it: re-read whenever it changes on disk (its inode,
    size or mtime), so adding or revoking a client needs no restart. A file that disappears
    or cannot be read refuses every key until a good one is back (fail closed)."""

    def __init__(self, path: str, pepper_path: str) -> None:
        self.path = path
        self.pepper_path = pepper_path
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._pepper = ""
        self._salt = ""
        self._by_hash: dict[str, dict[str, Any]] = {}
        self.models: frozenset[str] = frozenset()
        self.error: str | None = None
        self.loads = 0

    def _stat(self) -> tuple | None:
        try:
            keys = os.stat(self.path)
            pepper = os.stat(self.pepper_path)
        except OSError:
            return None
        return (
            keys.st_ino,
            keys.st_size,
            keys.st_mtime_ns,
            pepper.st_ino,
            pepper.st_size,
            pepper.st_mtime_ns,
        )

    def refresh(self) -> None:
        signature = self._stat()
        if signature is not None and signature == self._signature:
            return
        with self._lock:
            if signature is not None and signature == self._signature:
                return
            try:
                if signature is None:
                    raise GatewayKeysError(f"{self.path} or {self.pepper_path} is missing")
                pepper = read_secret(self.pepper_path)
                with open(self.path) as handle:
                    document = parse_document(handle.read())
            except (OSError, GatewayKeysError) as exc:
                self._by_hash, self.models, self._signature = {}, frozenset(), None
                self.error = str(exc)
                return
            self._pepper, self._salt = pepper, document["salt"]
            self._by_hash = {client["hash"]: client for client in document["clients"]}
            self.models = frozenset(document["models"])
            self._signature = signature
            self.error = None
            self.loads += 1

    def lookup(self, key: str | None) -> dict[str, Any] | None:
        """The client whose key this is, or None."""
        self.refresh()
        if not key or not self._by_hash:
            return None
        return self._by_hash.get(key_hash(self._pepper, self._salt, key))


# The gateway's HAProxy prefixes every key with this before LiteLLM sees it: LiteLLM hashes a
# key it logs or puts in a metric label only when it starts with "sk-"
# (UserAPIKeyAuth._safe_hash_litellm_api_key), and keeps any other key as sent.
TRANSIT_PREFIX = "sk-fleet-"


def bearer(value: str | None) -> str:
    """The client's key from `Bearer <key>` (or the bare value), without the transit prefix."""
    text = (value or "").strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text[len(TRANSIT_PREFIX) :] if text.startswith(TRANSIT_PREFIX) else text


def model_state(store: KeyStore, model: Any) -> str:
    """`none` (the request names no model), `known` or `unknown` (not a public name)."""
    if model is None or model == "":
        return "none"
    return "known" if isinstance(model, str) and model in store.models else "unknown"


# The error code the gateway's HAProxy pools answer with when no host of a model is up.
UNAVAILABLE_CODE = "model_unavailable"
_UNAVAILABLE = re.compile(
    r'"message"\s*:\s*"(?P<message>No host serving [^"]{1,300} is healthy[^"]{0,200})"'
)


def unavailable_message(error_text: str) -> str | None:
    """The pool's own sentence when an error is the pool's "no healthy host" 503 (LiteLLM
    wraps it in its provider exception's text), else None."""
    text = str(error_text)
    if UNAVAILABLE_CODE not in text:
        return None
    match = _UNAVAILABLE.search(text.replace('\\"', '"'))
    return match["message"] if match else None


def next_document(
    existing_text: str | None, clients: list[dict[str, Any]], pepper: str, models: list[str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the keys file to write, the current one or None). The current file's salt is kept
    when it can be read, so that the same clients give the same file (a second run changes
    nothing); a new file gets a new salt."""
    current = None
    if existing_text:
        try:
            current = parse_document(existing_text)
        except GatewayKeysError:
            current = None
    salt = current["salt"] if current else new_secret()
    return build_document(clients, pepper, salt, models), current
