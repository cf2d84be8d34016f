"""Request events: the typed form of one API request, and the validation that builds it.

Validation is pure and never raises anything but :class:`InvalidEvent`, so a worker can
route any bad payload to the dead-letter topic with a machine-readable ``reason``.

Examples
--------
>>> ev = parse_event(b'{"account_id": "a1", "ts": 1700000000, "model": "m",'
...                  b' "input_tokens": 12, "output_tokens": 400}', now=1700000000)
>>> ev.account_id, ev.output_tokens
('a1', 400)
>>> try:
...     parse_event(b'{"account_id": "a1"}', now=1700000000)
... except InvalidEvent as err:
...     print(err.reason, err.field)
missing_field ts
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Annotated, Any, Final, Literal

import orjson

try:  # Optional accelerator: decodes and type-checks straight into Event, in C.
    import msgspec
except ImportError:  # pragma: no cover - the orjson path below gives the same events
    msgspec = None

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MAX_TOKENS",
    "MAX_USER_AGENT_CHARS",
    "REASONS",
    "Event",
    "InvalidEvent",
    "event_from_dict",
    "parse_event",
]

MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: Default cap on ``input_tokens`` / ``output_tokens`` of one request: far above any real
#: model's context, low enough that window sums stay exact floats (no overflow at close).
MAX_TOKENS: Final = 10_000_000
#: Cap on every id-like string (account, org, key, model, fingerprints, ...).
MAX_ID_CHARS: Final = 256
#: User agents are free text and legitimately longer than ids.
MAX_USER_AGENT_CHARS: Final = 1024
#: Deepest JSON nesting accepted anywhere in a payload (an event itself is 1 level deep).
MAX_DEPTH: Final = 32
# Ranges of the optional numbers: what a real gateway can report, nothing more.
_ASN_MAX: Final = 2**32 - 1
_STATUS_MIN, _STATUS_MAX = 100, 599
_TURN_MAX: Final = 1_000_000
_LATENCY_MAX_MS: Final = 86_400_000.0  # one day
_EPOCH_MAX: Final = float(2**32)  # account creation before 2106

Reason = Literal[
    "too_large",
    "null_value",
    "bad_encoding",
    "not_json",
    "too_deep",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_tokens",
    "bad_ts",
    "out_of_range",
    "internal_error",
]
#: Every reason a payload can be rejected for; metrics pre-create one series per reason.
#: ``internal_error`` is a bug in validation or later per-event work, never a verdict on the
#: input: the record is dead-lettered so the worker goes on, and the bug is visible.
REASONS: Final[tuple[str, ...]] = (
    "too_large",
    "null_value",
    "bad_encoding",
    "not_json",
    "too_deep",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_tokens",
    "bad_ts",
    "out_of_range",
    "internal_error",
)

if msgspec is not None:
    # Bounds the msgspec decoder checks in C; the checked path enforces the same ones.
    _M = msgspec.Meta
    _AccountId = Annotated[str, _M(min_length=1, max_length=MAX_ID_CHARS)]
    _Id = Annotated[str, _M(max_length=MAX_ID_CHARS)]
    _UserAgent = Annotated[str, _M(max_length=MAX_USER_AGENT_CHARS)]
    _Tokens = Annotated[int, _M(ge=0)]
    _Asn = Annotated[int, _M(ge=0, le=_ASN_MAX)]
    _Status = Annotated[int, _M(ge=_STATUS_MIN, le=_STATUS_MAX)]
    _Turn = Annotated[int, _M(ge=0, le=_TURN_MAX)]
    _Latency = Annotated[float, _M(ge=0.0, le=_LATENCY_MAX_MS)]
    _Epoch = Annotated[float, _M(ge=0.0, le=_EPOCH_MAX)]
else:  # pragma: no cover
    _AccountId = _Id = _UserAgent = str
    _Tokens = _Asn = _Status = _Turn = int
    _Latency = _Epoch = float


class InvalidEvent(ValueError):
    """A payload that is not a valid request event.

    ``reason`` is one of :data:`REASONS`; ``field`` names the offending field when there is one.
    """

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


@dataclass(slots=True)
class Event:
    """One API request, as the gateway reports it. Field meanings: README "Event schema"."""

    # The annotations carry the value bounds for the msgspec decoder; to Python they are
    # plain str / int / float.
    account_id: _AccountId
    ts: float
    model: _Id
    input_tokens: _Tokens
    output_tokens: _Tokens
    event_id: _Id | None = None
    org_id: _Id | None = None
    api_key_id: _Id | None = None
    ip: _Id | None = None
    asn: _Asn | None = None
    country: _Id | None = None
    user_agent: _UserAgent | None = None
    payment_fingerprint: _Id | None = None
    account_created_ts: _Epoch | None = None
    tier: _Id | None = None
    status: _Status | None = None
    stop_reason: _Id | None = None
    latency_ms: _Latency | None = None
    conversation_id: _Id | None = None
    turn: _Turn | None = None
    system_prompt_fingerprint: _Id | None = None
    prompt_fingerprint: _Id | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, without the fields that are ``None``."""
        return {f: v for f in _FIELD_NAMES if (v := getattr(self, f)) is not None}


