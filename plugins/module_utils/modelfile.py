# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ollama Modelfile parser, validator, serializer and /api/create request builder.

Behaviour follows Ollama v0.32.15: the client-side parser (parser/parser.go), the checks
its CreateRequest runs before anything reaches the server (typed parameters, REQUIRES,
local paths), and what `ollama create` then sends to POST /api/create. Error texts are
Ollama's own, so an operator sees the message `ollama create` would print.

Pure standard library: this module also runs on managed hosts (Python 3.10+) and inside
the Ollama stand-in used by the tests. docs/modelfile.md explains the non-obvious choices.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from fractions import Fraction
from typing import Any

try:  # pwd exists on every POSIX host; only `~` expansion needs it.
    import pwd
except ImportError:  # pragma: no cover - non-POSIX controller
    pwd = None  # type: ignore[assignment]

__all__ = [
    "DEPRECATED_PARAMETERS",
    "INSTRUCTIONS",
    "MAX_MODELFILE_BYTES",
    "MESSAGE_ROLES",
    "PARAMETER_TYPES",
    "PLAIN_KEYWORDS",
    "Command",
    "Modelfile",
    "ModelfileError",
    "check_model_file",
    "create_request",
    "decode",
    "expand_path",
    "lint",
    "parameter_value",
    "parameters",
    "parse",
    "parse_bytes",
    "serialize",
    "validate_model_name",
]

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
_ERR_NO_MODEL_FILES = "no Modelfile or safetensors files found"
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
                _requires_version(command.args)
            elif _is_parameter(command.name):
                parameter_value(command.name, command.args)
        parameters(commands)
    return modelfile


def parse_bytes(data: bytes, *, validate: bool = True) -> Modelfile:
    """parse() for a file's raw bytes, decoded as Ollama decodes them (see decode())."""
    if len(data) > MAX_MODELFILE_BYTES:
        raise ModelfileError(_ERR_TOO_BIG)
    return parse(decode(data), validate=validate)


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


def _is_parameter(name: str) -> bool:
    """True for commands Ollama sends as parameters (instructions and deprecated are not)."""
    return name not in _INSTRUCTION_COMMANDS and name not in DEPRECATED_PARAMETERS


def _deprecation_warnings(commands: Iterable[Command]) -> list[str]:
    return [
        f"parameter {command.name} is deprecated"
        for command in commands
        if command.name in DEPRECATED_PARAMETERS
    ]


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_GO_TRUE = frozenset(("1", "t", "T", "true", "TRUE", "True"))
_GO_FALSE = frozenset(("0", "f", "F", "false", "FALSE", "False"))


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
        if raw in _GO_TRUE:
            return True
        if raw in _GO_FALSE:
            return False
        raise ModelfileError(f"invalid bool value [{raw}]")
    if kind is int:
        number = _go_parse_int64(raw)
        if number is None:
            raise ModelfileError(f"invalid int value [{raw}]")
        return number
    number32 = _go_parse_float32(raw)
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
        if not _is_parameter(command.name):
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


def _go_parse_int64(raw: str) -> int | None:
    """strconv.ParseInt(raw, 10, 64): optional sign, ASCII digits, no `_`, int64 range."""
    if not _INT_RE.fullmatch(raw):
        return None
    if len(raw.lstrip("+-").lstrip("0")) > 19:  # also keeps int() off huge digit strings
        return None
    number = int(raw)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _underscores_ok(text: str) -> bool:
    """Go's rule: `_` only between digits, or between a base prefix and a digit."""
    if text[:1] in ("+", "-"):
        text = text[1:]
    hexadecimal = False
    last = "^"  # ^ start, 0 digit or prefix, _ underscore, ! anything else
    index = 0
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        index, last, hexadecimal = 2, "0", text[1].lower() == "x"
    for ch in text[index:]:
        if "0" <= ch <= "9" or (hexadecimal and "a" <= ch.lower() <= "f"):
            last = "0"
        elif ch == "_":
            if last != "0":
                return False
            last = "_"
        elif last == "_":
            return False
        else:
            last = "!"
    return last != "_"


_MAX_DIGITS = 800  # like Go's decimal buffer; the rest only matters as a sticky bit


def _go_parse_float32(raw: str) -> float | None:
    """strconv.ParseFloat(raw, 32): the float32 value, or None for a syntax or range error."""
    lowered = raw.lower()
    if lowered == "nan":
        return math.nan
    unsigned = lowered[1:] if lowered.startswith(("+", "-")) else lowered
    if unsigned in ("inf", "infinity"):  # NaN takes no sign in Go, infinities do
        return -math.inf if lowered.startswith("-") else math.inf
    exact = _read_go_float(raw)
    if exact is None:
        return None
    negative, magnitude = exact
    rounded = _round_float32(magnitude)
    if rounded is None:
        return None
    return _shortest_float32(-rounded if negative else rounded)


