# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The Modelfile language: parser, validator and serializer (Ollama v0.32.15 parser/parser.go).

Reading text as Ollama decodes it, the instruction scanner, the typed PARAMETER values and
REQUIRES checks `ollama create` runs before it contacts the server, and serialize(), whose
text parses back to the same commands. Pure standard library, Python 3.9+.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._go_numbers import parse_bool, parse_float32, parse_int64

# Instruction keywords in the order Ollama's error message lists them.
INSTRUCTIONS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
MESSAGE_ROLES = ("system", "user", "assistant")

# api.Options / api.Runner fields at v0.32.15, keyed by their JSON names (case-sensitive).
PARAMETER_TYPES: dict[str, type] = {
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "draft_num_predict": int,
}
DEPRECATED_PARAMETERS = (
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)

# Instructions whose keyword is the upper-cased command name when serialized.
PLAIN_KEYWORDS = ("license", "template", "system", "adapter", "renderer", "parser", "requires")
PLAIN_KEYWORDS += ("draft",)
# Command names that are instructions, not parameters, once parsed (FROM is "model").
_INSTRUCTION_COMMANDS = frozenset(("model", "message", *PLAIN_KEYWORDS))

_ERR_COMMAND = "command must be one of " + ", ".join(f'"{kw}"' for kw in INSTRUCTIONS[:-1])
_ERR_COMMAND += f', or "{INSTRUCTIONS[-1]}"'
_ERR_ROLE = 'message role must be one of "system", "user", or "assistant"'
_ERR_EOF = "unexpected EOF"
_ERR_NO_FROM = "no FROM line"
_ERR_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"
#: Ollama reads a Modelfile whole and sets no limit; real ones are KBs (a long LICENSE tens
#: of KB). Past this size a file is refused rather than parsed (memory, time).
MAX_MODELFILE_BYTES = 16 << 20
_ERR_TOO_BIG = f"larger than {MAX_MODELFILE_BYTES >> 20} MiB: not a Modelfile (Ollama's are KBs)"


class ModelfileError(ValueError):
    """A Modelfile Ollama would reject; str() is the text `ollama create` prints after `Error: `.

    `line` is the line number Ollama reports, or None for errors it reports without one.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"(line {line}): {message}" if line else message)


@dataclass(frozen=True)
class Command:
    """One instruction as Ollama stores it.

    FROM is `model`; PARAMETER is the parameter name itself (`temperature`, `stop`);
    MESSAGE is `message` with args `"<role>: <content>"`; the rest are the lower-case keyword.
    """

    name: str
    args: str


@dataclass
class Modelfile:
    commands: list[Command] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Reading text
# ---------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """Decode a Modelfile the way Ollama reads it.

    A UTF-16 byte-order mark selects UTF-16; a UTF-8 one is dropped; anything else is UTF-8
    with each invalid sequence replaced by U+FFFD (Python's "replace" and Go's x/text
    decoder agree on how many).
    """
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace")


def _is_print(ch: str) -> bool:
    """Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space."""
    if ch < "\x80":
        return " " <= ch < "\x7f"
    return unicodedata.category(ch)[0] in "LMNPS"


def _is_ascii_alpha(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _unquote(text: str) -> tuple[str, bool]:
    """Strip one pair of `\"\"\"` or `\"` quotes; False when an opened quote is not closed."""
    if text.startswith('"""'):
        if len(text) >= 6 and text.endswith('"""'):
            return text[3:-3], True
        return "", False
    if text.startswith('"'):
        if len(text) >= 2 and text.endswith('"'):
            return text[1:-1], True
        return "", False
    return text, True


_WS = " \t\r\n"  # the only whitespace a value buffer can hold (everything else is dropped)


