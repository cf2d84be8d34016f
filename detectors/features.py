"""Window features: the numbers detectors see for one account in one closed window."""

from __future__ import annotations

from detectors.windows import AccountWindow

__all__ = ["window_features"]


def window_features(acc: AccountWindow) -> dict[str, float]:
    """Plain-dict features of one account-window.

    Examples
    --------
    >>> from detectors.events import Event
    >>> acc = AccountWindow()
    >>> acc.add(Event("a", 1.0, "m", 100, 300))
    >>> window_features(acc)["output_input_ratio"]
    3.0
    """
    return {
        "requests": float(acc.requests),
        "input_tokens": float(acc.input_tokens),
        "output_tokens": float(acc.output_tokens),
        "output_input_ratio": acc.output_tokens / max(acc.input_tokens, 1),
    }
