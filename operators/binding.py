"""Parse ``name:key=value,...`` operator choices and bind them into a DEAP toolbox."""
from __future__ import annotations

import inspect
from typing import Any

from nasdip_deap.errors import UserError
from nasdip_deap.registry import OPERATORS


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_operator(text: str) -> tuple[str, dict]:
    """``"uniform:indpb=0.3"`` -> ``("uniform", {"indpb": 0.3})``."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"operator parameters are key=value pairs, got {item!r} in {text!r}")
        params[key.strip()] = _value(value.strip())
    return name.strip(), params


def bind_operator(toolbox, alias: str, text: str, kind: str, spec) -> dict:
    """Register the operator described by ``text`` under ``alias``; returns its resolved parameters."""
    name, params = parse_operator(text)
    entry = OPERATORS.entry(name)
    if entry.kind and entry.kind != kind:
        raise UserError(f"{name!r} is a {entry.kind} operator, not a {kind} one; "
                        f"valid {kind} operators: {', '.join(OPERATORS.names(kind))}")
    resolved = {**entry.defaults, **params}
    accepted = inspect.signature(entry.obj).parameters
    if "spec" in accepted:
        resolved_call = {**resolved, "spec": spec}
    else:
        resolved_call = resolved
    unknown = [k for k in resolved_call if k not in accepted and not any(
        p.kind == p.VAR_KEYWORD for p in accepted.values())]
    if unknown:
        raise UserError(f"operator {name!r} takes no parameter {unknown[0]!r} "
                        f"(its parameters: {', '.join(k for k in accepted if k not in ('individual', 'ind1', 'ind2', 'individuals', 'k', 'spec'))})")
    toolbox.register(alias, entry.obj, **resolved_call)
    return {"name": name, "params": resolved}
