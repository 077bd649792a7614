"""Adapters that make smnet-sps a stellar-library / SSP backend of existing SPS codes.

One module per host, each importing its host lazily (inside functions) and declaring ``HOST``,
``HOST_VERSIONS`` (the host versions it was written and checked for) and a one-line ``DESCRIPTION``:

=====================  =========  ======================================================================
module                 host       what it provides
=====================  =========  ======================================================================
``dsps_backend``       dsps       ``dsps.SSPData`` and the HDF5 file ``dsps.load_ssp_templates`` reads
``ppxf_backend``       ppxf       the ``.npz`` templates file ``ppxf.sps_util.sps_lib`` reads
``bagpipes_backend``   bagpipes   bagpipes' stellar-grid FITS file and ``use_smnet_grid`` to switch to it
``pystellibs_backend`` pystellibs ``SMNetStellib``, a generator behind pystellibs' ``Stellib`` interface
``fsps_backend``       fsps       FSPS ``$SPS_HOME/SPECTRA/C3K`` binary library files
=====================  =========  ======================================================================

They are registered under the entry-point group ``smnet_sps.backends``; ``smnet-sps plugins`` lists them.
"""
BACKENDS = ("dsps", "ppxf", "bagpipes", "pystellibs", "fsps")

__all__ = ["BACKENDS"]
