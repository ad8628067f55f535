"""nasdip-deap: neural architecture search for Deep Image Prior on DEAP and PyTorch."""
from .architecture import Architecture, DecoderBlock, EncoderBlock, Skip
from .genome import DEFAULT_SPEC, GenomeSpec, classical_dip, decode, encode
from .network import build_network, count_parameters

__version__ = "0.1.0"

__all__ = ["Architecture", "EncoderBlock", "DecoderBlock", "Skip", "GenomeSpec", "DEFAULT_SPEC",
           "classical_dip", "decode", "encode", "build_network", "count_parameters", "fit", "__version__"]


def __getattr__(name):  # keep ``import nasdip_deap`` light: the fit engine pulls in the task registry
    if name == "fit":
        from .fit import fit
        return fit
    raise AttributeError(name)