_FIELD_NAMES: Final = tuple(f.name for f in fields(Event))
_REQUIRED: Final = ("account_id", "ts", "model", "input_tokens", "output_tokens")
_STR_FIELDS: Final = (
    "event_id",
    "org_id",
    "api_key_id",
    "ip",
    "country",
    "user_agent",
    "payment_fingerprint",
    "tier",
    "stop_reason",
    "conversation_id",
    "system_prompt_fingerprint",
    "prompt_fingerprint",
)
_INT_FIELDS: Final = ("asn", "status", "turn")
_FLOAT_FIELDS: Final = ("account_created_ts", "latency_ms")
# Inclusive bounds of the optional numbers and the longest string of each string field.
_RANGES: Final[dict[str, tuple[float, float]]] = {
    "asn": (0, _ASN_MAX),
    "status": (_STATUS_MIN, _STATUS_MAX),
    "turn": (0, _TURN_MAX),
    "account_created_ts": (0.0, _EPOCH_MAX),
    "latency_ms": (0.0, _LATENCY_MAX_MS),
}
_MAX_CHARS: Final[dict[str, int]] = {
    name: MAX_USER_AGENT_CHARS if name == "user_agent" else MAX_ID_CHARS
    for name in ("account_id", "model", *_STR_FIELDS)
}


def _short(v: object) -> str:
    """A bounded description of a bad value for an error message.

    Containers are described, not printed: ``repr`` of a deeply nested list recurses, and a
    60 KB string would be echoed into every log line and DLQ message that quotes the error.
    """
    if isinstance(v, dict | list):
        return f"<{type(v).__name__} of {len(v)}>"
    r = repr(v)  # quotes and escapes control characters in strings
    return r if len(r) <= 80 else f"{r[:80]}...({len(r)} chars)"


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _token_count(obj: dict[str, Any], name: str, max_tokens: int) -> int:
    v = obj[name]
    if isinstance(v, bool) or not _is_number(v):
        raise InvalidEvent("wrong_type", f"{name} must be an integer, got {_short(v)}", name)
    if isinstance(v, float) and not v.is_integer():  # NaN and inf included
        raise InvalidEvent("bad_tokens", f"{name} must be a whole number, got {v!r}", name)
    if v < 0:
        raise InvalidEvent("bad_tokens", f"{name} must be >= 0, got {v!r}", name)
    if v > max_tokens:
        raise InvalidEvent("out_of_range", f"{name} {v!r} is above the limit {max_tokens}", name)
    return int(v)


def _check_chars(name: str, v: str) -> None:
    limit = _MAX_CHARS[name]
    if len(v) > limit:
        raise InvalidEvent(
            "out_of_range", f"{name} is {len(v)} characters, limit {limit}", name
        )


def _check_range(name: str, v: float) -> None:
    lo, hi = _RANGES[name]
    if not lo <= v <= hi:
        raise InvalidEvent("out_of_range", f"{name} {v!r} is outside [{lo}, {hi}]", name)


_NONE = type(None)
_STR_TYPES: Final = frozenset({str, _NONE})
# ``type(x) is int`` is False for bools, which must be rejected.
_INT_TYPES: Final = frozenset({int, _NONE})
_NUM_TYPES: Final = frozenset({int, float, _NONE})


