"""Text helpers with Rust's semantics, so a Python plugin treats text exactly like its Rust twin.

Python's ``str.isalnum`` and ``str.strip`` use different Unicode properties from Rust's
``char::is_alphanumeric`` and ``str::trim``; these follow Rust's.
"""

from bisect import bisect_right as _bisect

from ._unicode import ALNUM as _ALNUM

_WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                         "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def is_alphanumeric(c):
    """Rust's ``char::is_alphanumeric``: Unicode Alphabetic or Numeric (Nd, Nl, No)."""
    if c < "\x80":
        return c in _ASCII_ALNUM
    return _bisect(_ALNUM, ord(c)) % 2 == 1


def is_whitespace(c):
    """Rust's ``char::is_whitespace``: the Unicode White_Space property."""
    return c in _WHITE_SPACE


def trim(s):
    """Rust's ``str::trim``: strips leading and trailing White_Space."""
    a, b = 0, len(s)
    while a < b and s[a] in _WHITE_SPACE:
        a += 1
    while b > a and s[b - 1] in _WHITE_SPACE:
        b -= 1
    return s[a:b]