class _Value:
    """Accumulates one instruction value; answers "is it complete?" at each line end.

    Ollama re-checks the whole trimmed value at every newline, so a long triple-quoted
    LICENSE would be quadratic; only the first and last few significant characters decide,
    and they are looked up by index. The characters are kept in joined chunks of a fixed
    size, not one object each, so a value takes about the memory of its text.
    """

    _CHUNK = 4096

    def __init__(self) -> None:
        self._chunks: list[str] = []  # each exactly _CHUNK characters
        self._pending: list[str] = []
        self._length = 0
        self.start = -1  # index of the first non-whitespace character, once seen
        self._end = -1  # index after the last non-whitespace character

    def add(self, ch: str) -> None:
        self._pending.append(ch)
        if ch not in _WS:
            if self.start < 0:
                self.start = self._length
            self._end = self._length + 1
        self._length += 1
        if len(self._pending) == self._CHUNK:
            self._chunks.append("".join(self._pending))
            self._pending = []

    def _char(self, index: int) -> str:
        flushed = len(self._chunks) * self._CHUNK
        if index >= flushed:
            return self._pending[index - flushed]
        return self._chunks[index // self._CHUNK][index % self._CHUNK]

    def _range(self, first: int, last: int) -> str:
        return "".join(self._char(index) for index in range(first, last))

    def complete(self) -> bool:
        if self.start < 0:
            return True
        size = self._end - self.start
        head = self._range(self.start, min(self.start + 3, self._end))
        tail = self._range(max(self.start, self._end - 3), self._end)
        if head.startswith('"""'):
            return size >= 6 and tail == '"""'
        if head.startswith('"'):
            return size >= 2 and tail.endswith('"')
        return True

    def text(self) -> str:
        if self.start < 0:
            return ""
        value, _ = _unquote("".join((*self._chunks, *self._pending))[self.start : self._end])
        return value


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_IDLE, _KEYWORD, _PARAM_NAME, _ROLE, _VALUE, _COMMENT = range(6)


def _scan(text: str) -> list[Command]:
    """The syntax pass of Ollama's ParseFile: instructions, quoting, comments, FROM present."""
    if text.startswith("\ufeff"):
        text = text[1:]
    commands: list[Command] = []
    state = _IDLE
    line = 1
    word: list[str] = []  # keyword, parameter name or message role being read
    value = _Value()
    name = ""
    role = ""

    for ch in text:
        newline = ch in "\r\n"  # Ollama counts "\r" and "\n" separately: CRLF counts twice
        if newline:
            line += 1
        blank = ch in " \t"

        if state == _IDLE:
            if ch == "#":
                state = _COMMENT
            elif not (blank or newline):
                state = _KEYWORD
                word = [ch] if _is_print(ch) else []
        elif state == _COMMENT:
            if newline:
                state = _IDLE
        elif state == _KEYWORD:
            if _is_ascii_alpha(ch):
                word.append(ch)
            elif blank:
                keyword = "".join(word).lower()
                if keyword not in INSTRUCTIONS:
                    raise ModelfileError(_ERR_COMMAND, line)
                value = _Value()
                role = ""
                if keyword == "parameter":
                    state, word = _PARAM_NAME, []
                elif keyword == "message":
                    state, word, name = _ROLE, [], "message"
                else:
                    state = _VALUE
                    name = "model" if keyword == "from" else keyword
            else:
                raise ModelfileError(_ERR_COMMAND, line)
        elif state == _PARAM_NAME:
            if _is_ascii_alpha(ch) or "0" <= ch <= "9" or ch == "_":
                word.append(ch)
            elif blank:
                # A second blank after PARAMETER ends an empty name, as in Ollama.
                name, state = "".join(word), _VALUE
            else:
                raise ModelfileError(f"{_ERR_EOF}: {''.join(word)}")
        elif state == _ROLE:
            if _is_ascii_alpha(ch):
                word.append(ch)
            elif blank:
                role = "".join(word)
                if role not in MESSAGE_ROLES:
                    raise ModelfileError(_ERR_ROLE, line)
                state = _VALUE
            else:
                raise ModelfileError(f"{_ERR_EOF}: {''.join(word)}")
        elif newline and value.complete():
            commands.append(Command(name, f"{role}: {value.text()}" if role else value.text()))
            state = _IDLE
        elif newline or blank or _is_print(ch):
            value.add(ch)

    if state == _VALUE:
        if not value.complete():
            raise ModelfileError(_ERR_EOF)
        commands.append(Command(name, f"{role}: {value.text()}" if role else value.text()))
    elif state in (_KEYWORD, _PARAM_NAME, _ROLE):
        raise ModelfileError(_ERR_EOF)

    if not any(command.name == "model" for command in commands):
        raise ModelfileError(_ERR_NO_FROM)
    return commands


def parse(text: str, *, validate: bool = True) -> Modelfile:
    """Parse Modelfile text as `ollama create` does before it contacts the server.

    With validate (the default) the checks Ollama's client runs next are applied too, in
    instruction order: typed PARAMETER values, REQUIRES as semver, values JSON cannot carry.
    Paths (FROM/ADAPTER/DRAFT) are not looked at here: see create_request().
    validate=False stops after the syntax pass (Ollama's ParseFile) and leaves every
    semantic error, in Ollama's order, to create_request().
    Deprecated parameters are warnings, never errors.
    """
    if len(text) > MAX_MODELFILE_BYTES:
        raise ModelfileError(_ERR_TOO_BIG)
    commands = _scan(text)
    modelfile = Modelfile(commands=commands, warnings=_deprecation_warnings(commands))
    if validate:
        for command in commands:  # Ollama reports the first failing instruction
            if command.name == "requires":
                requires_version(command.args)
            elif is_parameter(command.name):
                parameter_value(command.name, command.args)
        parameters(commands)
    return modelfile


def parse_bytes(data: bytes, *, validate: bool = True) -> Modelfile:
    """parse() for a file's raw bytes, decoded as Ollama decodes them (see decode())."""
    if len(data) > MAX_MODELFILE_BYTES:
        raise ModelfileError(_ERR_TOO_BIG)
    return parse(decode(data), validate=validate)


def is_parameter(name: str) -> bool:
    """True for commands Ollama sends as parameters (instructions and deprecated are not)."""
    return name not in _INSTRUCTION_COMMANDS and name not in DEPRECATED_PARAMETERS


def _deprecation_warnings(commands: Iterable[Command]) -> list[str]:
    return [
        f"parameter {command.name} is deprecated"
        for command in commands
        if command.name in DEPRECATED_PARAMETERS
    ]


# ---------------------------------------------------------------------------
# Parameters (Go's number syntax: _go_numbers.py)
# ---------------------------------------------------------------------------


def parameter_value(name: str, raw: str) -> int | float | bool | list[str] | str:
    """Typed value of `PARAMETER name raw`, or Ollama's error (api.FormatParams).

    ints are Go int64, floats are float32 (returned as the shortest decimal that is the
    same float32, which is what Ollama's client puts in JSON), bools take Go's ParseBool
    spellings, `stop` becomes a one-element list. Deprecated and unknown names raise
    "unknown parameter", exactly as FormatParams does; use parameters() to skip deprecated.
    """
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if kind is list:
        return [raw]
    if kind is bool:
        flag = parse_bool(raw)
        if flag is None:
            raise ModelfileError(f"invalid bool value [{raw}]")
        return flag
    if kind is int:
        number = parse_int64(raw)
        if number is None:
            raise ModelfileError(f"invalid int value [{raw}]")
        return number
    number32 = parse_float32(raw)
    if number32 is None:
        raise ModelfileError(f"invalid float value [{raw}]")
    return number32


def parameters(commands: Iterable[Command]) -> dict[str, Any]:
    """The `parameters` object of /api/create: typed, `stop` accumulated, keys sorted.

    Instructions and deprecated parameters are skipped; a repeated parameter other than
    `stop` keeps its last value. Raises ModelfileError for anything Ollama would refuse,
    including NaN/Inf, which Ollama's client cannot encode as JSON.
    """
    result: dict[str, Any] = {}
    for command in commands:
        if not is_parameter(command.name):
            continue
        typed = parameter_value(command.name, command.args)
        previous = result.get(command.name)
        if isinstance(typed, list) and isinstance(previous, list):
            result[command.name] = previous + typed
        else:
            result[command.name] = typed
    for typed in result.values():
        if isinstance(typed, float) and not math.isfinite(typed):
            text = "NaN" if math.isnan(typed) else ("+Inf" if typed > 0 else "-Inf")
            raise ModelfileError(f"json: unsupported value: {text}")
    return dict(sorted(result.items()))


# ---------------------------------------------------------------------------
# REQUIRES (golang.org/x/mod/semver, with the "v" Ollama adds)
# ---------------------------------------------------------------------------

_SEMVER_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_IDENT = r"[0-9A-Za-z-]+"
_SEMVER_RE = re.compile(
    rf"v{_SEMVER_NUMBER}(?:\.{_SEMVER_NUMBER}"
    rf"(?:\.{_SEMVER_NUMBER}(?:-{_SEMVER_IDENT}(?:\.{_SEMVER_IDENT})*)?"
    rf"(?:\+{_SEMVER_IDENT}(?:\.{_SEMVER_IDENT})*)?)?)?"
)


def requires_version(raw: str) -> str:
    """The version Ollama sends for `REQUIRES raw` (leading "v" dropped), or its error."""
    version = raw if raw.startswith("v") else "v" + raw
    if not _SEMVER_RE.fullmatch(version):
        raise ModelfileError(_ERR_REQUIRES)
    prerelease = version.split("+", 1)[0].partition("-")[2]
    # Numeric pre-release identifiers must not have leading zeros.
    if any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in prerelease.split(".")):
        raise ModelfileError(_ERR_REQUIRES)
    return version[1:]