def _fast_event(obj: dict[str, Any], now: float, max_future_s: float, max_past_s: float,
                max_tokens: int = MAX_TOKENS) -> Event | None:
    """The common case in one pass: every field has exactly the expected type and range.

    Returns ``None`` for anything unusual (a bad value, a whole-number float where an int
    belongs, a str subclass, ...); the caller then runs :func:`_checked_event`, which either
    builds the same event or raises the precise :class:`InvalidEvent`. Types are checked by
    comparing sets of ``type(v)`` against allowed sets: one C-level subset test per group
    instead of a Python call per field, which is most of the cost of validation.
    """
    g = obj.get
    account_id = g("account_id")
    ts = g("ts")
    model = g("model")
    input_tokens = g("input_tokens")
    output_tokens = g("output_tokens")
    tt = type(ts)
    if not (
        type(account_id) is str
        and account_id
        and type(model) is str
        and (tt is float or tt is int)
        and type(input_tokens) is int
        and type(output_tokens) is int
        and 0 <= input_tokens <= max_tokens
        and 0 <= output_tokens <= max_tokens
    ):
        return None
    try:
        ts = float(ts)
    except OverflowError:  # an int beyond any float: the checked path names it
        return None
    # NaN fails both comparisons; inf passes them only when a bound is infinite (replay).
    if not (now - max_past_s <= ts <= now + max_future_s and ts - ts == 0.0):
        return None
    event_id = g("event_id")
    org_id = g("org_id")
    api_key_id = g("api_key_id")
    ip = g("ip")
    country = g("country")
    user_agent = g("user_agent")
    payment_fingerprint = g("payment_fingerprint")
    tier = g("tier")
    stop_reason = g("stop_reason")
    conversation_id = g("conversation_id")
    system_prompt_fingerprint = g("system_prompt_fingerprint")
    prompt_fingerprint = g("prompt_fingerprint")
    asn = g("asn")
    status = g("status")
    turn = g("turn")
    created = g("account_created_ts")
    latency_ms = g("latency_ms")
    if not (
        {
            type(event_id),
            type(org_id),
            type(api_key_id),
            type(ip),
            type(country),
            type(user_agent),
            type(payment_fingerprint),
            type(tier),
            type(stop_reason),
            type(conversation_id),
            type(system_prompt_fingerprint),
            type(prompt_fingerprint),
        }
        <= _STR_TYPES
        and {type(asn), type(status), type(turn)} <= _INT_TYPES
        and {type(created), type(latency_ms)} <= _NUM_TYPES
    ):
        return None
    # Only the msgspec-less or unusual payloads get here: clarity over speed for the bounds.
    for name, v in (("account_id", account_id), ("model", model), ("user_agent", user_agent),
                    ("event_id", event_id), ("org_id", org_id), ("api_key_id", api_key_id),
                    ("ip", ip), ("country", country),
                    ("payment_fingerprint", payment_fingerprint), ("tier", tier),
                    ("stop_reason", stop_reason), ("conversation_id", conversation_id),
                    ("system_prompt_fingerprint", system_prompt_fingerprint),
                    ("prompt_fingerprint", prompt_fingerprint)):
        if v is not None and len(v) > _MAX_CHARS[name]:
            return None
    for name, v in (("asn", asn), ("status", status), ("turn", turn),
                    ("account_created_ts", created), ("latency_ms", latency_ms)):
        if v is not None:
            lo, hi = _RANGES[name]
            if not lo <= v <= hi:  # NaN fails too
                return None
    if created is not None:
        created = float(created)
    if latency_ms is not None:
        latency_ms = float(latency_ms)
    return Event(
        account_id,
        ts,
        model,
        input_tokens,
        output_tokens,
        event_id,
        org_id,
        api_key_id,
        ip,
        asn,
        country,
        user_agent,
        payment_fingerprint,
        created,
        tier,
        status,
        stop_reason,
        latency_ms,
        conversation_id,
        turn,
        system_prompt_fingerprint,
        prompt_fingerprint,
    )


