# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Go's strconv number parsing, as Ollama's client applies it to PARAMETER values.

ParseInt (base 10, 64 bits), ParseFloat (32 bits, decimal and hexadecimal literals with
`_` separators, rounded ties-to-even) and ParseBool, each returning None where Go returns
an error; floats come back as the shortest decimal that is the same float32 (what Go
writes into JSON). Pure standard library, Python 3.9+.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from fractions import Fraction

_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_GO_TRUE = frozenset(("1", "t", "T", "true", "TRUE", "True"))
_GO_FALSE = frozenset(("0", "f", "F", "false", "FALSE", "False"))


def parse_bool(raw: str) -> bool | None:
    """strconv.ParseBool(raw): True or False for Go's spellings, None for anything else."""
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    return None


def parse_int64(raw: str) -> int | None:
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


def parse_float32(raw: str) -> float | None:
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