# ---------------------------------------------------------------------------
# Serializing
# ---------------------------------------------------------------------------

# Empty is allowed: `PARAMETER  x` (two blanks) parses to a parameter named "".
_PARAMETER_NAME_RE = re.compile(r"[A-Za-z0-9_]*")


def _value_reads_back(candidate: str) -> str | None:
    """What the parser makes of `candidate` as an instruction value on its own line."""
    value = _Value()
    for index, ch in enumerate(candidate + "\n"):
        if ch in "\r\n":
            if value.complete():
                return value.text() if index == len(candidate) else None
            value.add(ch)
        elif ch in " \t" or _is_print(ch):
            value.add(ch)
        else:
            return None
    return None  # pragma: no cover - the appended newline always ends the loop


def _quote(value: str, what: str) -> str:
    """Write `value` so it parses back unchanged, preferring Ollama's own choice of quotes."""
    for ch in value:
        if not (ch in "\t\r\n" or _is_print(ch)):
            raise ValueError(
                f"{what}: character U+{ord(ch):04X} cannot be written in a Modelfile "
                "(Ollama's parser drops it)"
            )
    if value == "":
        return '""'
    quotes = ('"""', '"') if '"' in value else ('"', '"""')
    for candidate in (value, *(q + value + q for q in quotes)):
        if _value_reads_back(candidate) == value:
            return candidate
    raise ValueError(
        f"{what}: no Modelfile quoting can express this value (a line ends in a quote "
        "character that would close it early)"
    )


