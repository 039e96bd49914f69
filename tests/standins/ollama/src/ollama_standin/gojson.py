"""JSON the way Go's encoding/json writes and reads it.

Byte-for-byte matters here: Ollama's manifests, config and params blobs are Go JSON, and their
sha256 is the model's identity. So: struct fields keep declaration order (plain dicts keep
insertion order), Go maps are sorted (`GoMap`), `<`, `>`, `&`, U+2028/9 are escaped, floats use
Go's shortest formatting (`F32` marks float32 values), and `encode_line` appends the newline
json.Encoder adds.

Reading follows json.Decoder as gin uses it: only the first value is read (trailing bytes are
ignored), an empty body is "EOF", and syntax errors carry Go's messages.
"""

from __future__ import annotations

import json
import math
import struct
from decimal import Decimal
from typing import Any


class GoMap(dict):
    """A Go map: encoded with sorted keys."""


class F32(float):
    """A float32 value: encoded with float32 shortest formatting."""


class RawJSON(str):
    """Already-encoded JSON (json.RawMessage)."""


# ---------------------------------------------------------------------------- floats


def _shortest_digits(value: float, bits: int) -> tuple[str, int]:
    """Shortest decimal digits d and point position dp with value == 0.d * 10**dp."""
    if value == 0:
        return "0", 1
    value = abs(value)
    if bits == 32:
        target = struct.unpack("<f", struct.pack("<f", value))[0]
        text = None
        for precision in range(1, 10):
            candidate = f"{target:.{precision - 1}e}"
            if struct.unpack("<f", struct.pack("<f", float(candidate)))[0] == target:
                text = candidate
                break
        assert text is not None
    else:
        text = repr(value)
    dec = Decimal(text).normalize()
    sign, digits, exponent = dec.as_tuple()
    del sign
    digit_text = "".join(str(d) for d in digits)
    assert isinstance(exponent, int)
    return digit_text, len(digit_text) + exponent


def _fmt_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _fmt_e(digits: str, dp: int) -> str:
    exp = dp - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mantissa}e{sign}{abs(exp):02d}"


def format_float_json(value: float, bits: int = 64) -> str:
    """encoding/json's float encoder."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    neg = value < 0 or (value == 0 and math.copysign(1, value) < 0)
    absolute = abs(value)
    if bits == 32:
        absolute32 = struct.unpack("<f", struct.pack("<f", absolute))[0]
        low = struct.unpack("<f", struct.pack("<f", 1e-6))[0]
        high = struct.unpack("<f", struct.pack("<f", 1e21))[0]
        use_e = absolute32 != 0 and (absolute32 < low or absolute32 >= high)
    else:
        use_e = absolute != 0 and (absolute < 1e-6 or absolute >= 1e21)
    digits, dp = _shortest_digits(absolute, bits)
    if use_e:
        text = _fmt_e(digits, dp)
        # Go cleans e-09 up to e-9.
        if len(text) >= 4 and text[-4] == "e" and text[-3] == "-" and text[-2] == "0":
            text = text[:-2] + text[-1]
    else:
        text = _fmt_f(digits, dp)
    return ("-" if neg and absolute != 0 else "") + text


def format_float_g(value: float, bits: int = 64) -> str:
    """fmt's %v / strconv.FormatFloat(f, 'g', -1, bits)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = value < 0
    digits, dp = _shortest_digits(abs(value), bits)
    exp = dp - 1
    text = _fmt_e(digits, dp) if exp < -4 or exp >= 6 else _fmt_f(digits, dp)
    return ("-" if neg else "") + text


# --------------------------------------------------------------------------- strings


def quote_string(text: str, escape_html: bool = True) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20:
            short = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
            out.append(short or f"\\u00{code:02x}")
        elif escape_html and ch in "<>&":
            out.append(f"\\u00{code:02x}")
        elif code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote(text: str) -> str:
    """strconv.Quote: Go-syntax string literal (printable characters kept)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------- encode


def dumps(value: Any, escape_html: bool = True) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, RawJSON):
        return str(value)
    if isinstance(value, str):
        return quote_string(value, escape_html)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, F32):
        return format_float_json(value, 32)
    if isinstance(value, float):
        return format_float_json(value)
    if isinstance(value, GoMap):
        items = sorted(value.items(), key=lambda kv: kv[0])
        return (
            "{"
            + ",".join(quote_string(k, escape_html) + ":" + dumps(v, escape_html) for k, v in items)
            + "}"
        )
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                quote_string(k, escape_html) + ":" + dumps(v, escape_html) for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v, escape_html) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_line(value: Any) -> bytes:
    """json.NewEncoder(w).Encode(v): the value plus a newline."""
    return (dumps(value) + "\n").encode()


def from_json_value(value: Any) -> Any:
    """A decoded JSON value as Go's map[string]any holds it: maps sorted, numbers float64."""
    if isinstance(value, dict):
        return GoMap((k, from_json_value(v)) for k, v in value.items())
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


