"""evaluation.suite: simulate -> replay -> evaluate for a scenario, one summary row."""

from __future__ import annotations

from pathlib import Path

from evaluation.suite import main

TINY = Path(__file__).parents[2] / "scenarios" / "tiny.toml"


def test_suite_on_tiny(tmp_path: Path, capsys) -> None:
    assert main([str(TINY), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    assert "hydra" in row and "slow_ramp" in row
    report = (tmp_path / "tiny.report.txt").read_text()
    assert "campaign hydra-tiny (hydra, 120 accounts)" in report
    assert (tmp_path / "tiny.alerts.jsonl").exists()
