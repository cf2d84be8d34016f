"""The simulator's shared tables: accounts, networks, user agents, system prompts, and the
column batch every population appends to. Events refer to table rows by index, so
populations stay vectorised and strings are rendered once, when the file is written."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["STOP_REASONS", "Batch", "Tables", "hex_ids"]

#: Index -> stop_reason; -1 in a batch means "no stop_reason" (failed request).
STOP_REASONS = ("end_turn", "max_tokens", "tool_use")
END_TURN, MAX_TOKENS, TOOL_USE = 0, 1, 2

# ASNs by kind. Residential/mobile access networks and cloud / hosting providers; numbers are
# the public ASNs of those networks, used only to look familiar.
RESIDENTIAL_ASNS = (7922, 7018, 701, 20115, 22773, 3320, 5089, 3215, 12322, 4134, 4837,
                    9808, 17676, 4766, 9829, 45609, 55836, 28573, 8151, 6830)
CLOUD_ASNS = (16509, 15169, 8075, 14061, 24940, 16276, 45102, 132203, 63949, 20473)
COUNTRY_BY_TZ = {-8.0: "US", -5.0: "US", 0.0: "GB", 1.0: "DE", 8.0: "CN", 5.5: "IN"}
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "CN", "JP", "SG", "CA", "NL", "KR")
HUMAN_UAS = (
    "python-httpx/0.27.0", "OpenAI/Python 1.54.3", "anthropic-python/0.39.0",
    "node-fetch/3.3.2", "axios/1.7.7", "curl/8.5.0", "Go-http-client/2.0",
    "langchain/0.3.7 python-httpx/0.27.0", "llama-index/0.11 python-requests/2.32",
    "Mozilla/5.0 (Macintosh) Chat/2.4", "Mozilla/5.0 (Windows NT 10.0) Chat/2.4",
    "okhttp/4.12.0", "python-requests/2.32.3", "Java-http-client/21", "ruby/3.3 faraday/2.9",
    "dotnet/8.0 HttpClient", "php-guzzle/7.9", "rust-reqwest/0.12",
)


def hex_ids(rng: np.random.Generator, n: int, nbits: int = 48) -> np.ndarray:
    """``n`` distinct random integers below ``2**nbits`` (redrawn in the rare collision)."""
    while True:
        v = rng.integers(0, 1 << nbits, size=n, dtype=np.int64)
        if len(np.unique(v)) == n:
            return v


@dataclass
class Batch:
    """Events of one population, column by column (all arrays the same length)."""

    ts: np.ndarray  # float64 epoch seconds
    acct: np.ndarray  # int64 row in Tables.accounts
    model: np.ndarray  # int64 index into the scenario's models
    inp: np.ndarray
    out: np.ndarray
    status: np.ndarray
    stop: np.ndarray  # index into STOP_REASONS, -1 none
    latency: np.ndarray
    conv: np.ndarray  # conversation number, -1 none
    turn: np.ndarray  # 0 none
    sysfp: np.ndarray  # row in Tables.sysfps, -1 none
    pfp: np.ndarray  # uint64 prompt fingerprint
    net: np.ndarray  # row in Tables.nets
    ua: np.ndarray  # row in Tables.uas
    key: np.ndarray  # api key number of the account

    COLUMNS = ("ts", "acct", "model", "inp", "out", "status", "stop", "latency", "conv",
               "turn", "sysfp", "pfp", "net", "ua", "key")
    # Narrow types: sorting and gathering millions of rows is memory-bound.
    DTYPES = {"ts": np.float64, "acct": np.int32, "model": np.int16, "inp": np.int32,
              "out": np.int32, "status": np.int16, "stop": np.int8, "latency": np.int32,
              "conv": np.int32, "turn": np.int16, "sysfp": np.int32, "pfp": np.uint64,
              "net": np.int32, "ua": np.int32, "key": np.int8}

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls(**{c: np.zeros(0, dtype=cls.DTYPES[c]) for c in cls.COLUMNS})
        return cls(**{c: np.concatenate([getattr(b, c) for b in batches]) for c in cls.COLUMNS})

    def slice(self, lo: int, hi: int) -> Batch:
        """Rows ``lo:hi`` as views (no copy)."""
        return Batch(**{c: getattr(self, c)[lo:hi] for c in self.COLUMNS})

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(**{c: getattr(self, c)[idx] for c in self.COLUMNS})


@dataclass
class Tables:
    """Rows that events point at. Account labels live here and never reach an event."""

    account_key: list[int] = field(default_factory=list)  # random id number
    org: list[int] = field(default_factory=list)  # -1: own org
    payment: list[int] = field(default_factory=list)  # -1: none (free tier)
    created: list[float] = field(default_factory=list)
    tier: list[str] = field(default_factory=list)
    population: list[str] = field(default_factory=list)
    campaign: list[str | None] = field(default_factory=list)
    nets: list[tuple[str, int, str]] = field(default_factory=list)
    uas: list[str] = field(default_factory=list)
    sysfps: list[int] = field(default_factory=list)
    _ua_index: dict[str, int] = field(default_factory=dict)

    @property
    def n_accounts(self) -> int:
        return len(self.tier)

    def add_accounts(
        self,
        n: int,
        *,
        created: np.ndarray,
        tier: str | list[str],
        population: str,
        campaign: str | None = None,
        org: np.ndarray | None = None,
        payment: np.ndarray | None = None,
    ) -> np.ndarray:
        """Append ``n`` accounts; return their row numbers."""
        first = self.n_accounts
        self.created.extend(np.round(created, 0).tolist())
        self.tier.extend([tier] * n if isinstance(tier, str) else tier)
        self.population.extend([population] * n)
        self.campaign.extend([campaign] * n)
        self.org.extend([-1] * n if org is None else org.tolist())
        self.payment.extend([-1] * n if payment is None else payment.tolist())
        return np.arange(first, first + n)

    def add_nets(self, ips: np.ndarray, asns: np.ndarray, countries: list[str]) -> np.ndarray:
        """Append networks (``ips`` as uint32); return their row numbers."""
        first = len(self.nets)
        ips = ips.astype(np.int64)
        quads = zip(
            (ips >> 24).tolist(), ((ips >> 16) & 255).tolist(), ((ips >> 8) & 255).tolist(),
            (ips & 255).tolist(), strict=True,
        )
        self.nets.extend(
            (f"{a}.{b}.{c}.{d}", asn, cc)
            for (a, b, c, d), asn, cc in zip(quads, asns.tolist(), countries, strict=True)
        )
        return np.arange(first, first + len(ips))

    def ua(self, name: str) -> int:
        """Row of user agent ``name`` (added once)."""
        if name not in self._ua_index:
            self._ua_index[name] = len(self.uas)
            self.uas.append(name)
        return self._ua_index[name]

    def add_sysfps(self, values: np.ndarray) -> np.ndarray:
        first = len(self.sysfps)
        self.sysfps.extend(values.tolist())
        return np.arange(first, first + len(values))
