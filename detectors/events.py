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
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

import orjson

try:  # Optional accelerator: decodes and type-checks straight into Event, in C.
    import msgspec
except ImportError:  # pragma: no cover - the orjson path below gives the same events
    msgspec = None

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "REASONS",
    "Event",
    "InvalidEvent",
    "event_from_dict",
    "parse_event",
]

MAX_PAYLOAD_BYTES: Final = 64 * 1024

Reason = Literal[
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_tokens",
    "bad_ts",
]
#: Every reason a payload can be rejected for; metrics pre-create one series per reason.
REASONS: Final[tuple[str, ...]] = (
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_tokens",
    "bad_ts",
)


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

    account_id: str
    ts: float
    model: str
    input_tokens: int
    output_tokens: int
    event_id: str | None = None
    org_id: str | None = None
    api_key_id: str | None = None
    ip: str | None = None
    asn: int | None = None
    country: str | None = None
    user_agent: str | None = None
    payment_fingerprint: str | None = None
    account_created_ts: float | None = None
    tier: str | None = None
    status: int | None = None
    stop_reason: str | None = None
    latency_ms: float | None = None
    conversation_id: str | None = None
    turn: int | None = None
    system_prompt_fingerprint: str | None = None
    prompt_fingerprint: str | None = None

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


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _token_count(obj: dict[str, Any], name: str) -> int:
    v = obj[name]
    if isinstance(v, bool) or not _is_number(v):
        raise InvalidEvent("wrong_type", f"{name} must be an integer, got {v!r}", name)
    if isinstance(v, float):
        if not v.is_integer():
            raise InvalidEvent("bad_tokens", f"{name} must be a whole number, got {v!r}", name)
        v = int(v)
    if v < 0:
        raise InvalidEvent("bad_tokens", f"{name} must be >= 0, got {v!r}", name)
    return v


_NONE = type(None)
_STR_TYPES: Final = frozenset({str, _NONE})
# ``type(x) is int`` is False for bools, which must be rejected.
_INT_TYPES: Final = frozenset({int, _NONE})
_NUM_TYPES: Final = frozenset({int, float, _NONE})


def _fast_event(obj: dict[str, Any], now: float, max_future_s: float, max_past_s: float
                ) -> Event | None:
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
        and input_tokens >= 0
        and output_tokens >= 0
    ):
        return None
    ts = float(ts)
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
    if created is not None:
        created = float(created)
        if created - created != 0.0:  # inf or NaN
            return None
    if latency_ms is not None:
        latency_ms = float(latency_ms)
        if latency_ms - latency_ms != 0.0:
            return None
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
    """
    if type(obj) is dict:
        ev = _fast_event(obj, now, max_future_s, max_past_s)
        if ev is not None:
            return ev
    return _checked_event(obj, now, max_future_s, max_past_s)


def _checked_event(obj: Any, now: float, max_future_s: float, max_past_s: float) -> Event:
    """Field-by-field validation: builds the event or raises the precise error."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"event must be a JSON object, got {type(obj).__name__}")
    for name in _REQUIRED:
        if obj.get(name) is None:
            raise InvalidEvent("missing_field", f"required field {name} is missing", name)
    account_id = obj["account_id"]
    if not isinstance(account_id, str) or not account_id:
        raise InvalidEvent("wrong_type", "account_id must be a non-empty string", "account_id")
    model = obj["model"]
    if not isinstance(model, str):
        raise InvalidEvent("wrong_type", f"model must be a string, got {model!r}", "model")
    ts = obj["ts"]
    if not _is_number(ts):
        raise InvalidEvent("wrong_type", f"ts must be a number (epoch seconds), got {ts!r}", "ts")
    ts = float(ts)
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
        input_tokens=_token_count(obj, "input_tokens"),
        output_tokens=_token_count(obj, "output_tokens"),
    )
    for name in _STR_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not isinstance(v, str):
                raise InvalidEvent("wrong_type", f"{name} must be a string, got {v!r}", name)
            setattr(ev, name, v)
    for name in _INT_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not _is_number(v) or (isinstance(v, float) and not v.is_integer()):
                raise InvalidEvent("wrong_type", f"{name} must be an integer, got {v!r}", name)
            setattr(ev, name, int(v))
    for name in _FLOAT_FIELDS:
        v = obj.get(name)
        if v is not None:
            if not _is_number(v) or not math.isfinite(v):
                raise InvalidEvent("wrong_type", f"{name} must be a finite number, got {v!r}", name)
            setattr(ev, name, float(v))
    return ev


if msgspec is not None:
    _decode = msgspec.json.Decoder(Event).decode
    _DecodeErrors: tuple[type[Exception], ...] = (msgspec.DecodeError,)
else:  # pragma: no cover
    _decode = None
    _DecodeErrors = ()


def parse_event(
    payload: bytes,
    *,
    now: float,
    max_future_s: float = 300.0,
    max_past_s: float = 400 * 86400.0,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Event:
    """Parse raw bytes from the ``requests`` topic into an :class:`Event`.

    Raises :class:`InvalidEvent` (and nothing else) on any bad input.
    """
    if len(payload) > max_bytes:
        raise InvalidEvent("too_large", f"payload is {len(payload)} bytes, limit {max_bytes}")
    if _decode is not None:
        try:
            ev = _decode(payload)
        except _DecodeErrors:
            pass  # the checked path below says precisely what is wrong
        else:
            # The decoder checked every type (no bools for numbers, ints for int fields,
            # ints widened to float); the value rules remain.
            ts = ev.ts
            created = ev.account_created_ts
            latency = ev.latency_ms
            if (
                ev.account_id
                and ev.input_tokens >= 0
                and ev.output_tokens >= 0
                and now - max_past_s <= ts <= now + max_future_s
                and ts - ts == 0.0
                and (created is None or created - created == 0.0)
                and (latency is None or latency - latency == 0.0)
            ):
                return ev
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise InvalidEvent("not_json", f"payload is not valid JSON: {err}") from None
    if type(obj) is dict:
        ev = _fast_event(obj, now, max_future_s, max_past_s)
        if ev is not None:
            return ev
    return _checked_event(obj, now, max_future_s, max_past_s)
