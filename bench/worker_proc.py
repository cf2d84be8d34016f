"""Run the real ``distillwatch worker`` as a subprocess and read its /metrics and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from typing import Any

from streams.broker import free_port

__all__ = ["Metrics", "WorkerProc", "histogram_quantile"]

# name -> {labels text -> value}
Metrics = dict[str, dict[str, float]]


def parse_metrics(text: str) -> Metrics:
    out: Metrics = defaultdict(dict)
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            out[name][labels.rstrip("}")] = float(value)
        except ValueError:
            continue
    return out


def total(m: Metrics, name: str) -> float:
    return sum(m.get(name, {}).values())


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative ``(le, count)`` pairs (linear in a bucket)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return buckets[-1][0]


def buckets_of(m: Metrics, name: str) -> dict[float, float]:
    out = {}
    for labels, v in m.get(name + "_bucket", {}).items():
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        out[float(le)] = v
    return out


class WorkerProc:
    """``distillwatch worker`` on a fresh app id (own consumer group) and data dir."""

    def __init__(self, broker_url: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="dw-bench-")
        self.log_path = os.path.join(self._tmp.name, "worker.log")
        full_env = {
            **os.environ,
            "DISTILLWATCH_WORKER__APP_ID": f"bench-{self.port}",
            "DISTILLWATCH_WORKER__DATA_DIR": os.path.join(self._tmp.name, "data"),
            **(env or {}),
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--broker", broker_url,
             "--metrics-port", str(self.port)],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def scrape(self) -> Metrics | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return parse_metrics(r.read().decode())
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited; log tail:\n{self.log_tail()}") from None
            return None

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in bytes, from /proc."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
        return out

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_consumed(self, n: int, timeout_s: float, windows: int = 0,
                      poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until ``events_consumed`` reaches ``n`` and ``windows`` windows have closed
        (been scored); time it from the first event."""
        deadline = time.monotonic() + timeout_s
        t_first = c_first = cpu_first = None
        m: Metrics | None = None
        while time.monotonic() < deadline:
            m = self.scrape()
            now = time.perf_counter()
            if m is None:
                time.sleep(poll_s)
                continue
            c = total(m, "distillwatch_events_consumed_total")
            if c > 0 and t_first is None:
                t_first, c_first, cpu_first = now, c, self.cpu_seconds()
            if c >= n and total(m, "distillwatch_windows_closed_total") >= windows:
                dt = now - t_first
                return {
                    "events": int(c),
                    "timed_events": int(c - c_first),
                    "seconds": dt,
                    # The first poll already saw c_first events: count only what came after.
                    "events_per_s": (c - c_first) / dt if dt > 0 else float("nan"),
                    "cpu_seconds": self.cpu_seconds() - cpu_first,
                    "windows_closed": total(m, "distillwatch_windows_closed_total"),
                    "findings": total(m, "distillwatch_findings_total"),
                    "invalid": total(m, "distillwatch_events_invalid_total"),
                    "late": total(m, "distillwatch_events_late_total"),
                }
            time.sleep(poll_s)
        closed = m and total(m, "distillwatch_windows_closed_total")
        consumed = m and total(m, "distillwatch_events_consumed_total")
        raise TimeoutError(f"worker closed {closed} of {windows} windows and consumed "
                           f"{consumed} of {n} events in {timeout_s}s; log tail:\n"
                           f"{self.log_tail()}")

    def wait_windows(self, windows: int, timeout_s: float) -> float:
        """Wait until ``windows`` windows have closed; return how many did."""
        deadline = time.monotonic() + timeout_s
        closed = 0.0
        while time.monotonic() < deadline:
            m = self.scrape()
            closed = total(m, "distillwatch_windows_closed_total") if m else 0.0
            if closed >= windows:
                break
            time.sleep(0.5)
        return closed

    def log_tail(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._tmp.cleanup()
