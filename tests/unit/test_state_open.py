"""open_raw: the local state database is bytes only, and one that cannot be trusted is set
aside unread (it is a cache of the changelog), except when another process holds it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from rocksdict import Rdict

from streams.state import open_raw


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".untrusted-" in p.name)


def test_values_are_bytes_in_and_out_even_with_a_pickle_tag(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    db = open_raw(tmp_path / "s.rdb")
    try:
        tagged = b"\x06" + pickle.dumps(_Boom(marker))  # rocksdict's tag for a pickled value
        db[b"0\x00a"] = tagged
        assert db[b"0\x00a"] == tagged
        assert [v for k, v in db.items(from_key=b"0\x00")] == [tagged]
        with pytest.raises(Exception):  # noqa: B017 (rocksdict raises its own type)
            db[b"0\x00b"] = _Boom(marker)  # type: ignore[assignment]
    finally:
        db.close()
    db = open_raw(tmp_path / "s.rdb")  # ours: reopened as it is
    try:
        assert db[b"0\x00a"] == tagged
    finally:
        db.close()
    assert not marker.exists() and _aside(tmp_path) == []


def test_a_default_mode_database_is_set_aside_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    old = Rdict(str(tmp_path / "s.rdb"))
    old[b"0\x00a"] = _Boom(marker)
    old.close()
    db = open_raw(tmp_path / "s.rdb")
    try:
        assert db.get(b"0\x00a") is None
    finally:
        db.close()
    assert not marker.exists()
    assert len(_aside(tmp_path)) == 1


@pytest.mark.parametrize("damage", ["corrupt", "file"])
def test_a_database_that_does_not_open_is_set_aside(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s.rdb"
    if damage == "corrupt":
        db = open_raw(path)
        db[b"0\x00a"] = b"x"
        db.close()
        (path / "CURRENT").write_bytes(b"garbage\n")
    else:
        path.write_bytes(b"not a database")
    db = open_raw(path)
    try:
        assert db.get(b"0\x00a") is None
        db[b"0\x00a"] = b"y"
    finally:
        db.close()
    assert len(_aside(tmp_path)) == 1


def test_a_database_held_by_another_process_is_an_error_not_moved(tmp_path: Path) -> None:
    path = tmp_path / "s.rdb"
    first = open_raw(path)
    try:
        first[b"0\x00a"] = b"x"
        with pytest.raises(RuntimeError, match=r"worker\.data_dir"):
            open_raw(path)
        assert first[b"0\x00a"] == b"x"
    finally:
        first.close()
    assert _aside(tmp_path) == []
