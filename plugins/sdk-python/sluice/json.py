"""JSON as the Rust SDK's plugins see it (serde_json with `preserve_order`), so a Python plugin
produces byte-identical JSON to its Rust twin.

- :func:`loads` takes UTF-8 bytes and returns ``dict`` (key order kept; a repeated key keeps its
  first position and its last value), ``list``, ``str``, ``int`` (within i64/u64), ``float``,
  ``bool`` or ``None``; anything serde_json refuses raises ``ValueError`` (invalid UTF-8, lone
  surrogate escapes, NaN/Infinity, numbers out of range, nesting deeper than 127).
- :func:`dumps` returns compact UTF-8 bytes: serde_json's escapes and its float format.
"""

import json as _json
import math as _math

_MAX_DEPTH = 127
_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)


def _reject(_):
    raise ValueError("not a JSON number")


def _int(s):
    n = int(s)
    if s[0] == "-":
        if n == 0:
            return -0.0
        if n >= _I64_MIN:
            return n
    elif n <= _U64:
        return n
    f = float(n)  # serde_json reads integers beyond 64 bits as f64
    if _math.isinf(f):
        raise ValueError("number out of range")
    return f


def _float(s):
    f = float(s)
    if _math.isinf(f):
        raise ValueError("number out of range")
    return f


def _check(v, depth):
    t = type(v)
    if t is str:
        v.encode()  # a lone surrogate raises UnicodeEncodeError (a ValueError)
    elif t is dict:
        if depth >= _MAX_DEPTH:
            raise ValueError("recursion limit exceeded")
        for k, x in v.items():
            k.encode()
            if type(x) in (str, dict, list):
                _check(x, depth + 1)
    elif t is list:
        if depth >= _MAX_DEPTH:
            raise ValueError("recursion limit exceeded")
        for x in v:
            if type(x) in (str, dict, list):
                _check(x, depth + 1)


_decoder = _json.JSONDecoder(object_pairs_hook=dict, parse_int=_int, parse_float=_float,
                             parse_constant=_reject)


def loads(data):
    """Parses UTF-8 ``data`` (bytes); raises ``ValueError`` where serde_json would fail."""
    try:
        v = _decoder.decode(data.decode("utf-8"))
        _check(v, 0)
    except RecursionError:
        raise ValueError("recursion limit exceeded") from None
    return v


_ESC = {i: "\\u%04x" % i for i in range(0x20)}
_ESC.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})


def _str(s):
    return '"' + s.translate(_ESC) + '"'


def _exp(e):
    return "e+%d" % e if e > 0 else "e%d" % e


def format_float(f):
    """A finite float the way serde_json (ryu) writes it: `1.0`, `0.001`, `1e-7`, `1.5e+300`."""
    if f == 0:
        return "-0.0" if _math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    mant, _, exp = repr(abs(f)).partition("e")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    k = (int(exp) if exp else 0) - len(fp)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k
    if 0 <= k and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif n == 1:
        body = digits + _exp(kk - 1)
    else:
        body = digits[0] + "." + digits[1:] + _exp(kk - 1)
    return sign + body


def _dump(v, parts):
    t = type(v)
    if t is str:
        parts.append(_str(v))
    elif t is dict:
        parts.append("{")
        first = True
        for k, x in v.items():
            if not first:
                parts.append(",")
            first = False
            parts.append(_str(k))
            parts.append(":")
            _dump(x, parts)
        parts.append("}")
    elif t is list:
        parts.append("[")
        for i, x in enumerate(v):
            if i:
                parts.append(",")
            _dump(x, parts)
        parts.append("]")
    elif v is None:
        parts.append("null")
    elif v is True:
        parts.append("true")
    elif v is False:
        parts.append("false")
    elif t is int:
        parts.append(str(v))
    elif t is float:
        parts.append(format_float(v) if _math.isfinite(v) else "null")
    else:
        raise TypeError("cannot write %s as JSON" % t.__name__)


def dumps(v):
    """Compact UTF-8 JSON bytes, as serde_json::to_vec writes them."""
    parts = []
    _dump(v, parts)
    return "".join(parts).encode()
