"""Render a :class:`~simulator.generate.Simulation` as JSON lines: events in the DESIGN.md
schema (labels never appear in them) and one label record per account and campaign.

Strings that repeat (accounts, networks, agents, models) are rendered once; each event is
rendered column by column with numpy (:mod:`simulator.render`), which is what makes
200k+ events/s possible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import orjson

from simulator.generate import Simulation
from simulator.render import Joiner, const, decimal, fixed_decimal, hex64, lookup, table, when
from simulator.tables import STOP_REASONS

__all__ = ["account_ids", "event_lines", "label_records", "write_events", "write_labels"]

_OWN_ORG_SALT = 0x5BD1E9955BD1


def _j(s: str) -> str:
    return orjson.dumps(s).decode()


def _account_fragments(sim: Simulation) -> tuple[list[str], list[str]]:
    """Per account: the constant fields, and the account id (for api keys)."""
    t = sim.tables
    frags, ids = [], []
    for key, org, pay, created, tier in zip(
        t.account_key, t.org, t.payment, t.created, t.tier, strict=True
    ):
        aid = f"acct_{key:012x}"
        org_id = f"org_{(key ^ _OWN_ORG_SALT) if org < 0 else org:012x}"
        pay_s = f',"payment_fingerprint":"pm_{pay:012x}"' if pay >= 0 else ""
        frags.append(
            f'"account_id":"{aid}","org_id":"{org_id}"{pay_s},'
            f'"account_created_ts":{int(created)},"tier":{_j(tier)},"api_key_id":"{aid}-k'
        )
        ids.append(aid)
    return frags, ids


def event_lines(sim: Simulation, chunk: int = 20_000) -> Iterator[bytes]:
    """Yield the events file in blocks of ``chunk`` lines, in order."""
    t = sim.tables
    frags, _ = _account_fragments(sim)
    tables = {
        "acct": table([f.encode() for f in frags]),
        "net": table([f'"ip":"{ip}","asn":{asn},"country":"{cc}",'.encode()
                      for ip, asn, cc in t.nets]),
        "ua": table([f'"user_agent":{_j(u)},'.encode() for u in t.uas]),
        "model": table([f'"model":{_j(m.name)},'.encode() for m in sim.scenario.scenario.models]),
        "stop": table([b""] + [f',"stop_reason":"{s}"'.encode() for s in STOP_REASONS]),
        "sys": table([b""] + [f',"system_prompt_fingerprint":"{v:016x}"'.encode()
                              for v in t.sysfps]),
    }
    n = len(sim.events)
    join = Joiner()
    for lo in range(0, n, chunk):
        yield _render(sim, tables, lo, min(n, lo + chunk), join)


def _render(
    sim: Simulation, tables: dict[str, tuple[np.ndarray, np.ndarray]], lo: int, hi: int,
    join: Joiner,
) -> bytes:
    m = hi - lo
    e = sim.events.slice(lo, hi)
    ms = np.rint(e.ts * 1000.0).astype(np.int64)
    conv, turn = e.conv >= 0, e.turn > 0
    return join([
        const(b'{"event_id":"ev', m), fixed_decimal(np.arange(lo, hi), 9),
        const(b'","ts":', m), decimal(ms // 1000, 11), const(b".", m),
        fixed_decimal(ms % 1000, 3), const(b",", m), lookup(tables["acct"], e.acct),
        decimal(e.key, 2), const(b'",', m), lookup(tables["model"], e.model),
        const(b'"input_tokens":', m), decimal(e.inp, 7),
        const(b',"output_tokens":', m), decimal(e.out, 7), const(b",", m),
        lookup(tables["net"], e.net), lookup(tables["ua"], e.ua), const(b'"status":', m),
        decimal(e.status, 3), lookup(tables["stop"], e.stop + 1),
        const(b',"latency_ms":', m), decimal(e.latency, 7),
        when(const(b',"conversation_id":"cv', m), conv),
        hex64(e.conv, 10, present=conv), when(const(b'"', m), conv),
        when(const(b',"turn":', m), turn), decimal(e.turn, 3, present=turn),
        lookup(tables["sys"], e.sysfp + 1),
        const(b',"prompt_fingerprint":"', m), hex64(e.pfp), const(b'"}\n', m),
    ])


def account_ids(sim: Simulation) -> list[str]:
    """The ``account_id`` of every account row."""
    return [f"acct_{key:012x}" for key in sim.tables.account_key]


def write_events(sim: Simulation, f: IO[bytes]) -> int:
    """Write every event to ``f``; return the count."""
    for block in event_lines(sim):
        f.write(block)
    return len(sim.events)


def label_records(sim: Simulation) -> list[dict[str, Any]]:
    """The ground truth: one ``scenario`` record, one per campaign, one per account."""
    t = sim.tables
    _, ids = _account_fragments(sim)
    meta = sim.scenario.scenario
    out: list[dict[str, Any]] = [{
        "type": "scenario",
        "name": meta.name,
        "seed": sim.seed,
        "start_ts": sim.t0,
        "end_ts": sim.t_end,
        "accounts": t.n_accounts,
        "benign_accounts": sum(1 for c in t.campaign if c is None),
        "events": len(sim.events),
    }]
    out.extend({"type": "campaign", **c} for c in sim.campaigns)
    for aid, camp, pop in zip(ids, t.campaign, t.population, strict=True):
        out.append({
            "type": "account",
            "account_id": aid,
            "label": "benign" if camp is None else "campaign",
            "campaign_id": camp,
            "population": pop,
        })
    return out


def write_labels(sim: Simulation, f: IO[bytes]) -> None:
    for rec in label_records(sim):
        f.write(orjson.dumps(rec) + b"\n")
