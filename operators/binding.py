"""Parse ``name:key=value,...`` operator choices and bind them into a DEAP toolbox.

Binding checks the choice before a search spends any compute on it: the operator exists and is of
the wanted kind, every parameter is one the operator takes (and none it is called with), none is
missing, and the operator survives one trial call on sample individuals.
"""
from __future__ import annotations

import functools
import inspect
import random

from nasdip_deap import deap_types
from nasdip_deap.errors import UserError
from nasdip_deap.params import check_params, parse_choice
from nasdip_deap.registry import OPERATORS, UnknownNameError

parse_operator = parse_choice  # the NAME:key=value syntax, shared with fidelities and proxies

KINDS = ("crossover", "mutation", "selection")
CALL_ARGUMENTS = {"crossover": 2, "mutation": 1, "selection": 2}  # (ind1, ind2), (ind,), (individuals, k)


def _check_parameters(name: str, func, kind: str, call: dict) -> None:
    """Refuse parameters the operator does not take or is called with, and missing required ones."""
    parameters = list(inspect.signature(func).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    supplied_at_call = {p.name for p in positional[:CALL_ARGUMENTS[kind]]}
    own = [p for p in parameters if p.name not in supplied_at_call and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    listed = ", ".join(p.name for p in own if p.name != "spec") or "none"
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters)
    for key in call:
        if key in supplied_at_call:
            raise UserError(f"operator {name!r}: {key!r} is given by the algorithm at each call, not as a parameter")
        if not takes_any and key not in {p.name for p in own}:
            raise UserError(f"operator {name!r} takes no parameter {key!r} (its parameters: {listed})")
    missing = [p.name for p in own if p.default is p.empty and p.name not in call]
    if missing:
        raise UserError(f"operator {name!r} needs parameter {missing[0]!r}: give it as {name}:{missing[0]}=VALUE")


def _samples(toolbox, spec, count: int, rng: random.Random) -> list:
    """``count`` sample individuals of the toolbox's own class (so with its number of objectives) when it
    has ``individual``, else single-objective ones; each with a valid, positive fitness."""
    make = getattr(toolbox, "individual", None)
    samples = [make() for _ in range(count)] if make is not None else \
        [deap_types.individual_class(1)(spec.random_bits(rng)) for _ in range(count)]
    for ind in samples:
        ind.fitness.values = tuple(rng.uniform(1.0, 100.0) for _ in ind.fitness.weights)
    return samples


def _trial_call(name: str, operator, kind: str, spec, params: dict, toolbox) -> None:
    """Run the operator once on sample individuals (leaving the caller's random state as it was), so a
    bad parameter value or a broken plugin fails here with a clear message, not mid-search."""
    if spec is None:
        return
    state = random.getstate()
    try:
        rng = random.Random(0)
        random.seed(0)
        if kind == "selection":
            population = _samples(toolbox, spec, 6, rng)
            result = operator(population, 2)
        else:
            population = _samples(toolbox, spec, CALL_ARGUMENTS[kind], rng)
            result = operator(*population)
    except Exception as exc:
        raise UserError(f"operator {name!r} with parameters {params or '{}'} fails on a sample: "
                        f"{type(exc).__name__}: {exc}") from None
    finally:
        random.setstate(state)
    if kind == "selection":
        if len(result) != 2 or not all(any(ind is member for member in population) for ind in result):
            raise UserError(f"operator {name!r} breaks the DEAP contract: a selection must return k "
                            f"individuals of the population it is given")
        return
    if not isinstance(result, tuple) or len(result) != len(population):
        raise UserError(f"operator {name!r} breaks the DEAP contract: a {kind} must return a tuple of "
                        f"{len(population)} individual(s), got {type(result).__name__}")
    if any(len(ind) != spec.length for ind in result):
        raise UserError(f"operator {name!r} changed the genome length (the spec needs {spec.length} bits)")


def bind_operator(toolbox, alias: str, choice, kind: str, spec) -> dict:
    """Register the operator ``choice`` under ``alias``: a registered name with parameters
    (``"flip-bit:indpb=0.05"``) or a function (called as DEAP calls it; bind parameters with
    ``functools.partial``). Returns its name and resolved parameters."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if callable(choice):
        name = getattr(choice, "__name__", None) or getattr(getattr(choice, "func", None), "__name__", repr(choice))
        _trial_call(name, choice, kind, spec, {}, toolbox)
        toolbox.register(alias, choice)
        return {"name": name, "params": dict(getattr(choice, "keywords", {}) or {})}
    name, params = parse_choice(choice)
    try:
        entry = OPERATORS.entry(name)
    except UnknownNameError:
        if name in OPERATORS.plugin_errors:
            raise  # its message says why the plugin did not load
        raise UnknownNameError(f"unknown {kind} operator {name!r}; valid {kind} operators: "
                               f"{', '.join(OPERATORS.names(kind))}") from None
    if entry.kind != kind:
        what = f"a {entry.kind} operator" if entry.kind else "an operator of no declared kind"
        raise UserError(f"{name!r} is {what}, not a {kind} one; valid {kind} operators: "
                        f"{', '.join(OPERATORS.names(kind))}")
    resolved = check_params(f"operator {name!r}", {**entry.defaults, **params}, entry.params)
    call = dict(resolved)
    if "spec" in inspect.signature(entry.obj).parameters:
        if "spec" in params:
            raise UserError(f"operator {name!r}: the genome spec is supplied by the search, not as a parameter")
        call["spec"] = spec
    _check_parameters(name, entry.obj, kind, call)
    _trial_call(name, functools.partial(entry.obj, **call), kind, spec, resolved, toolbox)
    toolbox.register(alias, entry.obj, **call)
    return {"name": name, "params": resolved}
