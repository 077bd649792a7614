"""smnet-sps: neural stellar-spectrum generators (SM-Net) as a stellar library for population synthesis.

Data flow, one module per stage::

    libraries/ (native readers) -> grid (union training grid) -> model/train (generators)
    -> neural.load_generator -> backend (isochrone points -> L_lambda) -> ssp (+ imf, isochrones)
    -> photometry / plugins
"""
import importlib

__version__ = "0.1.0"

# Public names -> the module that defines them; imported on first use so `import smnet_sps` stays light.
_EXPORTS = {
    "Generator": "generator", "BlackbodyGenerator": "generator", "ParameterBox": "generator",
    "CoverageWarning": "generator",
    "load_grid": "grid", "build_grid": "grid", "UnionGrid": "grid",
    "load_generator": "neural", "NeuralGenerator": "neural",
    "train": "train",
    "StellarLibraryBackend": "backend",
    "load_isochrones": "isochrones", "get_imf": "imf",
    "ssp_spectrum": "ssp", "ssp_grid": "ssp",
    "magnitudes": "photometry", "ssp_magnitudes": "photometry",
    "StellarPopulation": "population",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'smnet_sps' has no attribute {name!r}")
