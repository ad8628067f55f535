"""Small picklable task functions for the backend tests. They live in their own module, free of torch,
so that spawned test workers start quickly."""
from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    """Later items finish first, so the order of results is tested."""
    time.sleep(0.05 * (5 - x % 5))
    return x * x


def whoami(_item) -> dict:
    from nasdip_deap.workers import current_worker

    worker = current_worker()
    return {**worker.describe(), "device": worker.device_for("auto")}


def hold_then_whoami(seconds: float) -> dict:
    time.sleep(seconds)
    return whoami(None)


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


class DieOnce:
    """Kills its worker process the first time it sees ``item`` (a marker file remembers that it did)."""

    def __init__(self, item: int, marker: str):
        self.item = item
        self.marker = marker

    def __call__(self, x: int) -> tuple[int, int]:
        if x == self.item and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(9)
        return x * 10, os.getpid()


class DieAlways:
    """Kills every worker that is given ``item``."""

    def __init__(self, item: int):
        self.item = item

    def __call__(self, x: int) -> int:
        if x == self.item:
            os._exit(9)
        return x * 10


def sleep_forever_on(x: int) -> int:
    """Item 1 hangs (outside any fit loop, so only the hard time limit can stop it)."""
    if x == 1:
        time.sleep(600)
    return x


def token(_item) -> str:
    """A new value on every call: two calls of one item are two runs only if the backend runs both."""
    return os.urandom(8).hex()


class Heavy:
    """A fit function carrying a large payload (like an evaluator's observation and mask); each call
    says which process ran it and which copy of the function it used."""

    def __init__(self, size: int):
        self.payload = bytes(size)

    def __call__(self, _item) -> tuple[int, int]:
        time.sleep(0.2)  # as long as a short fit, so that both workers get some
        return os.getpid(), id(self)


def code_path(_item) -> str:
    """Where this process imports nasdip_deap from (the worker must run the code under test)."""
    import nasdip_deap

    return nasdip_deap.__file__
