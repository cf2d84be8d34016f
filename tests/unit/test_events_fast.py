"""The fast parse paths (msgspec decode, one-pass dict check) must agree with the
field-by-field validation on every input: same event, or same reason and field."""

from __future__ import annotations

import math

import orjson
import pytest

from detectors import events
from detectors.events import InvalidEvent, event_from_dict, parse_event

NOW = 1_800_000_000.0

FULL = {
    "account_id": "a", "ts": NOW - 5, "model": "m", "input_tokens": 3, "output_tokens": 4,
    "event_id": "e1", "org_id": "o", "api_key_id": "k", "ip": "10.0.0.1", "asn": 64500,
    "country": "FR", "user_agent": "ua", "payment_fingerprint": "pf",
    "account_created_ts": int(NOW - 86400), "tier": "pro", "status": 200,
    "stop_reason": "max_tokens", "latency_ms": 12, "conversation_id": "c", "turn": 1,
    "system_prompt_fingerprint": "sp", "prompt_fingerprint": "0123456789abcdef",
}
VALUES = [None, True, False, 0, -1, 7, 7.0, 7.5, "x", "", [1], {"a": 1}, 1e300, NOW,
          NOW + 1e6]
_MISSING = object()


@pytest.fixture(autouse=True, params=["msgspec", "orjson"])
def decoder(request, monkeypatch):
    """Run every test with the msgspec decoder and with the orjson-only fallback."""
    if request.param == "orjson":
        monkeypatch.setattr(events, "_decode", None)
    elif events._decode is None:
        pytest.skip("msgspec not installed")
    return request.param


def _outcome(fn):
    try:
        ev = fn()
    except InvalidEvent as err:
        return ("error", err.reason, err.field)
    return ("ok", [(k, v, type(v)) for k, v in sorted(ev.to_dict().items())])


def _reference(payload: bytes, **kw):
    """The field-by-field path alone (after the byte-level UTF-8 check every path shares)."""
    try:
        payload.decode()
    except UnicodeDecodeError:
        return ("error", "bad_encoding", None)
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ("error", "not_json", None)
    return _outcome(lambda: events._checked_event(obj, NOW, kw.get("max_future_s", 300.0),
                                                  kw.get("max_past_s", 400 * 86400.0)))


def _variants():
    for name in FULL:
        yield name, _MISSING
        for v in VALUES:
            yield name, v


@pytest.mark.parametrize(("name", "value"), list(_variants()))
def test_parse_event_agrees_with_checked_path(name, value):
    obj = dict(FULL)
    if value is _MISSING:
        del obj[name]
    else:
        obj[name] = value
    payload = orjson.dumps(obj)
    assert _outcome(lambda: parse_event(payload, now=NOW)) == _reference(payload)
    assert _outcome(lambda: event_from_dict(orjson.loads(payload), now=NOW)) == _reference(
        payload
    )


@pytest.mark.parametrize("payload", [b"[1]", b'"s"', b"{", b"\xff", b"null", b"{}",
                                     b'{"account_id":"a","ts":1e400,"model":"m",'
                                     b'"input_tokens":1,"output_tokens":1}'])
def test_odd_documents_agree(payload):
    kw = {"max_future_s": math.inf, "max_past_s": math.inf}
    assert _outcome(lambda: parse_event(payload, now=NOW, **kw)) == _reference(payload, **kw)


@pytest.mark.parametrize("name", ["ts", "account_created_ts", "latency_ms"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_take_the_checked_path(name, value):
    obj = dict(FULL, **{name: value})
    kw = {"now": NOW, "max_future_s": math.inf, "max_past_s": math.inf}
    with pytest.raises(InvalidEvent) as exc:
        event_from_dict(obj, **kw)
    assert exc.value.field == name


def test_infinite_bounds_accept_any_finite_time():
    ev = parse_event(orjson.dumps(dict(FULL, ts=12.5)), now=NOW, max_future_s=math.inf,
                     max_past_s=math.inf)
    assert ev.ts == 12.5 and isinstance(ev.account_created_ts, float)
