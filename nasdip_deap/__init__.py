"""nasdip-deap: neural architecture search for Deep Image Prior on DEAP and PyTorch.

    import nasdip_deap as nd
    task = nd.make_task("denoise", clean=nd.load_image("photo.png"), sigma=25)
    result = nd.search(task, population=8, generations=3)
    restored = result.restore(ensemble=2)
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

# Public name -> the module that defines it. Loaded on first use, so that processes which only need
# the package's torch-free parts (spawned workers before their first fit, the argument parser) start
# without importing torch. No submodule shares a name with an export, so an attribute is never
# shadowed by a submodule import.
_EXPORTS = {
    "search": "api", "restore": "api", "baseline": "api", "make_task": "api", "SearchResult": "api",
    "FrontEntry": "api", "Restoration": "restoration", "SearchConfig": "compose", "RestoreConfig": "compose",
    "build_search": "compose", "EngineOptions": "engine", "FitResult": "engine", "fit": "engine",
    "Architecture": "architecture", "EncoderBlock": "architecture", "DecoderBlock": "architecture",
    "Skip": "architecture", "GenomeSpec": "genome", "DEFAULT_SPEC": "genome", "classical_dip": "genome",
    "decode": "genome", "encode": "genome", "build_network": "network", "count_parameters": "network",
    "example_image": "image_io", "load_image": "image_io", "save_image": "image_io",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