# ---------------------------------------------------------------------------- decode


class JSONSyntaxError(ValueError):
    """A request body Go's decoder rejects; str() is Go's message."""


class EmptyBody(JSONSyntaxError):
    def __init__(self) -> None:
        super().__init__("EOF")


def _quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    quoted = go_quote(ch)
    return "'" + quoted[1:-1] + "'"


class _Scanner:
    """Go's encoding/json scanner, enough to produce its error messages."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def err(self, context: str) -> JSONSyntaxError:
        if self.i >= len(self.s):
            return JSONSyntaxError("unexpected EOF")
        return JSONSyntaxError(f"invalid character {_quote_char(self.s[self.i])} {context}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def value(self) -> None:
        self.ws()
        ch = self.peek()
        if ch == "{":
            self.i += 1
            self.ws()
            if self.peek() == "}":
                self.i += 1
                return
            while True:
                self.ws()
                if self.peek() != '"':
                    raise self.err("looking for beginning of object key string")
                self.string()
                self.ws()
                if self.peek() != ":":
                    raise self.err("after object key")
                self.i += 1
                self.value()
                self.ws()
                ch = self.peek()
                if ch == ",":
                    self.i += 1
                    continue
                if ch == "}":
                    self.i += 1
                    return
                raise self.err("after object key:value pair")
        if ch == "[":
            self.i += 1
            self.ws()
            if self.peek() == "]":
                self.i += 1
                return
            while True:
                self.value()
                self.ws()
                ch = self.peek()
                if ch == ",":
                    self.i += 1
                    continue
                if ch == "]":
                    self.i += 1
                    return
                raise self.err("after array element")
        if ch == '"':
            self.string()
            return
        if ch == "-" or ch.isdigit():
            self.number()
            return
        for word in ("true", "false", "null"):
            if ch == word[0]:
                self.i += 1
                for expected in word[1:]:
                    if self.peek() != expected:
                        raise self.err(f"in literal {word} (expecting {_quote_char(expected)})")
                    self.i += 1
                return
        raise self.err("looking for beginning of value")

    def string(self) -> None:
        self.i += 1
        while True:
            ch = self.peek()
            if ch == "":
                raise self.err("")
            if ch == '"':
                self.i += 1
                return
            if ch == "\\":
                self.i += 1
                esc = self.peek()
                if esc == "u":
                    self.i += 1
                    for _ in range(4):
                        if self.peek() == "" or self.peek() not in "0123456789abcdefABCDEF":
                            raise self.err("in \\u hexadecimal character escape")
                        self.i += 1
                    continue
                if esc == "" or esc not in 'bfnrt\\/"':
                    raise self.err("in string escape code")
                self.i += 1
                continue
            if ord(ch) < 0x20:
                raise self.err("in string literal")
            self.i += 1

    def number(self) -> None:
        if self.peek() == "-":
            self.i += 1
            if not self.peek().isdigit() or self.peek() == "":
                raise self.err("in numeric literal")
        if self.peek() == "0":
            self.i += 1
        else:
            while self.peek() != "" and self.peek() in "0123456789":
                self.i += 1
        if self.peek() == ".":
            self.i += 1
            if self.peek() == "" or self.peek() not in "0123456789":
                raise self.err("after decimal point in numeric literal")
            while self.peek() != "" and self.peek() in "0123456789":
                self.i += 1
        if self.peek() in ("e", "E") and self.peek() != "":
            self.i += 1
            if self.peek() != "" and self.peek() in "+-":
                self.i += 1
            if self.peek() == "" or self.peek() not in "0123456789":
                raise self.err("in exponent of numeric literal")
            while self.peek() != "" and self.peek() in "0123456789":
                self.i += 1


def decode_first(body: bytes) -> Any:
    """Decode the first JSON value of body as json.Decoder.Decode does."""
    text = body.decode("utf-8", errors="replace")
    if text.strip(" \t\r\n") == "":
        raise EmptyBody()
    scanner = _Scanner(text)
    scanner.value()
    start = len(text) - len(text.lstrip(" \t\r\n"))
    return json.loads(text[start : scanner.i])


# ------------------------------------------------------------------ type checking


class JSONTypeError(ValueError):
    """Go's json.UnmarshalTypeError (or a custom unmarshaler's error)."""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_error(value: Any, struct_name: str, path: str, go_type: str) -> JSONTypeError:
    kind = _json_kind(value)
    if kind == "number" and go_type in ("int", "int64", "uint64") and not float(value).is_integer():
        kind = f"number {value}"
    if struct_name:
        return JSONTypeError(
            f"json: cannot unmarshal {kind} into Go struct field {struct_name}.{path} "
            f"of type {go_type}"
        )
    return JSONTypeError(f"json: cannot unmarshal {kind} into Go value of type {go_type}")


def check_struct(
    value: Any, struct_name: str, fields: dict[str, Any], go_type: str
) -> dict[str, Any]:
    """Check a decoded object against a Go struct description; return fields by canonical name.

    fields maps the JSON name to a type spec: "string", "bool", "int", "float", "any",
    ("ptr", spec), ("slice", spec, gotype), ("map", spec, gotype), ("struct", name, fields,
    gotype), or a callable that converts the raw value (custom UnmarshalJSON).
    Key matching is case-insensitive like Go's; the first type error wins.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error(value, "", "", go_type)
    result: dict[str, Any] = {}
    first_error: JSONTypeError | None = None
    lower = {name.lower(): name for name in fields}
    for key, raw in value.items():
        name = key if key in fields else lower.get(key.lower())
        if name is None:
            continue
        try:
            result[name] = _check(raw, fields[name], struct_name, name)
        except JSONTypeError as exc:
            if first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error
    return result


