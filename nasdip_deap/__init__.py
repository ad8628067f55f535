"""nasdip-deap: neural architecture search for Deep Image Prior on DEAP and PyTorch.

    import nasdip_deap as nd
    task = nd.make_task("denoise", clean=nd.load_image("photo.png"), sigma=25)
    result = nd.search(task, population=8, generations=3)
    restored = result.restore(ensemble=2)
"""
__version__ = "0.2.0"

from .api import FrontEntry, SearchResult, baseline, make_task, restore, search
from .architecture import Architecture, DecoderBlock, EncoderBlock, Skip
from .compose import RestoreConfig, SearchConfig, build_search
from .engine import EngineOptions, FitResult, fit
from .genome import DEFAULT_SPEC, GenomeSpec, classical_dip, decode, encode
from .image_io import example_image, load_image, save_image
from .network import build_network, count_parameters
from .restoration import Restoration

__all__ = ["search", "restore", "baseline", "make_task", "fit", "SearchResult", "FrontEntry", "Restoration",
           "SearchConfig", "RestoreConfig", "build_search", "EngineOptions", "FitResult", "Architecture",
           "EncoderBlock", "DecoderBlock", "Skip", "GenomeSpec", "DEFAULT_SPEC", "classical_dip", "decode", "encode",
           "build_network", "count_parameters", "example_image", "load_image", "save_image", "__version__"]
