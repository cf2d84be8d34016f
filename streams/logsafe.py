"""Make untrusted text safe to put in a log line or a short message.

Values from the wire (payloads, account ids, entity ids, exception texts quoting them) can be
huge or contain newlines and terminal escapes: echoed raw, one record becomes 60 KB of log or
a forged line that looks like the worker wrote it. :func:`safe` escapes every control
character the way ``repr`` does and caps the length, so one value is one bounded piece of one
line.

Examples
--------
>>> safe("ok")
'ok'
>>> safe("a\\nWARNING forged")
'a\\\\nWARNING forged'
>>> safe("x" * 50, 10)
'xxxxxxxxxx…(+40 chars)'
>>> safe(b"\\xff\\x1b[31m")
"b'\\\\xff\\\\x1b[31m'"
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_LIMIT", "safe"]

#: Characters kept of one value by default: enough to recognise it, small enough for a line.
DEFAULT_LIMIT: Final = 200


def _escape(text: str) -> str:
    # repr escapes \n, \r, \t, ESC, other C0/C1 controls, lone surrogates and the line/paragraph
    # separators (U+2028/9 are not printable); it leaves printable non-ASCII text readable.
    if text.isprintable():
        return text
    return repr(text)[1:-1]


def safe(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one escaped line of at most ``limit`` characters plus a short suffix.

    Strings are escaped but not quoted; bytes and other objects use their ``repr``. The cut
    happens after escaping, so an escape sequence can be cut but never a raw control char
    let through; the suffix says how much was left out.
    """
    if isinstance(value, str):
        text = _escape(value)
    else:
        try:
            text = _escape(repr(value))
        except Exception:  # a broken __repr__ must not turn logging into a crash
            text = f"<{type(value).__name__} with unprintable repr>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"
