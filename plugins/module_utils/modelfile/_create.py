# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What `ollama create` reads and sends: model names, local files, the /api/create request.

Model names as types/model.ParseName + IsValid check them, a Modelfile read from disk
(lint, what scripts/modelfile-lint reports), FROM/ADAPTER/DRAFT paths as Ollama's client
expands and walks them (model directories, symlinks that must stay inside), a check that a
local file is model weights, and create_request(), which turns a parsed Modelfile into the
request body and the list of blobs to upload. Pure standard library, Python 3.9+.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

from ._syntax import (
    MAX_MODELFILE_BYTES,
    Modelfile,
    ModelfileError,
    is_parameter,
    parameter_value,
    parameters,
    parse_bytes,
    requires_version,
)

try:  # pwd exists on every POSIX host; only `~` expansion needs it.
    import pwd
except ImportError:  # pragma: no cover - non-POSIX controller
    pwd = None  # type: ignore[assignment]

_ERR_NO_MODEL_FILES = "no Modelfile or safetensors files found"


# ---------------------------------------------------------------------------
# Model names (types/model.ParseName + IsValid, checked by `ollama create` first)
# ---------------------------------------------------------------------------

_MISSING = "!MISSING!"


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    before, found, after = text.rpartition(sep)
    if not found:
        return text, "", False
    return before or _MISSING, after or _MISSING, True


def _valid_name_part(kind: str, part: str) -> bool:
    limit = 350 if kind == "host" else 80
    if not 1 <= len(part.encode("utf-8")) <= limit:
        return False
    for index, ch in enumerate(part):
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            continue
        if index == 0:
            return False
        if ch in "-_":
            continue
        if ch == "." and kind != "namespace":
            continue
        if ch == ":" and kind == "host":
            continue
        return False
    return True


def validate_model_name(name: str) -> None:
    """Raise Ollama's `invalid model name: NAME` unless `ollama create NAME` accepts it."""
    rest, host, namespace, tag = name, "", "", ""
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag, _ = _cut_last(rest, ":")
    rest, model, more = _cut_last(rest, "/")
    if not more:
        model = rest
    else:
        rest, namespace, more = _cut_last(rest, "/")
        if not more:
            namespace = rest
        else:
            host = rest.partition("://")[2] if "://" in rest else rest
    parts = (
        ("host", host or "registry.ollama.ai"),
        ("namespace", namespace or "library"),
        ("model", model),
        ("tag", tag or "latest"),
    )
    if not all(_valid_name_part(kind, part) for kind, part in parts):
        raise ModelfileError(f"invalid model name: {name}")


# ---------------------------------------------------------------------------
# Local files: a Modelfile on disk, path expansion, model directories, digests
# ---------------------------------------------------------------------------


def lint(path: str) -> tuple[Modelfile | None, str | None]:
    """Validate the Modelfile at `path`: (Modelfile, None) or (None, Ollama's error text).

    OSError (missing or unreadable file) propagates: that is not a verdict on the content.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_MODELFILE_BYTES + 1)  # parse_bytes refuses more
    try:
        return parse_bytes(data), None
    except ModelfileError as err:
        return None, str(err)


def _go_errno_text(err: OSError) -> str:
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def _os_error(op: str, path: str, err: OSError) -> ModelfileError:
    return ModelfileError(f"{op} {path}: {_go_errno_text(err)}")


def _clean_abs(path: str) -> str:
    result = os.path.abspath(path)
    if result.startswith("//"):  # POSIX keeps a leading "//"; Go's Clean does not
        result = "/" + result.lstrip("/")
    return result


def _home_of(user: str | None) -> str:
    if user is None:
        if pwd is not None:
            try:
                return pwd.getpwuid(os.getuid()).pw_dir
            except KeyError:
                pass
        home = os.path.expanduser("~")
        if home == "~":
            raise ModelfileError("failed to get current user: user: Current requires $HOME")
        return home
    try:
        if pwd is None:
            raise KeyError(user)
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        raise ModelfileError(f"failed to find user '{user}': user: unknown user {user}") from None


def expand_path(path: str, base_dir: str) -> str:
    """Where Ollama's client looks for a FROM/ADAPTER/DRAFT argument (absolute, cleaned)."""
    if path.startswith(("/", "\\")):
        return _clean_abs(path)
    if path.startswith("~"):
        if path == "~" or path.startswith("~/"):
            return _clean_abs(_home_of(None) + "/" + path[1:])
        user, _, rest = path[1:].partition("/")
        return _clean_abs(_home_of(user) + "/" + rest)
    return _clean_abs(os.path.join(base_dir, path))


