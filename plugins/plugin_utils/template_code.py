"""Compiled Jinja code, kept for the rest of an ansible-playbook run and shared with the
workers it forks.

ansible-core renders every template string through ``Environment.from_string`` or
``compile_expression``, which parse and compile it each time (Jinja's own bytecode cache only
serves templates read through a loader), and each task runs for each host in a worker forked
for it, so whatever a worker compiled ends with it. On the lab fleet's no-op converge that
was some 9,400 compiles of about 500 distinct strings: the same connection variables, role
defaults and conditions, again in every worker, about 40 % of the workers' CPU time.

This keeps the code objects Jinja compiles (what ``Environment.compile`` returns: it holds no
reference to the environment or the variables) under a digest of everything the compile
depends on: the source, whether it is an expression, the environment's class, code
generator, sandbox, lexer settings and extensions, and ansible-core's backslash escaping at
the time.
A worker that compiled something new sends it to the main process through a pipe; the main
process takes in what arrived before each task starts, so that every worker forked afterwards
inherits it and compiles nothing it has seen. The main process also compiles a task's own
templates and conditions before the task's workers are forked (they start together, so each
would otherwise compile what none of them has sent yet): `precompile`. Nothing is written to
disk (template sources can hold decrypted values), and nothing outlives the run.

What keeps it correct: a code object is used only for the exact key it was compiled under;
a compile that fails is not kept, so the same error is raised the same way; the templates
Jinja loads by name (``include``, ``import``), debugging of template sources and
environments with an escaping function are left to Jinja. Within one run the filters and
tests a name resolves to do not change, which the generated code relies on (how a filter is
called depends on the filter). Controller-side only; enabled by the ``preload`` callback.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import marshal
import os
import select
import struct
import types
from collections.abc import Callable, Iterator
from typing import Any

# The environment settings Jinja's own lexer cache keys on (jinja2.lexer.get_lexer), the
# ones that change how a source is cut into tokens.
LEXER_SETTINGS = (
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "line_statement_prefix",
    "line_comment_prefix",
    "trim_blocks",
    "lstrip_blocks",
    "newline_sequence",
    "keep_trailing_newline",
)

# ansible-core releases whose templating this was written against and tested with: the
# private names it reads (AnsibleEnvironment, _TemplateCompileContext) are not an API.
SUPPORTED_CORE = ("2.19",)

# Entries kept at most, per process: a bound, not a size a playbook reaches (the lab fleet's
# whole site.yml compiles about 500 distinct strings).
MAX_ENTRIES = 50_000

_DIGEST = 32  # sha256
_HEADER = struct.Struct(">I")
# A pipe takes a write of up to PIPE_BUF bytes whole, never interleaved with another
# worker's; larger records are not sent (that code stays the worker's own).
_MAX_RECORD = select.PIPE_BUF
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _name(obj: Any) -> str:
    return (
        f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    )


def environment_fingerprint(env: Any) -> tuple | None:
    """What of `env` the generated code depends on, or None when the cache must not be used
    for it (an escaping function decides per template name; an unknown setting)."""
    if callable(getattr(env, "autoescape", False)):
        return None
    try:
        return (
            _name(type(env)),
            _name(env.code_generator_class),
            _name(env.context_class),
            _name(env.template_class),
            _name(env.finalize) if env.finalize is not None else None,
            bool(env.autoescape),
            bool(env.optimized),
            bool(env.is_async),
            bool(getattr(env, "sandboxed", False)),
            tuple(sorted(getattr(env, "intercepted_binops", ()))),
            tuple(sorted(getattr(env, "intercepted_unops", ()))),
            tuple(sorted(env.extensions)),
            tuple(getattr(env, setting) for setting in LEXER_SETTINGS),
        )
    except AttributeError:
        return None


def code_key(kind: str, source: str, fingerprint: tuple, escape_backslashes: bool) -> bytes:
    """The digest a compiled `source` is kept under. `kind` is "template" or "expression"
    (the same text compiles to different code as one or the other)."""
    digest = hashlib.sha256()
    for part in (kind, repr(fingerprint), "escape" if escape_backslashes else "raw"):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(_HEADER.pack(len(encoded)))
        digest.update(encoded)
    digest.update(source.encode("utf-8", "surrogatepass"))
    return digest.digest()


def encode_record(key: bytes, code: types.CodeType) -> bytes | None:
    """One record for the pipe, or None when it is too large to be written whole."""
    payload = key + marshal.dumps(code)
    record = _HEADER.pack(len(payload)) + payload
    return record if len(record) <= _MAX_RECORD else None


def decode_records(buffer: bytes) -> tuple[list[tuple[bytes, types.CodeType]], bytes]:
    """The whole records at the start of `buffer` and what is left after them (the start of
    a record still being read). A record that does not decode to a code object is dropped:
    it costs a compile, never a wrong template."""
    records: list[tuple[bytes, types.CodeType]] = []
    offset = 0
    while len(buffer) - offset >= _HEADER.size:
        (length,) = _HEADER.unpack_from(buffer, offset)
        if length <= _DIGEST or length > _MAX_RECORD:
            return records, b""  # not a record this module wrote: drop what is buffered
        end = offset + _HEADER.size + length
        if end > len(buffer):
            break
        key = buffer[offset + _HEADER.size : offset + _HEADER.size + _DIGEST]
        try:
            # Only this run's forked workers hold the pipe's write end (close-on-exec).
            code = marshal.loads(buffer[offset + _HEADER.size + _DIGEST : end])  # noqa: S302
        except (EOFError, ValueError, TypeError):
            code = None
        if isinstance(code, types.CodeType):
            records.append((key, code))
        offset = end
    return records, buffer[offset:]


class CodeCache:
    """Code objects by key in this process, and the pipe that brings the workers' to the
    process that made the cache (the main one)."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self.owner = os.getpid()
        self.entries: dict[bytes, types.CodeType] = {}
        self.max_entries = max_entries
        self.compiled = 0  # compiles this process made through the cache (misses)
        self._read_fd, self._write_fd = os.pipe()  # close-on-exec: only forks inherit them
        for fd in (self._read_fd, self._write_fd):
            os.set_blocking(fd, False)
        # A larger pipe where the system allows it; else records that do not fit are not sent.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        self._pending = b""

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def get(self, key: bytes) -> types.CodeType | None:
        return self.entries.get(key)

    def put(self, key: bytes, code: types.CodeType) -> None:
        """Keep `code`; in a forked worker, also send it to the main process."""
        self.compiled += 1
        self._keep(key, code)
        if os.getpid() != self.owner:
            record = encode_record(key, code)
            if record is not None:
                # Pipe full (or gone): this one stays the worker's.
                with contextlib.suppress(OSError):
                    os.write(self._write_fd, record)

    def _keep(self, key: bytes, code: types.CodeType) -> None:
        if key in self.entries or len(self.entries) < self.max_entries:
            self.entries[key] = code

    def take_in(self) -> int:
        """In the main process: keep what the workers sent since the last call (never
        blocks). Returns how many entries arrived."""
        if os.getpid() != self.owner:
            return 0
        chunks = [self._pending]
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except OSError:  # nothing more to read now (EAGAIN), or the pipe is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        records, self._pending = decode_records(b"".join(chunks))
        for key, code in records:
            self._keep(key, code)
        return len(records)