def _read_go_float(raw: str) -> tuple[bool, Fraction] | None:
    """Exact value of a Go decimal or hexadecimal float literal (sign kept apart for -0)."""
    index, size = 0, len(raw)
    negative = False
    if index < size and raw[index] in "+-":
        negative = raw[index] == "-"
        index += 1
    hexadecimal = index + 2 < size and raw[index] == "0" and raw[index + 1] in "xX"
    if hexadecimal:
        index += 2
    digit_chars = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
    digits: list[str] = []
    before_dot: int | None = None
    saw_digit = underscores = False
    while index < size:
        ch = raw[index]
        if ch == "_":
            underscores = True
        elif ch == ".":
            if before_dot is not None:
                break
            before_dot = len(digits)
        elif ch in digit_chars:
            saw_digit = True
            digits.append(ch)
        else:
            break
        index += 1
    if not saw_digit:
        return None
    if before_dot is None:
        before_dot = len(digits)
    exponent = 0
    if index < size and raw[index].lower() == ("p" if hexadecimal else "e"):
        index += 1
        sign = 1
        if index < size and raw[index] in "+-":
            sign = -1 if raw[index] == "-" else 1
            index += 1
        if index >= size or not "0" <= raw[index] <= "9":
            return None
        while index < size and ("0" <= raw[index] <= "9" or raw[index] == "_"):
            if raw[index] == "_":
                underscores = True
            elif exponent < 10000:  # Go saturates here too; larger cannot matter
                exponent = exponent * 10 + int(raw[index])
            index += 1
        exponent *= sign
    elif hexadecimal:
        return None  # Go requires the p exponent on hexadecimal floats
    if index != size or (underscores and not _underscores_ok(raw)):
        return None

    # Drop leading zeros, keep a bounded number of digits plus a sticky one.
    leading = 0
    while leading < len(digits) and digits[leading] == "0":
        leading += 1
    significant = digits[leading:]
    if not significant:
        return negative, Fraction(0)
    sticky = any(d != "0" for d in significant[_MAX_DIGITS:])
    kept = "".join(significant[:_MAX_DIGITS]) + ("1" if sticky else "")
    point = before_dot - leading  # value = 0.<significant> * base**point
    if hexadecimal:
        binary_point = 4 * point + exponent
        if binary_point > 200:
            return negative, Fraction(2**200)  # far beyond float32: overflows
        if binary_point < -400:
            return negative, Fraction(0)
        return negative, Fraction(int(kept, 16)) * Fraction(2) ** (binary_point - 4 * len(kept))
    decimal_point = point + exponent
    if decimal_point > 60:
        return negative, Fraction(10**60)  # far beyond float32: overflows
    if decimal_point < -100:
        return negative, Fraction(0)
    return negative, Fraction(int(kept)) * Fraction(10) ** (decimal_point - len(kept))


def _round_float32(value: Fraction) -> float | None:
    """Round a non-negative exact value to float32 (ties to even); None when it overflows."""
    if value == 0:
        return 0.0
    num, den = value.numerator, value.denominator
    exp2 = num.bit_length() - den.bit_length()
    if (num << max(0, -exp2)) < (den << max(0, exp2)):
        exp2 -= 1  # now 2**exp2 <= value < 2**(exp2 + 1)
    exp2 = max(exp2, -126)  # below the normal range the spacing stays 2**-149
    shift = exp2 - 23
    scaled_num = num << max(0, -shift)
    scaled_den = den << max(0, shift)
    mantissa, remainder = divmod(scaled_num, scaled_den)
    twice = 2 * remainder
    if twice > scaled_den or (twice == scaled_den and mantissa % 2 == 1):
        mantissa += 1
    if mantissa == 2**24:
        mantissa, shift = 2**23, shift + 1
    if mantissa >= 2**23 and shift + 23 > 127:
        return None
    return math.ldexp(mantissa, shift)


def _shortest_float32(value: float) -> float:
    """The float64 nearest to the shortest decimal that reads back as float32 `value`.

    Go encodes a float32 in JSON with the fewest digits that round-trip at 32 bits
    (0.7, not 0.699999988079071); Ollama's server stores what it receives, so the digits
    decide the params layer digest.
    """
    if value == 0 or not math.isfinite(value):
        return value
    exact = Decimal(value)
    target = abs(value)
    for digits in range(1, 10):
        best: Decimal | None = None
        for rounding in (ROUND_FLOOR, ROUND_CEILING):
            candidate = Context(prec=digits, rounding=rounding).plus(exact)
            if _round_float32(abs(Fraction(candidate))) != target:
                continue
            if best is None:
                best = candidate
                continue
            gap_new, gap_best = abs(candidate - exact), abs(best - exact)
            if gap_new < gap_best or (
                gap_new == gap_best and int(candidate.as_tuple().digits[-1]) % 2 == 0
            ):
                best = candidate
        if best is not None:
            return float(best)
    return value  # 9 digits always round-trip a float32; kept for completeness


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


def _requires_version(raw: str) -> str:
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
# Local files: path expansion, model directories, digests
# ---------------------------------------------------------------------------


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
            request["requires"] = _requires_version(args)
        elif name == "message":
            role, _, content = args.partition(": ")
            messages.append({"role": role, "content": content})
        elif _is_parameter(name):
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