def event_from_dict(
    obj: Any,
    *,
    now: float,
    max_future_s: float = 300.0,
    max_past_s: float = 400 * 86400.0,
    max_tokens: int = MAX_TOKENS,
) -> Event:
    """Validate a decoded JSON value and build an :class:`Event`.

    Parameters
    ----------
    obj
        The decoded payload.
    now
        Reference time (seconds since the epoch) for the ``ts`` plausibility check.
    max_future_s, max_past_s
        How far ``ts`` may lie after or before ``now``. Replays of old files pass a large
        ``max_past_s``; the live worker keeps it tight so clock bugs surface.
    max_tokens
        Largest ``input_tokens`` / ``output_tokens`` of one request.
    """
    if type(obj) is dict:
        ev = _fast_event(obj, now, max_future_s, max_past_s, max_tokens)
        if ev is not None:
            return ev
    return _checked_event(obj, now, max_future_s, max_past_s, max_tokens)


def _checked_event(obj: Any, now: float, max_future_s: float, max_past_s: float,
                   max_tokens: int = MAX_TOKENS) -> Event:
    """Field-by-field validation: builds the event or raises the precise error."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"event must be a JSON object, got {type(obj).__name__}")
    for name in _REQUIRED:
        if obj.get(name) is None:
            raise InvalidEvent("missing_field", f"required field {name} is missing", name)
    account_id = obj["account_id"]
    if not isinstance(account_id, str) or not account_id:
        raise InvalidEvent("wrong_type", "account_id must be a non-empty string", "account_id")
    _check_chars("account_id", account_id)
    model = obj["model"]
    if not isinstance(model, str):
        raise InvalidEvent("wrong_type", f"model must be a string, got {_short(model)}", "model")
    _check_chars("model", model)
    ts = obj["ts"]
    if not _is_number(ts):
        raise InvalidEvent(
            "wrong_type", f"ts must be a number (epoch seconds), got {_short(ts)}", "ts"
        )
    try:
        ts = float(ts)
    except OverflowError:  # an integer beyond any float
        raise InvalidEvent("bad_ts", "ts is beyond the range of a float", "ts") from None
    if not math.isfinite(ts):
        raise InvalidEvent("bad_ts", f"ts must be finite, got {ts!r}", "ts")
    if ts > now + max_future_s:
        raise InvalidEvent("bad_ts", f"ts {ts} is more than {max_future_s}s in the future", "ts")
    if ts < now - max_past_s:
        raise InvalidEvent("bad_ts", f"ts {ts} is more than {max_past_s}s in the past", "ts")
    ev = Event(
        account_id=account_id,
        ts=ts,
        model=model,
        input_tokens=_token_count(obj, "input_tokens", max_tokens),
        output_tokens=_token_count(obj, "output_tokens", max_tokens),
    )
    for name in _STR_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not isinstance(v, str):
                raise InvalidEvent("wrong_type", f"{name} must be a string, got {_short(v)}", name)
            _check_chars(name, v)
            setattr(ev, name, v)
    for name in _INT_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not _is_number(v) or (isinstance(v, float) and not v.is_integer()):
                raise InvalidEvent("wrong_type", f"{name} must be an integer, got {_short(v)}",
                                   name)
            _check_range(name, v)
            setattr(ev, name, int(v))
    for name in _FLOAT_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not _is_number(v):
                raise InvalidEvent("wrong_type", f"{name} must be a finite number, got "
                                   f"{_short(v)}", name)
            try:
                f = float(v)
            except OverflowError:  # an int beyond any float
                raise InvalidEvent("out_of_range", f"{name} is beyond any float", name) from None
            if not math.isfinite(f):
                raise InvalidEvent("wrong_type", f"{name} must be a finite number, got "
                                   f"{_short(v)}", name)
            _check_range(name, f)
            setattr(ev, name, f)
    return ev


_decode = msgspec.json.Decoder(Event).decode if msgspec is not None else None

# A JSON string, unrolled so the match is linear (only run on text orjson already accepted).
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Delete everything but brackets; then fold {} into [] so one replace pass strips one level.
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_FOLD_BRACES: Final = bytes.maketrans(b"{}", b"[]")


def _nesting_exceeds(payload: bytes, limit: int) -> bool:
    """Whether the valid JSON text ``payload`` nests deeper than ``limit`` levels.

    Iterative on purpose: walking the decoded value recursively is what made the decoder
    raise RecursionError. Each pass deletes every innermost ``[]`` (one level), so at most
    ``limit`` linear passes, all in C.

    >>> _nesting_exceeds(b'{"a": [[1]], "b": "[[[[["}', 3)
    False
    >>> _nesting_exceeds(b'{"a": [[[1]]]}', 3)
    True
    """
    s = _JSON_STRING.sub(b"", payload).translate(_FOLD_BRACES, _NOT_BRACKETS)
    for _ in range(limit):
        if not s:
            return False
        s = s.replace(b"[]", b"")
    return bool(s)


def parse_event(
    payload: bytes | None,
    *,
    now: float,
    max_future_s: float = 300.0,
    max_past_s: float = 400 * 86400.0,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_tokens: int = MAX_TOKENS,
) -> Event:
    """Parse raw bytes from the ``requests`` topic into an :class:`Event`.

    Raises :class:`InvalidEvent` (and nothing else) on any input, ``None`` (a Kafka record
    without a value) included. An unexpected exception inside validation is a bug; it is
    still turned into ``internal_error`` so one record can never stop a worker.
    """
    try:
        return _parse(payload, now, max_future_s, max_past_s, max_bytes, max_tokens)
    except InvalidEvent:
        raise
    except Exception as err:  # a bug, not a verdict on the input: see the docstring
        raise InvalidEvent(
            "internal_error", f"validation failed with {type(err).__name__}"
        ) from None


def _parse(
    payload: bytes | None,
    now: float,
    max_future_s: float,
    max_past_s: float,
    max_bytes: int,
    max_tokens: int,
) -> Event:
    if payload is None:
        raise InvalidEvent("null_value", "record has no value (a tombstone or a producer bug)")
    if type(payload) is not bytes:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidEvent("not_json", f"payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
    if len(payload) > max_bytes:
        raise InvalidEvent("too_large", f"payload is {len(payload)} bytes, limit {max_bytes}")
    # JSON is UTF-8; msgspec skips unknown fields without decoding them and raises
    # UnicodeDecodeError (not a DecodeError) on a bad known field, so check all bytes first.
    if not payload.isascii():
        try:
            payload.decode()
        except UnicodeDecodeError as err:
            raise InvalidEvent(
                "bad_encoding", f"payload is not valid UTF-8 (byte {err.start})"
            ) from None
    # Fewer brackets than the limit cannot nest deeper than it: the exact check (and the
    # orjson path) only for payloads with many; msgspec recurses and raises RecursionError.
    # A usual event has no "[" and only its own "{": two memchr scans, no count.
    many_brackets = (payload.find(b"[") >= 0 or payload.find(b"{", 1) >= 0) and (
        payload.count(b"[") + payload.count(b"{") > MAX_DEPTH
    )
    if _decode is not None and not many_brackets:
        try:
            ev = _decode(payload)
        except Exception:
            pass  # the checked path below says precisely what is wrong
        else:
            # The decoder checked every type and the fixed bounds in Event's annotations (no
            # bools for numbers, ints widened to float); the bounds given per call remain.
            ts = ev.ts
            if (
                ev.input_tokens <= max_tokens
                and ev.output_tokens <= max_tokens
                and now - max_past_s <= ts <= now + max_future_s
                and ts - ts == 0.0
            ):
                return ev
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        if str(err).startswith("depth limit exceeded"):
            raise InvalidEvent("too_deep", f"payload nests deeper than {MAX_DEPTH}") from None
        raise InvalidEvent("not_json", f"payload is not valid JSON: {err}") from None
    if many_brackets and _nesting_exceeds(payload, MAX_DEPTH):
        raise InvalidEvent("too_deep", f"payload nests deeper than {MAX_DEPTH} levels")
    if type(obj) is dict:
        ev = _fast_event(obj, now, max_future_s, max_past_s, max_tokens)
        if ev is not None:
            return ev
    return _checked_event(obj, now, max_future_s, max_past_s, max_tokens)
