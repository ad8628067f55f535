"""Named parts with parameters, chosen as ``NAME[:key=value,...]`` or passed as objects.

Operators, fidelities, proxies and algorithms are picked by name on the command line; a part may
declare the range of each parameter (``Param``), so that a value that cannot be right (a probability
of 2, a tournament of 0, ``indpb=abc``) is refused with one line before any compute is spent.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import UserError


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_choice(text: str) -> tuple[str, dict]:
    """``"uniform:indpb=0.3"`` -> ``("uniform", {"indpb": 0.3})``."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"parameters are key=value pairs, got {item!r} in {text!r}")
        params[key.strip()] = _value(value.strip())
    return name.strip(), params


@dataclass(frozen=True)
class Param:
    """The declared type and range of one parameter of a part."""

    type: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def check(self, label: str, value: Any) -> Any:
        """``value`` converted to the declared type, or a ``UserError`` naming it (``label``) and the range."""
        if self.choices:
            if value not in self.choices:
                raise UserError(f"{label} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise UserError(f"{label} must be true or false, got {value!r}")
            return value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.type is int and not (number and float(value).is_integer()):
            raise UserError(f"{label} must be a whole number{self._range()}, got {value!r}")
        if self.type is float and not (number and value == value and abs(value) != float("inf")):
            raise UserError(f"{label} must be a number{self._range()}, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            kind = "a whole number" if self.type is int else "a number"
            raise UserError(f"{label} must be {kind}{self._range()}, got {value!r}")
        return self.type(value)

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f" between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f" >= {self.low:g}"
        if self.high is not None:
            return f" <= {self.high:g}"
        return ""


PROBABILITY = Param(float, 0.0, 1.0)


def check_params(owner: str, params: dict, declared: dict[str, Param]) -> dict:
    """Check every declared parameter that is given; names the part (``owner``) in each message."""
    return {key: declared[key].check(f"{owner}: {key}", value) if key in declared else value
            for key, value in params.items()}


def make_part(registry, choice, what: str):
    """A part from ``choice``: ``"name[:key=value,...]"`` (a registered class, instantiated with the
    checked parameters), a class (instantiated with its defaults) or an object (used as it is)."""
    if not isinstance(choice, str):
        return choice() if isinstance(choice, type) else choice
    name, params = parse_choice(choice)
    entry = registry.entry(name)
    params = check_params(f"{what} {name!r}", params, entry.params)
    if dataclasses.is_dataclass(entry.obj):
        fields = {f.name for f in dataclasses.fields(entry.obj) if f.init}
        unknown = sorted(set(params) - fields)
        if unknown:
            listed = ", ".join(sorted(fields)) or "none"
            raise UserError(f"{what} {name!r} takes no parameter {unknown[0]!r} (its parameters: {listed})")
    try:
        return entry.obj(**params)
    except TypeError as exc:
        raise UserError(f"bad parameters for {what} {name!r}: {exc}") from None