# What makes ansible-core hand a string to Jinja as a template (is_possibly_template).
_DELIMITERS = ("{{", "{%", "{#")
# Bounds on what one task's walk compiles in the main process: strings longer than this and
# values nested deeper are left to the workers.
MAX_TEXT = 1 << 16
MAX_DEPTH = 20


def template_texts(value: Any, depth: int = 0) -> Iterator[str]:
    """The strings in `value` (nested dicts and lists, as a play was loaded) that ansible-core
    would compile as templates. Reads the containers' stored items (``dict.values``,
    ``list.__iter__``), so that a container that templates on access is not rendered."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        if len(value) <= MAX_TEXT and any(mark in value for mark in _DELIMITERS):
            yield value
    elif isinstance(value, dict):
        for item in dict.values(value):
            yield from template_texts(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value):
            yield from template_texts(item, depth + 1)


def conditions(value: Any) -> Iterator[str]:
    """The expressions of a conditional keyword (`when`, `failed_when`, `changed_when`,
    `until`, an assert's `that`), as ansible-core compiles them: stripped, and only those that
    are not a whole template (those are rendered as a template first)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str) and (text := item.strip()) and len(text) <= MAX_TEXT:
            if not (text.startswith("{{") and text.endswith("}}")):
                yield text
            else:
                yield from template_texts(text)