def _sniff(path: str) -> str:
    """The part of Go's http.DetectContentType that Ollama's file checks can tell apart."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as err:
        raise _os_error("read", path, err) from err
    stripped = head.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for tag in _HTML_TAGS:
        if upper.startswith(tag) and stripped[len(tag) : len(tag) + 1] in (b" ", b">"):
            return "text/html"
    if stripped.startswith(b"<?xml"):
        return "text/xml"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if any(b in _BINARY_BYTES for b in stripped):
        return "application/octet-stream"
    return "text/plain"


_HTML_TAGS = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV")
_HTML_TAGS += (b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR")
_HTML_TAGS += (b"<P", b"<!--")
_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain"),
    (b"\xff\xfe", "text/plain"),
    (b"\xef\xbb\xbf", "text/plain"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    (b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    (b"\x00asm", "application/wasm"),
)
_BINARY_BYTES = frozenset((*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)))


def _glob(directory: str, pattern: str, content_type: str) -> list[str]:
    """filepath.Glob(directory/pattern) plus Ollama's content-type check of every match.

    `*` matches dot files as in Go; a `*/` prefix descends exactly one directory level.
    Raises ModelfileError when a match has the wrong content type.
    """

    def entries(folder: str) -> list[str]:
        try:
            return sorted(os.listdir(folder))
        except OSError:
            return []

    head, _, leaf = pattern.rpartition("/")
    folders = [directory]
    if head:
        folders = [
            os.path.join(directory, name)
            for name in entries(directory)
            if fnmatch.fnmatchcase(name, head) and os.path.isdir(os.path.join(directory, name))
        ]
    matches = [
        os.path.join(folder, name)
        for folder in folders
        for name in entries(folder)
        if fnmatch.fnmatchcase(name, leaf)
    ]
    for match in matches:
        found = _sniff(match)
        if content_type and found != content_type:
            raise ModelfileError(f"invalid content type: expected {found} for {match}")
    return matches


def _soft_glob(directory: str, pattern: str, content_type: str) -> list[str]:
    """A glob whose content-type failure just means "not this layout" (Ollama ignores it)."""
    try:
        return _glob(directory, pattern, content_type)
    except ModelfileError:
        return []


def _model_dir_files(directory: str) -> list[str]:
    """The files `ollama create` uploads for a model directory (safetensors, GGUF, ...)."""
    layouts = (
        ("model*.safetensors", ""),
        ("consolidated*.safetensors", ""),
        ("pytorch_model*.bin", "application/zip"),
        ("consolidated*.pth", "application/zip"),
        ("*.gguf", "application/octet-stream"),
        ("*.bin", "application/octet-stream"),
    )
    files: list[str] = []
    for pattern, content_type in layouts:
        files = _soft_glob(directory, pattern, content_type)
        if files:
            if pattern == "model*.safetensors":
                files += _glob(directory, "*/model*.safetensors", "")
            break
    else:
        raise ModelfileError(_ERR_NO_MODEL_FILES)
    files += _glob(directory, "*.json", "text/plain")
    files += _glob(directory, "*/*.json", "text/plain")
    files += _glob(directory, "chat_template.jinja", "text/plain")
    tokenizer = _soft_glob(directory, "tokenizer.model", "application/octet-stream")
    files += tokenizer or _soft_glob(directory, "*/tokenizer.model", "text/plain")
    return files


def _resolve(path: str) -> str:
    """filepath.EvalSymlinks: the real path, failing like Go when something is missing."""
    try:
        os.lstat(path)
        real = os.path.realpath(path)  # realpath(strict=True) is Python 3.10+
        os.stat(real)  # a dangling link or a loop fails here, as it does in Go
        return real
    except OSError as err:
        raise _os_error("lstat", path, err) from err


def _local_files(path: str) -> list[str]:
    """Paths to upload for a FROM/ADAPTER/DRAFT that exists; FileNotFoundError if it does not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _os_error("stat", path, err) from err
    if not stat.S_ISDIR(info.st_mode):
        return [path]
    files = []
    for found in _model_dir_files(path):
        real = _resolve(found)
        rel = os.path.relpath(real, path)
        if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
            if ".cache" in rel:
                raise ModelfileError(
                    f"insecure path: {rel}\n\n"
                    "Use --local-dir <dir> when downloading model to disable caching"
                )
            raise ModelfileError(f"insecure path: {rel}")
        files.append(real)
    return files


_GGUF_MAGIC = b"GGUF"
_SAFETENSORS_HEADER_LIMIT = 100 << 20  # safetensors' own limit on its JSON header


