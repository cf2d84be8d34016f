"""Per-account baselines: is this window unusual for this account's own history, and what
kind of client is this account (its long-run profile)?

All of an account's state is one ``array('d')`` of :data:`STATE_SIZE` floats (the
:class:`AccountBaseline` object is that array: 496 bytes in memory with its header and
two slots; 361 bytes saved): two :mod:`~detectors.rate` series (requests and output tokens per
active window, on a log scale), the timing of its requests across windows, and slow
exponentially weighted shares that describe it (single-turn, ``max_tokens`` stops, output
length), plus running totals. A new account starts from its cohort's prior (the
population's median and spread), so it is judged from its first window.

Examples
--------
>>> b = AccountBaseline(grace_period=3, threshold=4.0)
>>> for _ in range(5):
...     b.learn_one({"requests": 10.0, "output_tokens": 5000.0})
>>> b.score_one({"requests": 10.0, "output_tokens": 5000.0})
0.0
>>> b.score_one({"requests": 200.0, "output_tokens": 100000.0}) > 4.0
True
>>> round(b.baseline()["requests"], 1)
10.0
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from functools import lru_cache
from typing import Any, Final

from detectors.ramp import STATE_SIZE as RAMP_SIZE
from detectors.ramp import ramp_observe, ramp_stats, ramp_valid
from detectors.rate import OLD_LEVEL, RateParams, rate_learn, rate_z
from detectors.rate import STATE_SIZE as RATE_SIZE

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "STATE_SIZE",
    "AccountBaseline",
    "StateFormatError",
    "account_params",
]

# Layout of the state array.
_REQ: Final = 0
_OUT: Final = RATE_SIZE
_P: Final = 2 * RATE_SIZE
(
    _WINDOWS,
    _LAST_TS,
    _GAP_N,
    _GAP_MEAN,
    _GAP_VAR,
    _SINGLE,
    _MAXTOK,
    _LOG_OUT,
    _TOTAL_REQ,
    _TOTAL_OUT,
    _CREATED,
    _FIRST_SEEN,
    _HOUR_REQ,
    _DAY_OUT,
    _LAST_FLAG,
    _STREAK,
    _HARVEST_H,
    _HARVEST_BASE,
    _SINGLE_SLOW,
) = range(_P, _P + 19)
# The account_ramp run (detectors/ramp.py).
_RAMP: Final = _P + 19
STATE_SIZE: Final = _RAMP + RAMP_SIZE

#: Version byte that starts every saved baseline. Layout (little-endian, no padding):
#: version ``B``, grace period ``I``, threshold ``d``, array length ``I`` (:data:`HEADER`),
#: then the state array as that many float64. Bump it when the layout or the meaning of a
#: slot changes; a blob of an unknown version is then rejected and the account relearns
#: from its cohort. (Pickle, the format before version 1, starts with 0x80 and is rejected
#: the same way.) Version 2 appended the ``account_ramp`` run (7 floats, validated on
#: decode); a version-1 blob is still read, with an empty run, so an upgrade keeps every
#: account's history.
FORMAT_VERSION: Final = 2
#: Array length per readable version: version 1 lacked the ramp run.
_SIZES: Final = {1: _RAMP, FORMAT_VERSION: STATE_SIZE}
HEADER: Final = struct.Struct("<BIdI")
#: Largest grace period a saved baseline may claim (the configuration allows 1..1000).
MAX_GRACE: Final = 100_000
_BIG_ENDIAN: Final = sys.byteorder == "big"
#: A zero state array: new ones are slices of it, allocated at their exact size.
_ZEROS: Final = array("d", [0.0]) * STATE_SIZE


class StateFormatError(ValueError):
    """A saved baseline that is not in the current format: wrong version, size or values.
    The state store counts and skips such records; the account relearns."""


_SIGNALS: Final = ("requests", "output_tokens")
_HOUR: Final = 3600.0
_DAY: Final = 86400.0


@lru_cache(maxsize=64)
def account_params(grace_period: int, min_std: float = 0.35) -> RateParams:
    """Rate parameters for log-scale per-window counts; shared by every account (cached)."""
    # log1p scale: a 0.35 floor is a ~1.4x change; one-sided: only rises are abuse.
    return RateParams(
        alpha=0.1,
        scale_alpha=0.05,
        slow_alpha=0.02,
        grace_period=grace_period,
        clip_z=4.0,
        shift_run=6,
        half_z=6.0,
        two_sided=False,
        min_std=min_std,
        rel_std=0.0,
        slow_weight=0.8,
    )


class AccountBaseline(array):
    """Online baseline and profile of one account, in one compact float array.

    The baseline *is* its state array (an ``array('d')`` of :data:`STATE_SIZE` floats with
    a few slots): one object per account, not an object and its array (40 B and one
    GC-tracked object less per account).

    Parameters
    ----------
    grace_period
        Active windows to learn before the account is scored against its own history
        (with a cohort prior it is scored against the prior from the first window).
    threshold
        Robust z at which a window is anomalous (used by :meth:`is_anomalous`).
    prior
        Optional cohort prior: ``{"requests": (median, std), "output_tokens": (...)}`` on
        the log1p scale, from :meth:`detectors.population.PopulationModel.prior`.
    account_id
        Whose baseline; kept as :attr:`account_id`, never saved.
    """

    # The rate parameters and the threshold are the configuration's, the same for nearly
    # every account: they live on a subclass per (grace period, threshold) (see
    # :func:`_configured`), not in three slots of every baseline (issue 16: 24 B each).
    __slots__ = ("account_id", "bucket")
    _p: RateParams
    _po: RateParams
    threshold: float

    def __new__(
        cls,
        grace_period: int = 5,
        threshold: float = 6.0,
        prior: dict[str, tuple[float, float]] | None = None,
        account_id: str | None = None,
    ) -> AccountBaseline:
        # Exactly STATE_SIZE zeros (array("d", bytes) over-allocates 40 B); __init__ fills
        # them in.
        return array.__new__(_configured(cls, grace_period, threshold), "d", _ZEROS)

    def __init__(
        self,
        grace_period: int = 5,
        threshold: float = 6.0,
        prior: dict[str, tuple[float, float]] | None = None,
        account_id: str | None = None,
    ) -> None:
        #: Whose baseline (not saved: the state store's key is the id). The pipeline hands
        #: this one string object to every detector, so an account's id is kept once, not
        #: once per window it was read from.
        self.account_id = account_id
        #: The pipeline's eviction bucket of the account's last activity (not saved).
        self.bucket: int | None = None
        s = self
        s[_CREATED] = math.nan
        s[_FIRST_SEEN] = math.nan
        s[_LAST_TS] = math.nan
        s[_LAST_FLAG] = -math.inf
        s[_REQ + OLD_LEVEL] = s[_OUT + OLD_LEVEL] = math.nan
        if prior:
            for off, name in ((_REQ, "requests"), (_OUT, "output_tokens")):
                if name in prior:
                    med, std = prior[name]
                    # Pretend the cohort's typical window was seen grace_period times.
                    s[off + 0] = float(grace_period)
                    s[off + 1] = s[off + 3] = s[off + 6] = med
                    s[off + 2] = s[off + 4] = std / 1.2533

    @property
    def _s(self) -> AccountBaseline:
        """The state array (the object itself; kept for callers that read it)."""
        return self

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # array's own would drop the slots: copy and pickle go through the saved form.
        return (_restore, (self.to_bytes(), self.account_id))

    def __copy__(self) -> AccountBaseline:
        return _restore(self.to_bytes(), self.account_id)

    def __deepcopy__(self, memo: Any) -> AccountBaseline:
        return _restore(self.to_bytes(), self.account_id)

    def __repr__(self) -> str:
        return (f"AccountBaseline(account_id={self.account_id!r}, windows={self.windows}, "
                f"threshold={self.threshold})")

    @property
    def grace_period(self) -> int:
        return self._p.grace_period

    # -- rate baselines ----------------------------------------------------------------------

    def learn_one(self, x: dict[str, Any]) -> None:
        """Learn the window's request count and output tokens."""
        s, p = self, self._p
        rate_learn_at(s, p, _REQ, math.log1p(x["requests"]))
        rate_learn_at(s, self._po, _OUT, math.log1p(x["output_tokens"]))

    def signal_scores(self, x: dict[str, Any], lift: float = 0.0) -> dict[str, float]:
        """Robust z of each signal (0 during warm-up). ``lift`` (log scale) is subtracted
        first: the population-wide rise of this window (a launch day lifts every account)."""
        s, p = self, self._p
        return {
            "requests": rate_z_at(s, p, _REQ, math.log1p(x["requests"]) - lift),
            "output_tokens": rate_z_at(
                s, self._po, _OUT, math.log1p(x["output_tokens"]) - lift
            ),
        }

    def log_scores(self, log_requests: float, log_output: float) -> tuple[float, float]:
        """Robust z of log1p(requests) and log1p(output tokens): the fast path of
        :meth:`signal_scores` for the pipeline."""
        s = self
        return rate_z(s, self._p, log_requests, _REQ), rate_z(s, self._po, log_output, _OUT)

    def learn_log(self, log_requests: float, log_output: float) -> None:
        """:meth:`learn_one` on values already on the log1p scale."""
        s = self
        rate_learn(s, self._p, log_requests, _REQ)
        rate_learn(s, self._po, log_output, _OUT)

    def score_one(self, x: dict[str, Any]) -> float:
        return max(self.signal_scores(x).values())

    def is_anomalous(self, x: dict[str, Any]) -> bool:
        return self.score_one(x) >= self.threshold

    def expected_log(self, signal: str) -> float:
        """The level (log1p scale) the baseline expects for ``signal``."""
        return self[(_REQ if signal == "requests" else _OUT) + 1]

    def seen(self, signal: str = "requests") -> int:
        return int(self[(_REQ if signal == "requests" else _OUT)])

    def baseline(self) -> dict[str, float]:
        """Current expected values in natural units, for evidence."""
        return {name: round(math.expm1(self.expected_log(name)), 3) for name in _SIGNALS}

    # -- profile -----------------------------------------------------------------------------

    def observe(
        self,
        first_ts: float,
        last_ts: float,
        requests: int,
        output_tokens: int,
        single_turn: float,
        max_tokens: float,
        created_ts: float | None,
        harvest_like: int = 0,
    ) -> None:
        """Fold one closed window into the long-run profile (timing, shares, totals)."""
        s = self
        if harvest_like or s[_HARVEST_H]:
            prev_ts = s[_LAST_TS]
            h = s[_HARVEST_H]
            if h and last_ts > prev_ts:
                h *= math.exp(-(last_ts - prev_ts) / _HOUR)
            # Slow memory of the account's usual harvest-like hour (~a day of active windows).
            s[_HARVEST_BASE] += 0.005 * (h - s[_HARVEST_BASE])
            s[_HARVEST_H] = h + harvest_like
        n = s[_WINDOWS] + 1.0
        s[_WINDOWS] = n
        prev = s[_LAST_TS]
        if n == 1.0:
            s[_FIRST_SEEN] = first_ts
            if created_ts is not None:
                s[_CREATED] = created_ts
            s[_HOUR_REQ] = requests
            s[_DAY_OUT] = output_tokens
            s[_LAST_TS] = last_ts
        else:
            gap = first_ts - prev
            if gap >= 1.0:
                # Gaps between windows on a log scale: a script that fires every hour has a
                # tiny spread, a human's sessions a spread of about 1 or more.
                g = math.log(gap)
                k = s[_GAP_N] + 1.0
                s[_GAP_N] = k
                a = 1.0 / k if k < 10.0 else 0.1
                d = g - s[_GAP_MEAN]
                s[_GAP_MEAN] += a * d
                s[_GAP_VAR] = (1 - a) * (s[_GAP_VAR] + a * d * d)
            # Leaky buckets: requests over about an hour, output tokens over about a day.
            dt = last_ts - prev
            if dt > 0.0:
                s[_HOUR_REQ] = s[_HOUR_REQ] * math.exp(-dt / _HOUR) + requests
                s[_DAY_OUT] = s[_DAY_OUT] * math.exp(-dt / _DAY) + output_tokens
                s[_LAST_TS] = last_ts
            else:
                s[_HOUR_REQ] += requests
                s[_DAY_OUT] += output_tokens
        a = 1.0 / n if n < 20.0 else 0.05
        s[_SINGLE] += a * (single_turn - s[_SINGLE])
        # The same share with a memory of ~200 active windows: what the customer used to be.
        s[_SINGLE_SLOW] += (a if n < 200.0 else 0.005) * (single_turn - s[_SINGLE_SLOW])
        s[_MAXTOK] += a * (max_tokens - s[_MAXTOK])
        if requests and output_tokens:
            s[_LOG_OUT] += a * (math.log1p(output_tokens / requests) - s[_LOG_OUT])
        s[_TOTAL_REQ] += requests
        s[_TOTAL_OUT] += output_tokens

    @property
    def windows(self) -> int:
        return int(self[_WINDOWS])

    def age_days(self, now: float) -> float:
        """Days since creation (NaN if the gateway never said)."""
        c = self[_CREATED]
        return math.nan if math.isnan(c) else max(0.0, (now - c) / _DAY)

    @property
    def timing_spread(self) -> float:
        """Standard deviation of log inter-window gaps; NaN before three gaps."""
        s = self
        return math.sqrt(max(s[_GAP_VAR], 0.0)) if s[_GAP_N] >= 3 else math.nan

    @property
    def last_ts(self) -> float:
        """Newest event time seen (NaN before the first window)."""
        return self[_LAST_TS]

    @property
    def hourly_requests(self) -> float:
        return self[_HOUR_REQ]

    def harvest_shift(self) -> tuple[float, float, float]:
        """(harvest-like requests over the last hour, the account's usual amount, Poisson z):
        an established account that starts producing long single-turn answers."""
        h, b = self[_HARVEST_H], self[_HARVEST_BASE]
        return h, b, (h - b) / math.sqrt(b + 1.0)

    @property
    def usual_single_turn_share(self) -> float:
        """Single-turn share with a long memory (~200 active windows)."""
        return self[_SINGLE_SLOW]

    @property
    def daily_output_tokens(self) -> float:
        return self[_DAY_OUT]

    @property
    def totals(self) -> tuple[float, float]:
        """(requests, output tokens) since first seen."""
        return self[_TOTAL_REQ], self[_TOTAL_OUT]

    def profile(self, now: float) -> dict[str, float]:
        """The long-run profile, for extraction-likeness and evidence."""
        s = self
        return {
            "single_turn_share": s[_SINGLE],
            "max_tokens_share": s[_MAXTOK],
            "output_per_request": math.expm1(s[_LOG_OUT]),
            "account_age_days": self.age_days(now),
            "timing_spread": self.timing_spread,
            "windows": s[_WINDOWS],
        }

    def extraction_likeness(self, now: float, young_days: float = 30.0) -> float:
        """How much the account's long-run profile looks like output harvesting, 0..1.

        Harvesting clients are single-turn; among those, long outputs, frequent
        ``max_tokens`` stops and a young account each add weight.
        """
        s = self
        if s[_SINGLE] < 0.8:
            return 0.0
        f_max = min(1.0, s[_MAXTOK] / 0.2)
        # 600 -> 0, 1800 -> 1 output tokens per request (log-linear).
        f_out = min(1.0, max(0.0, (s[_LOG_OUT] - 6.4) / 1.1))
        age = self.age_days(now)
        f_young = 1.0 if age == age and age < young_days else 0.0
        return 0.3 * f_max + 0.35 * f_out + 0.35 * f_young

    def observe_ramp(self, ts: float, harvest_like: int, max_gap_h: int) -> None:
        """Fold the window (first event at ``ts``) into the ``account_ramp`` run."""
        ramp_observe(self, _RAMP, ts, harvest_like, max_gap_h)

    def ramp_stats(self) -> tuple[float, float, float, float]:
        """(run hours, hours with harvest, harvest-like answers, trend z): detectors.ramp."""
        return ramp_stats(self, _RAMP)

    def streak(self, anomalous: bool) -> int:
        """Count consecutive anomalous windows (reset by a normal one); return the count."""
        s = self
        s[_STREAK] = s[_STREAK] + 1.0 if anomalous else 0.0
        return int(s[_STREAK])

    @property
    def last_flag(self) -> float:
        return self[_LAST_FLAG]

    @last_flag.setter
    def last_flag(self, ts: float) -> None:
        self[_LAST_FLAG] = ts

    def nbytes(self) -> int:
        """Bytes of this baseline (object, slots and the state array: one object)."""
        return sys.getsizeof(self)

    # -- durable form ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The baseline as a self-describing blob for the state store: plain numbers, never
        code (see :data:`FORMAT_VERSION` for the layout).

        Examples
        --------
        >>> b = AccountBaseline(grace_period=3, threshold=4.0)
        >>> b.learn_one({"requests": 10.0, "output_tokens": 5000.0})
        >>> blob = b.to_bytes()
        >>> blob[0], len(blob) == HEADER.size + 8 * STATE_SIZE
        (2, True)
        >>> AccountBaseline.from_bytes(blob).to_bytes() == blob
        True
        >>> AccountBaseline.from_bytes(b"\\x80\\x05junk")
        Traceback (most recent call last):
        ...
        detectors.baseline.StateFormatError: unknown state format version 0x80 (pickle from ...)
        """
        s = self
        if _BIG_ENDIAN:
            s = array("d", s)
            s.byteswap()
        head = HEADER.pack(FORMAT_VERSION, self._p.grace_period, self.threshold, len(s))
        return head + s.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> AccountBaseline:
        """Rebuild a baseline from :meth:`to_bytes`; raise :class:`StateFormatError` for
        anything else. Only numbers are read, so a forged record can at worst be rejected
        or restore odd numbers for one account, never run code."""
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise StateFormatError(f"state is {type(blob).__name__}, not bytes")
        n_bytes = len(blob)
        if n_bytes == 0:
            raise StateFormatError("empty state record")
        version = blob[0]
        if version not in _SIZES:
            hint = " (pickle from an older distillwatch? this account will relearn)"
            raise StateFormatError(
                f"unknown state format version 0x{version:02x}"
                + (hint if version == 0x80 else " (this account will relearn)")
            )
        if n_bytes < HEADER.size:
            raise StateFormatError(f"state record truncated: {n_bytes} bytes < header")
        _, grace, threshold, size = HEADER.unpack_from(blob)
        if size != _SIZES[version]:
            raise StateFormatError(
                f"state array has {size} floats, expected {_SIZES[version]} (version {version})"
            )
        if n_bytes != HEADER.size + 8 * size:
            raise StateFormatError(
                f"state record is {n_bytes} bytes, expected {HEADER.size + 8 * size}"
            )
        if not 1 <= grace <= MAX_GRACE:
            raise StateFormatError(f"grace period {grace} outside 1..{MAX_GRACE}")
        if not (math.isfinite(threshold) and threshold > 0.0):
            raise StateFormatError(f"threshold {threshold!r} is not a positive finite number")
        self = array.__new__(_configured(cls, grace, threshold), "d", _ZEROS)
        # A version-1 blob fills the slots before the ramp run; the run stays empty (zeros).
        memoryview(self).cast("B")[: 8 * size] = blob[HEADER.size :]
        if _BIG_ENDIAN:
            self.byteswap()
        if not ramp_valid(self, _RAMP):
            raise StateFormatError("ramp run state out of range")
        self.account_id = None
        self.bucket = None
        return self


@lru_cache(maxsize=256)
def _subclass(root: type[AccountBaseline], grace_period: int,
              threshold_bits: bytes) -> type[AccountBaseline]:
    (threshold,) = struct.unpack("<d", threshold_bits)
    return type(root.__name__, (root,), {
        "__slots__": (),
        "_root": root,
        "__module__": root.__module__,
        "__qualname__": root.__qualname__,
        "__doc__": f"{root.__name__} with grace period {grace_period} and threshold "
                   f"{threshold!r} (see _configured).",
        "_p": account_params(grace_period),
        # Output tokens per window swing more than counts (one long answer is 10x a short
        # one): a wider floor.
        "_po": account_params(grace_period, 0.7),
        "threshold": threshold,
    })


@lru_cache(maxsize=256)
def _configured(cls: type[AccountBaseline], grace_period: int,
                threshold: float) -> type[AccountBaseline]:
    """The subclass of ``cls``'s root baseline class that carries this configuration: one
    class per (grace period, threshold), shared by every account with it, so a baseline
    keeps only its id and eviction bucket in slots. A class outside the cache (forged
    blobs with many distinct configurations) lives as long as its baselines.

    >>> a, b = AccountBaseline(3, 4.0), AccountBaseline(grace_period=3, threshold=4.0)
    >>> type(a) is type(b) and isinstance(a, AccountBaseline), a.threshold, a.grace_period
    (True, 4.0, 3)
    >>> type(AccountBaseline(5, 4.0)) is type(a)
    False
    """
    # A configured subclass names its root: from_bytes on one configures the root anew.
    root = vars(cls).get("_root", cls)
    # Cached twice: here by the arguments (one lookup per new baseline), below by the
    # threshold's bits (as saved), where a NaN, which equals no key here, finds its class.
    return _subclass(root, int(grace_period), struct.pack("<d", threshold))


def _restore(blob: bytes, account_id: str | None) -> AccountBaseline:
    base = AccountBaseline.from_bytes(blob)
    base.account_id = account_id
    return base


def rate_learn_at(s: array[float], p: RateParams, off: int, x: float) -> None:
    """:func:`~detectors.rate.rate_learn` on the series stored at ``s[off:off+RATE_SIZE]``."""
    rate_learn(s, p, x, off)


def rate_z_at(s: array[float], p: RateParams, off: int, x: float) -> float:
    return rate_z(s, p, x, off)
