"""Shipped isochrone tables (package data): PARSEC v1.2S and Padova 2007 in FSPS's format.

See README.md in this folder for provenance, licence and citations. Installed as
``smnet_sps.isochrone_tables``. Load them with
:func:`smnet_sps.isochrones.load_isochrones`; this module only exposes where they are.
"""
from pathlib import Path

ISOCHRONE_DIR = Path(__file__).parent

__all__ = ["ISOCHRONE_DIR"]