def _model_file_kind(path: str) -> str | None:
    """ "gguf" or "safetensors" from a file's first bytes, None when it is neither."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as err:
        raise _os_error("open", path, err) from err
    if head[:4] == _GGUF_MAGIC:
        return "gguf"
    if len(head) == 9 and head[8:9] == b"{":
        header = int.from_bytes(head[:8], "little")
        if 2 <= header <= _SAFETENSORS_HEADER_LIMIT:
            return "safetensors"
    return None


def check_model_file(path: str, keyword: str, in_directory: bool = False) -> None:
    """Refuse a FROM/ADAPTER/DRAFT file that is not model weights, before it is hashed or
    uploaded (Ollama's server only refuses it after the upload, and keeps the blob).

    A file named directly must be GGUF or safetensors; in a model directory the weight files
    (`*.gguf`, `*.safetensors`) must be what their name says, the rest (config, tokenizer)
    is left to the content-type checks Ollama's client makes. The file's content is never
    quoted in the error.
    """
    name = os.path.basename(path).lower()
    if in_directory and not name.endswith((".gguf", ".safetensors")):
        return
    kind = _model_file_kind(path)
    expected = {".gguf": "gguf", ".safetensors": "safetensors"}
    wanted = next((v for k, v in expected.items() if name.endswith(k)), None)
    if kind is None or (in_directory and kind != wanted):
        raise ModelfileError(
            f"{keyword.upper()} {path} is not a GGUF or safetensors model file; "
            "nothing was uploaded"
        )


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _upload_names(paths: Iterable[str]) -> dict[str, str]:
    """Names `ollama create` gives uploaded files in the request.

    One file: its base name. Several (a safetensors directory, several FROM files): the
    path below the deepest directory that contains them all, so nested files stay apart.
    """
    paths = list(dict.fromkeys(paths))
    if len(paths) < 2:
        return {path: os.path.basename(path) for path in paths}
    root = os.path.commonpath([os.path.dirname(_clean_abs(path)) for path in paths])
    names = {}
    for path in paths:
        rel = os.path.relpath(_clean_abs(path), root)
        inside = rel not in (".", "..") and not rel.startswith("../")
        names[path] = os.path.normpath(rel) if inside else os.path.basename(path)
    return names


def create_request(
    modelfile: Modelfile,
    *,
    model: str,
    base_dir: str,
    digest_file: Callable[[str], str] | None = None,
    quantize: str | None = None,
    check_file: Callable[[str, str, bool], None] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The POST /api/create body `ollama create MODEL -f <base_dir>/Modelfile` sends.

    Returns (request, uploads): `uploads` are the local files whose blobs must exist on
    the server (HEAD/POST /api/blobs/<digest>) before the request is sent, sorted; the
    request names them in files/adapters/draft_files with their digests. FROM is a local
    file or model directory when that path exists (relative to base_dir, `~`, absolute),
    otherwise it is sent as `from` unchanged, exactly as Ollama's client decides.
    `digest_file(path)` returns "sha256:<hex>" (default: hash the file); pass a caching
    one to avoid hashing big weights twice. `check_file(path, keyword, in_directory)` is
    called for every local file before it is hashed (check_model_file refuses what is not
    model weights; Ollama's own client checks nothing). Raises ModelfileError with
    Ollama's text.
    """
    validate_model_name(model)
    digest = digest_file or _sha256_file
    request: dict[str, Any] = {"model": model}
    files: dict[str, str] = {}
    draft_files: dict[str, str] = {}
    adapters: dict[str, str] = {}
    model_paths: list[str] = []
    draft_paths: list[str] = []
    licenses: list[str] = []
    messages: list[dict[str, str]] = []

    def digests(paths: list[str]) -> dict[str, str]:
        result = {}
        for path in paths:
            try:
                result[path] = digest(path)
            except OSError as err:
                raise _os_error("open", path, err) from err
        return result

    def reject_same(path: str, others: list[str]) -> None:
        for other in others:
            if os.path.realpath(path) == os.path.realpath(other):
                raise ModelfileError(
                    f"DRAFT must not reference the same local path as FROM: {path}"
                )

    for command in modelfile.commands:
        name, args = command.name, command.args
        if name in ("model", "draft", "adapter"):
            path = expand_path(args, base_dir)
            try:
                local = _local_files(path)
            except FileNotFoundError as err:
                if name == "model":
                    request["from"] = args
                    continue
                raise _os_error("stat", path, err) from err
            if check_file is not None:
                keyword = "FROM" if name == "model" else name.upper()
                in_directory = os.path.isdir(path)
                for local_file in local:
                    check_file(local_file, keyword, in_directory)
            found = digests(local)
            if name == "model":
                reject_same(path, draft_paths)
                model_paths.append(path)
                files.update(found)
            elif name == "draft":
                reject_same(path, model_paths)
                draft_paths.append(path)
                draft_files.update(found)
            else:
                adapters = found  # Ollama keeps only the last ADAPTER
        elif name in ("template", "system", "renderer", "parser"):
            request[name] = args
        elif name == "license":
            licenses.append(args)
        elif name == "requires":
            request["requires"] = requires_version(args)
        elif name == "message":
            role, _, content = args.partition(": ")
            messages.append({"role": role, "content": content})
        elif is_parameter(name):
            parameter_value(name, args)  # Ollama stops at the first bad parameter, in order

    params = parameters(modelfile.commands)
    for key in ("template", "system", "renderer", "parser", "requires"):
        if request.get(key) == "":
            del request[key]  # Go's omitempty: an empty string is never sent
    for key, paths in (("files", files), ("adapters", adapters), ("draft_files", draft_files)):
        if paths:
            names = _upload_names(paths)
            request[key] = {names[path]: paths[path] for path in paths}
    if licenses:
        request["license"] = licenses
    if params:
        request["parameters"] = params
    if messages:
        request["messages"] = messages
    if quantize:
        request["quantize"] = quantize
    uploads = sorted({*files, *adapters, *draft_files})
    return request, uploads