def _command_line(command: Command) -> str:
    name, args = command.name, command.args
    if name == "model":
        return f"FROM {_quote(args, 'FROM')}"
    if name in PLAIN_KEYWORDS:
        keyword = name.upper()
        return f"{keyword} {_quote(args, keyword)}"
    if name == "message":
        role, sep, content = args.partition(": ")
        if sep and role in MESSAGE_ROLES:
            return f"MESSAGE {role} {_quote(content, 'MESSAGE')}"
        # Without a role only `PARAMETER message ...` produces this command; write it so.
    if not _PARAMETER_NAME_RE.fullmatch(name):
        raise ValueError(f"parameter name {name!r} cannot be written in a Modelfile")
    return f"PARAMETER {name} {_quote(args, f'PARAMETER {name}')}"


def serialize(commands: Iterable[Command]) -> str:
    """Modelfile text that parse() turns back into exactly `commands`.

    Matches the layout of Ollama's Modelfile.String() (one instruction per line,
    PARAMETER/MESSAGE/keyword forms, `\"\"\"` when the value contains a quote) but also
    quotes wherever Ollama's String() would not round-trip (FROM, leading tabs, values
    starting with a quote, carriage returns). ValueError for commands no text can express.
    """
    return "".join(_command_line(command) + "\n" for command in commands)
