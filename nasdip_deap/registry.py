"""Named registries (timm/nevergrad style) for tasks, operators and algorithms.

Entries arrive through a decorator in code or through package entry points declared by third-party
packages in their own ``setup.cfg`` (``[options.entry_points]``). Names collide loudly; an unknown
name lists the valid ones.
"""
from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator

from .errors import UserError

log = logging.getLogger(__name__)


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """One registered object with the metadata the CLI and ``nasdip list`` show."""

    name: str
    obj: Any
    summary: str
    kind: str = ""
    defaults: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # name -> params.Param: declared types and ranges


def _origin(obj: Any) -> str:
    """``module.qualname`` of a registered object: what identifies a definition across re-runs."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


class Registry:
    """A name -> object map filled by ``@registry.register(name)`` and by entry points."""

    def __init__(self, kind: str, entry_point_group: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.builtin_modules = builtin_modules
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False
        self.plugin_errors: dict[str, str] = {}

    def register(self, name: str, *, summary: str | None = None, kind: str = "",
                 defaults: dict | None = None, params: dict | None = None) -> Callable[[Any], Any]:
        """Decorator: register the decorated object under ``name`` (see ``add``)."""

        def decorate(obj: Any) -> Any:
            self.add(name, obj, summary=summary, kind=kind, defaults=defaults, params=params)
            return obj

        return decorate

    def add(self, name: str, obj: Any, *, summary: str | None = None, kind: str = "",
            defaults: dict | None = None, params: dict | None = None) -> None:
        """Register ``obj`` under ``name``. The same object again is harmless, and so is a new
        definition of it (same module and qualified name: a notebook cell run twice, a reloaded
        module), which replaces the old one; another object under a taken name raises."""
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not obj and _origin(existing.obj) != _origin(obj):
            raise ValueError(f"{self.kind} name {name!r} is already registered by {_origin(existing.obj)}")
        text = summary if summary is not None else _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, text, kind or getattr(obj, "kind", ""),
                                    dict(defaults if defaults is not None else getattr(obj, "defaults", None) or {}),
                                    dict(params if params is not None else getattr(obj, "params", None) or {}))

    def load_plugins(self) -> None:
        """Import every entry point of this registry's group once; a broken plugin is reported, not fatal."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # a plugin's import error must not break the other entries
                message = f"{type(exc).__name__}: {exc}"
                self.plugin_errors[ep.name] = message
                warnings.warn(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {message}",
                              RuntimeWarning, stacklevel=2)
                continue
            if ep.name in self._entries and self._entries[ep.name].obj is obj:
                continue
            if not any(e.obj is obj for e in self._entries.values()):
                self.add(ep.name, obj, summary=getattr(obj, "summary", None) or None,
                         defaults=getattr(obj, "defaults", None))

    def entry(self, name: str) -> Entry:
        self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            hint = ""
            if name in self.plugin_errors:
                hint = f" (its plugin failed to load: {self.plugin_errors[name]})"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; valid names: {valid}") from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self, kind: str | None = None) -> list[str]:
        self.load_plugins()
        return sorted(n for n, e in self._entries.items() if kind is None or e.kind == kind)

    def entries(self) -> Iterator[Entry]:
        self.load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: (e.kind, e.name)))

    def __contains__(self, name: str) -> bool:
        self.load_plugins()
        return name in self._entries

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and interactive sessions)."""
        self._entries.pop(name, None)


TASKS = Registry("task", "nasdip_deap.tasks", ("nasdip_deap.tasks",))
OPERATORS = Registry("operator", "nasdip_deap.operators", ("nasdip_deap.operators",))
ALGORITHMS = Registry("algorithm", "nasdip_deap.algorithms",
                      ("nasdip_deap.algorithms", "nasdip_deap.predictor"))
