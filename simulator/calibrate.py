"""Derive the benign-traffic parameters from real LLM API traces; load the shipped result.

Run it once when the traces change; the output ``simulator/calibration.json`` is shipped,
the traces are not::

    python -m simulator.calibrate --data ../shared/data --out simulator/calibration.json

Sources (credit, licences): ServeGen per-client traces of Alibaba Cloud Model Studio
(github.com/alibaba/ServeGen, data/language/m-large, Apache-2.0) and the Azure LLM inference
trace 2023, conversation service (github.com/Azure/AzurePublicDataset, CC-BY-4.0).
See docs/simulation.md for what each parameter drives.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_PATH", "derive", "load_calibration"]

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
_QUANTILES = np.linspace(0.0, 1.0, 101)


def _q(values: np.ndarray, n: int = 101) -> list[float]:
    return [round(float(v), 4) for v in np.quantile(values, np.linspace(0.0, 1.0, n))]


def _servegen(folder: str) -> dict[str, Any]:
    files = sorted(glob.glob(os.path.join(folder, "chunk-*-trace.csv")))
    if not files:
        raise SystemExit(f"no chunk-*-trace.csv files under {folder}")
    mean_rates, active_frac, cvs, profiles, dows = [], [], [], [], []
    for path in files:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        rate = np.array([float(r[1]) for r in rows])
        cv = np.array([float(r[2]) for r in rows])
        mean_rates.append(rate.mean())
        active = rate > 0
        active_frac.append(active.mean())
        cvs.extend(cv[active].tolist())
        days = len(rate) // 144  # 600 s windows
        if days >= 7 and rate[: days * 144].sum() > 0:
            hourly = rate[: days * 144].reshape(days, 24, 6).sum(axis=2)
            prof = hourly.mean(axis=0)
            # Each client weighs the same: the shape of a typical client's day, not the
            # biggest client's.
            profiles.append(prof / prof.mean())
            daily = hourly.sum(axis=1)
            if daily.mean() > 0:
                dows.append(daily[: (days // 7) * 7].reshape(-1, 7).mean(axis=0) / daily.mean())
    rates = np.array(mean_rates)
    pos = rates[rates > 0]
    top = np.sort(rates)[::-1]
    return {
        "clients": len(files),
        "rate_rps_quantiles": _q(rates, 21),
        "rate_log_sigma": round(float(np.log(pos).std()), 4),
        "top10_traffic_share": round(float(top[:10].sum() / top.sum()), 4),
        "active_window_share_quantiles": _q(np.array(active_frac), 21),
        "interarrival_cv_quantiles": _q(np.array(cvs), 21),
        # Hour 0 of the trace is taken as local midnight: the per-client mean is lowest
        # 02:00-08:00 and highest in office hours, as a local clock would show.
        "hourly_profile": [round(float(v), 4) for v in np.mean(profiles, axis=0)],
        "weekday_profile": [round(float(v), 4) for v in np.mean(dows, axis=0)],
    }


def _azure(path: str) -> dict[str, Any]:
    ts, inp, out = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ts.append(datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp())
            inp.append(int(row["ContextTokens"]))
            out.append(int(row["GeneratedTokens"]))
    t = np.sort(np.array(ts))
    gaps = np.diff(t)
    i, o = np.array(inp, dtype=float), np.array(out, dtype=float)
    return {
        "requests": len(inp),
        "duration_s": round(float(t[-1] - t[0]), 1),
        "interarrival_cv": round(float(gaps.std() / gaps.mean()), 4),
        "input_tokens_quantiles": _q(i),
        "output_tokens_quantiles": _q(o),
        "log_io_correlation": round(float(np.corrcoef(np.log1p(i), np.log1p(o))[0, 1]), 4),
    }


def derive(data_dir: str | Path) -> dict[str, Any]:
    """Compute every calibrated parameter from the raw traces under ``data_dir``."""
    d = Path(data_dir)
    return {
        "sources": {
            "servegen": "ServeGen m-large per-client traces (Alibaba Cloud Model Studio), "
            "github.com/alibaba/ServeGen@f891d11, Apache-2.0",
            "azure": "Azure LLM inference trace 2023 (conversation), "
            "github.com/Azure/AzurePublicDataset@b469a11, CC-BY-4.0",
        },
        "servegen": _servegen(str(d / "servegen" / "m-large")),
        "azure_conv": _azure(str(d / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")),
    }


@cache
def load_calibration() -> dict[str, Any]:
    """The shipped parameters (``simulator/calibration.json``)."""
    return json.loads(CALIBRATION_PATH.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data", help="folder with the raw traces")
    p.add_argument("--out", default=str(CALIBRATION_PATH), help="where to write the JSON")
    args = p.parse_args(argv)
    params = derive(args.data)
    Path(args.out).write_text(json.dumps(params, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