def _check(raw: Any, spec: Any, struct_name: str, path: str) -> Any:
    if callable(spec):
        return None if raw is None else spec(raw)
    if raw is None:
        return None
    if spec == "any":
        return raw
    if spec == "string":
        if not isinstance(raw, str):
            raise _type_error(raw, struct_name, path, "string")
        return raw
    if spec == "bool":
        if not isinstance(raw, bool):
            raise _type_error(raw, struct_name, path, "bool")
        return raw
    if spec == "int":
        if (
            isinstance(raw, bool)
            or not isinstance(raw, (int, float))
            or not float(raw).is_integer()
        ):
            raise _type_error(raw, struct_name, path, "int")
        return int(raw)
    if spec == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _type_error(raw, struct_name, path, "float64")
        return float(raw)
    kind = spec[0]
    if kind == "ptr":
        return _check(raw, spec[1], struct_name, path)
    if kind == "slice":
        if not isinstance(raw, list):
            raise _type_error(raw, struct_name, path, spec[2])
        return [_check(item, spec[1], struct_name, path) for item in raw]
    if kind == "map":
        if not isinstance(raw, dict):
            raise _type_error(raw, struct_name, path, spec[2])
        return {k: _check(v, spec[1], struct_name, path) for k, v in raw.items()}
    if kind == "struct":
        _, name, fields, gotype = spec
        if not isinstance(raw, dict):
            raise _type_error(raw, struct_name, path, gotype)
        return check_struct(raw, name, {f: fields[f] for f in fields}, gotype)
    raise AssertionError(f"bad spec {spec!r}")


# ------------------------------------------------------------------------- durations

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
MAX_DURATION = 2**63 - 1


def parse_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds."""
    original = text
    quoted = go_quote(original)
    negative = False
    if text and text[0] in "+-":
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise ValueError(f"time: invalid duration {quoted}")
    total = Decimal(0)
    while text:
        i = 0
        while i < len(text) and text[i].isdigit():
            i += 1
        whole = text[:i]
        text = text[i:]
        frac = ""
        if text.startswith("."):
            text = text[1:]
            j = 0
            while j < len(text) and text[j].isdigit():
                j += 1
            frac = text[:j]
            text = text[j:]
        if whole == "" and frac == "":
            raise ValueError(f"time: invalid duration {quoted}")
        j = 0
        while j < len(text) and text[j] != "." and not text[j].isdigit():
            j += 1
        unit = text[:j]
        text = text[j:]
        if unit == "":
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {quoted}")
        total += Decimal(f"{whole or '0'}.{frac or '0'}") * _UNITS[unit]
    nanos = int(total)
    if nanos > MAX_DURATION:
        raise ValueError(f"time: invalid duration {quoted}")
    return -nanos if negative else nanos


def format_duration(nanos: int) -> str:
    """time.Duration.String()."""
    if nanos == 0:
        return "0s"
    negative = nanos < 0
    u = abs(nanos)
    if u < 1_000_000_000:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            text = _frac(u, 3) + "\u00b5s"
        else:
            text = _frac(u, 6) + "ms"
    else:
        text = ""
        seconds_part = _frac(u % 60_000_000_000, 9) + "s"
        u //= 60_000_000_000
        text = seconds_part
        if u > 0:
            text = f"{u % 60}m" + text
            u //= 60
            if u > 0:
                text = f"{u}h" + text
    return ("-" if negative else "") + text


def _frac(value: int, precision: int) -> str:
    whole, frac = divmod(value, 10**precision)
    frac_text = f"{frac:0{precision}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


# ------------------------------------------------------------------------------ time


def format_time(ns: int, utc: bool = False) -> str:
    """time.Time MarshalJSON (RFC 3339 with nanoseconds, trailing zeros trimmed)."""
    import time as _time

    seconds, frac = divmod(ns, 1_000_000_000)
    if utc:
        tm = _time.gmtime(seconds)
        offset = 0
    else:
        tm = _time.localtime(seconds)
        offset = tm.tm_gmtoff or 0
    text = _time.strftime("%Y-%m-%dT%H:%M:%S", tm)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return f"{text}{sign}{offset // 3600:02d}:{(offset % 3600) // 60:02d}"