def cached_compile(
    cache: CodeCache,
    original: Callable[..., Any],
    escape_backslashes: Callable[[], bool],
    expression_source: contextvars.ContextVar,
) -> Callable[..., Any]:
    """A replacement for ``Environment.compile`` that keeps what `original` compiles from a
    template string (``from_string``) or from the expression ``compile_expression`` parsed."""

    # Jinja's signature, positional arguments included.
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):  # noqa: PLR0917
        expression = expression_source.get()
        if isinstance(source, str):
            kind, text = "template", source
        elif expression is not None:
            expression_source.set(None)  # only the compile compile_expression asked for
            kind, text = "expression", expression
        else:
            kind = text = None
        if (
            kind is None
            or raw
            or defer_init
            or name is not None
            or filename is not None
            or getattr(self, "_debuggable_template_source", False)
            or (fingerprint := environment_fingerprint(self)) is None
        ):
            return original(self, source, name, filename, raw, defer_init)
        key = code_key(kind, text, fingerprint, escape_backslashes())
        code = cache.get(key)
        if code is None:
            code = original(self, source, name, filename, raw, defer_init)
            if isinstance(code, types.CodeType):
                cache.put(key, code)
        return code

    compile.__wrapped__ = original  # type: ignore[attr-defined]
    return compile


def noting_expression(
    original: Callable[..., Any], expression_source: contextvars.ContextVar
) -> Callable[..., Any]:
    """A replacement for ``Environment.compile_expression`` that lets the compile it makes
    know the expression's text (Jinja passes the compile a parsed tree)."""

    def compile_expression(self, source, *args, **kwargs):
        token = expression_source.set(source if isinstance(source, str) else None)
        try:
            return original(self, source, *args, **kwargs)
        finally:
            expression_source.reset(token)

    compile_expression.__wrapped__ = original  # type: ignore[attr-defined]
    return compile_expression


# The cache of this run and its `precompile`, once `install` has run (in this process or
# before the fork).
_INSTALLED: dict[str, Any] = {}


def installed() -> CodeCache | None:
    """The cache of this run, once `install` has run (in this process or before the fork)."""
    return _INSTALLED.get("cache")


def precompile(templates: list[str], expressions: list[str]) -> int:
    """Compile, in the main process, texts a task's workers are about to compile, the way
    ansible-core compiles them (templates with backslash escaping, conditions without), so
    that the workers forked next inherit them. What fails to compile is left to the worker,
    which raises the error as usual. Returns how many texts were new (0 when the cache is not
    installed)."""
    compile_texts = _INSTALLED.get("precompile")
    return compile_texts(templates, expressions) if compile_texts is not None else 0


def install() -> tuple[CodeCache | None, str]:
    """Put the cache in front of ansible-core's Jinja environment, once per process tree.
    Returns the cache (None when not installed) and what was done, for the log."""
    if (cache := installed()) is not None:
        return cache, "already installed"
    # Imported here, not at the top: only on a release this was tested with, and they are
    # ansible-core's private names.
    from ansible.release import __version__ as core_version  # noqa: PLC0415

    if not core_version.startswith(tuple(f"{v}." for v in SUPPORTED_CORE)):
        tested = ", ".join(SUPPORTED_CORE)
        return None, f"ansible-core {core_version} is not one this cache was tested with ({tested})"
    try:
        from ansible._internal._templating._jinja_bits import (  # noqa: PLC0415
            AnsibleEnvironment,
            _TemplateCompileContext,
        )
    except ImportError as exc:
        return None, f"ansible-core's templating is not the expected one ({exc})"

    def escape_backslashes() -> bool:
        context = _TemplateCompileContext.current(optional=True)
        return bool(context is not None and context.escape_backslashes)

    expression_source: contextvars.ContextVar = contextvars.ContextVar(
        "localllm_fleet_expression_source", default=None
    )
    cache = CodeCache()
    environment = AnsibleEnvironment()
    seen: set[tuple[str, str]] = set()

    def compile_texts(templates: list[str], expressions: list[str]) -> int:  # see precompile
        new = 0
        for kind, texts, escape in (
            ("template", templates, True),
            ("expression", expressions, False),
        ):
            with _TemplateCompileContext(escape_backslashes=escape):
                for text in texts:
                    if (kind, text) in seen or text.startswith("#jinja2:"):
                        continue
                    seen.add((kind, text))
                    new += 1
                    try:
                        if kind == "template":
                            environment.from_string(text)
                        else:
                            environment.compile_expression(text)
                    except Exception:  # noqa: S112 - the worker meets it and raises it
                        continue
        return new

    AnsibleEnvironment.compile = cached_compile(
        cache, AnsibleEnvironment.compile, escape_backslashes, expression_source
    )
    AnsibleEnvironment.compile_expression = noting_expression(
        AnsibleEnvironment.compile_expression, expression_source
    )
    _INSTALLED.update(cache=cache, precompile=compile_texts)
    return cache, "installed"
