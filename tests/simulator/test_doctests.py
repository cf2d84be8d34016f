"""Run the docstring examples of simulator/ and evaluation/ (pytest's --doctest-modules
only walks the configured testpaths)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "simulator.scenario",
    "simulator.generate",
    "simulator.render",
    "evaluation.score",
    "evaluation.baseline",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    mod = importlib.import_module(name)
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(mod, optionflags=flags)
    assert result.attempted > 0 and result.failed == 0
