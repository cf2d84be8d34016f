"""Issue 15, item 6: the CLI's small defects — ``--version``, one-line errors with a
non-zero exit for wrong paths and for input that is not events, replay's percent and ETA,
and ``evaluate`` refusing labels of another scenario."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest

from streams.cli import main
from streams.config import load_config
from streams.replay import monitor_kwargs, replay

TINY = Path(__file__).parents[1] / "scenarios" / "tiny.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("tiny15")
    ev, lab, al = d / "events.jsonl", d / "labels.jsonl", d / "alerts.jsonl"
    assert main(["simulate", str(TINY), "--seed", "1", "--out", str(ev),
                 "--labels", str(lab)]) == 0
    assert main(["replay", str(ev), "--out", str(al), "--progress-every", "0"]) == 0
    return ev, lab, al


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("distillwatch 0.")


def _one_line_error(capsys, code: int, argv: list[str], want: str) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert want in err[-1] and "Traceback" not in "\n".join(err), err


def test_replay_wrong_paths_are_one_line_errors(tiny, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ev, _, _ = tiny
    _one_line_error(capsys, 2, ["replay", str(tmp_path / "nope.jsonl"), "--out", "-"],
                    "cannot read")
    _one_line_error(capsys, 2, ["replay", str(ev), "--out", str(tmp_path / "no/dir/a.jsonl")],
                    "cannot write")
    _one_line_error(capsys, 2, ["replay", str(tmp_path), "--out", str(tmp_path / "a.jsonl")],
                    "distillwatch replay:")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _one_line_error(capsys, 2, ["replay", str(ev), "--out", str(ro / "a.jsonl")],
                        "cannot write")


def test_replay_of_a_labels_file_fails_instead_of_reporting_no_alerts(
    tiny, tmp_path, capsys
) -> None:  # type: ignore[no-untyped-def]
    _, labels, alerts = tiny
    for wrong in (labels, alerts):
        _one_line_error(capsys, 1, ["replay", str(wrong), "--out", str(tmp_path / "x.jsonl"),
                                    "--progress-every", "0"], "is a request event")


def test_replay_progress_says_how_far_and_how_long() -> None:
    events = b"".join(
        orjson.dumps({"account_id": f"a{i % 50}", "ts": 1e9 + i * 0.01, "model": "m",
                      "input_tokens": 1, "output_tokens": 2}) + b"\n" for i in range(8192))
    src, out, progress = io.BytesIO(events), io.BytesIO(), io.StringIO()
    monitor_cfg = monitor_kwargs(load_config(environ={}))
    from detectors.pipeline import Monitor

    stats = replay(src, Monitor(**monitor_cfg), out, progress=progress, progress_every_s=0,
                   size=len(events), position=src.tell)
    assert stats.events == 8192
    lines = progress.getvalue().splitlines()
    assert lines and all("%, about " in ln and " s left, " in ln for ln in lines), lines
    assert lines[-1].startswith("replay: 100%, about 0 s left")


def test_evaluate_refuses_labels_of_another_scenario(tiny, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, labels, alerts = tiny
    assert main(["evaluate", "--labels", str(labels), "--alerts", str(alerts)]) == 0
    capsys.readouterr()
    other = tmp_path / "other-labels.jsonl"
    recs = [{"type": "scenario", "name": "somewhere-else", "start_ts": 1.0e9,
             "end_ts": 1.0e9 + 3600}]
    recs += [{"type": "account", "account_id": f"x{i}", "label": "benign"} for i in range(20)]
    other.write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
    _one_line_error(capsys, 2, ["evaluate", "--labels", str(other), "--alerts", str(alerts)],
                    "not in the labels of scenario 'somewhere-else'")
    assert main(["evaluate", "--labels", str(other), "--alerts", str(alerts), "--force"]) == 0
    assert "WARNING: scoring alerts that do not match" in capsys.readouterr().err
