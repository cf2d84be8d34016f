"""Mask the credentials a URL can carry before it is shown (``config --show``, logs).

Plain URL fields (``sinks.account_api_url``, ``broker.url``, ``sinks.grafana_url``...) are not
``SecretStr``: they are not meant to hold secrets, but operators paste URLs such as
``https://svc:hunter2@api.internal/v1?token=abc``. Userinfo and every query value are
replaced by ``***``; scheme, host, port and path stay, so the output still says where the
worker connects.

Examples
--------
>>> mask_url("http://user:pass@host/x?token=abc&v=1#f")
'http://***@host/x?token=***&v=***#f'
>>> mask_url("kafka://k1:9092,k2:9092")
'kafka://k1:9092,k2:9092'
>>> mask_url("not a url")
'not a url'
>>> mask_urls({"a": ["https://u@h/?k=v", 3], "b": {"c": "http://h/"}})
{'a': ['https://***@h/?k=***', 3], 'b': {'c': 'http://h/'}}
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

__all__ = ["MASK", "mask_url", "mask_urls"]

MASK: Final = "***"


def mask_url(value: str) -> str:
    """``value`` with userinfo and query values masked; a non-URL string is returned as is,
    and a URL that does not parse is masked whole (it might still hold a secret)."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        netloc = parts.netloc
        if "@" in netloc:
            # rpartition: a password may itself contain "@".
            netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK) for k, _ in pairs], safe="*")
        return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()
    except ValueError:  # e.g. a bad IPv6 literal: show nothing of it
        return MASK


def mask_urls(data: Any) -> Any:
    """A copy of ``data`` (dicts, lists, strings from a JSON dump) with every URL masked."""
    if isinstance(data, str):
        return mask_url(data)
    if isinstance(data, dict):
        return {k: mask_urls(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_urls(v) for v in data]
    return data
