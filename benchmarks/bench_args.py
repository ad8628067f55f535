"""argparse types and setting values shared by the benchmark scripts: bad input refused with argparse's one line."""
from __future__ import annotations

import argparse
import json


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""
    return lambda text: _int_at_least(text, minimum)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def setting_value(text: str):
    """The value of a KEY=VALUE search setting: JSON when it reads as JSON (numbers, true/false, null),
    else the text itself (names: proxy=none, fidelity=adaptive, ...)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
