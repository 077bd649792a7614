"""``smnet-sps ssp`` / ``ssp-grid``: the command line, the FITS table of one SSP and its plot.

The command line, plotting and file writing live here; the physics is :mod:`smnet_sps.ssp` (called through
the module, ``S.ssp_spectrum``, so what replaces a function there is what the commands run).
"""

from __future__ import annotations

import numpy as np
from astropy import units as u

from . import ssp as S
from .imf import IMF_CHOICES
from .isochrones import FAMILY_CHOICES

__all__ = ["plot_ssp", "add_cli"]

# share of L_bol emitted beyond the wavelength grid above which `smnet-sps ssp` prints it (the default 91 A -
# 160 um grid stays below 7.5e-4; a released checkpoint's 3,000 A - 10 um grid misses 0.90 at 3 Myr)
BEYOND_GRID_PRINT_FRACTION = 1e-3


def _write_fits(spec, path):
    from astropy.io import fits
    from astropy.table import Table

    t = Table([spec.spectral_axis.to_value(u.AA), spec.flux.value], names=("WAVELENGTH", "FLUX"))
    if "lsf_fwhm" in spec.meta:
        from .lsf import stated_lsf_fwhm
        t["LSF_FWHM"] = stated_lsf_fwhm(spec.meta["lsf_fwhm"], spec.spectral_axis.size)
        t["LSF_FWHM"].unit = "Angstrom"
    t["WAVELENGTH"].unit = "Angstrom"
    flux_unit = u.L_sun / u.AA / u.M_sun
    t["FLUX"].unit = flux_unit
    from .output_files import ssp_provenance_cards
    hdu = fits.table_to_hdu(t)
    m = spec.meta
    h = hdu.header
    h["EXTNAME"] = "SSP"
    # the initial masses of MUNCOV: IMFMLOW (none) where the isochrone reaches the IMF's lower limit
    unc = m["uncovered_mass_range"]
    uncovered_to = float(unc[1]) if unc else float(m["imf_mass_range"][0])
    cards = [("LOGAGE", m["log_age"], "log10(age / yr)"), ("AGE_GYR", m["age_yr"] / 1e9, "age [Gyr]"),
             ("Z", m["Z"], "metal mass fraction"), ("LOGZSOL", m["logzsol"], "log10(Z / Zsun)"),
             ("ZSUN", m["zsun"], "solar Z of the isochrone family"),
             ("LOGLBOL", m["log_lbol"], "log10 Lbol [Lsun per Msun formed] (isochrone)"),
             ("LOGMASS", m["log_mass"], "log10 (stars+remnants) [Msun per Msun formed]"),
             ("MSTARS", m["mass_stars"], "surviving stellar mass [Msun per Msun formed]"),
             ("MREMNANT", m["mass_remnants"], "remnant mass [Msun per Msun formed]"),
             # stars below an isochrone's first point (MIST's young or metal-rich): in MSTARS, no light in
             # FLUX, and not in MISSFRAC (MIST 0.2 Myr solar: 0.42 of MSTARS 0.999, the file said nothing)
             ("MUNCOV", m["mass_uncovered"], "of MSTARS: unlit, below isochrone [Msun]"),
             ("UNCOVMHI", uncovered_to, "MUNCOV: IMFMLOW up to this mass [Msun]"),
             ("MISSFRAC", m["missing_fraction"], "fraction of Lbol without a spectrum"),
             ("OUTFRAC", m["outside_fraction"], "fraction of Lbol from stars outside coverage"),
             # the light the stars emit outside WAVELENGTH's range (a 3,000 A - 10 um grid: 0.90 at 3 Myr):
             # FLUX integrates to Lbol x (1 - MISSFRAC - BEYFRAC)
             ("BEYFRAC", m["beyond_grid_fraction"], "fraction of Lbol emitted beyond WAVELENGTH"),
             ("NPOINTS", m["n_points"], "isochrone points used"),
             # generator, version, weights' sha256, TAILFILL, isochrones, IMF and its limits (a Kroupa IMF to
             # 40 Msun read as the 0.08-120 default without them), options: as every FITS output of SSPs
             *ssp_provenance_cards(m),
             ("MEDIUM", m.get("wavelength_medium", "vacuum"), "wavelength medium of WAVELENGTH"),
             ("LSFSHAPE", m.get("lsf_shape", "box"), "line-spread function shape (column LSF_FWHM)"),
             # the FITS standard's spelling (astropy's format="fits" refused "Lsun/Angstrom/Msun")
             ("BUNIT", flux_unit.to_string("fits"), "FLUX per solar mass formed")]
    from .output_files import fits_text
    for key, val, comment in cards:
        if isinstance(val, str):
            val = fits_text(val)
        if isinstance(val, str) and len(val) + len(comment) > 64:
            comment = ""            # a long value (e.g. a model name) keeps its card whole, without a comment
        h[key] = (val, comment)
    for i, (name, lum) in enumerate(m["phase_luminosity"].items()):
        h[f"PHLUM{i}"] = (lum, f"L [Lsun/Msun] of phase: {name}"[:47])
        # the name whole: the comment cut Padova's "not flagged (main sequence to E-AGB)" to "not flagged
        # (main seque", which reads as the main sequence that name exists to avoid
        h[f"PHNAME{i}"] = (fits_text(name), f"phase of PHLUM{i}")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def plot_ssp(spec, path=None):
    """Log-log SSP spectrum (912 A - 5 um) stacked by evolutionary phase, and L_bol fraction per phase.

    Returns the :class:`matplotlib.figure.Figure` (drawn with the caller's matplotlib backend, which is left
    unchanged); also saves it to ``path`` when given (format from the extension, a missing folder created;
    :func:`~smnet_sps.output_files.save_plot`). Close it with ``matplotlib.pyplot.close(fig)`` when done.
    """
    import matplotlib.pyplot as plt

    m = spec.meta
    wave = spec.spectral_axis.to_value(u.AA)
    flux = spec.flux.value
    # checked before the figure exists (an error after it left an orphan figure in pyplot)
    need = ("isochrones", "imf", "age_yr", "Z", "generator", "outside_fraction", "missing_fraction",
            "phase_luminosity", "lbol")
    lacking = [k for k in need if k not in m]
    if lacking:
        raise ValueError(f"plot_ssp needs a spectrum from ssp_spectrum (meta {lacking} missing)")
    if not np.any(np.isfinite(flux) & (flux > 0)):
        raise ValueError("plot_ssp: the spectrum has no positive finite flux to draw")
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 1.2]})
    vis = (wave >= 912) & (wave <= 5e4)
    if "phase_flux" in m:
        ph = m["phase_flux"]
        names = sorted(ph, key=lambda k: -m["phase_luminosity"][k])
        base = np.zeros_like(flux)
        for name in names:
            top = base + ph[name]
            ax.fill_between(wave[vis], np.maximum(base[vis], 1e-30), np.maximum(top[vis], 1e-30), alpha=0.55,
                            label=name, lw=0)
            base = top
    ax.plot(wave[vis], flux[vis], "k", lw=0.8, label="total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    fv = flux[vis]
    fv = fv[fv > 0]
    if fv.size:
        ax.set_ylim(fv.max() * 1e-5, fv.max() * 3)
    ax.set_xlim(912, 5e4)
    ax.set_xlabel("vacuum wavelength [A]")          # as the fit, validate and comparison plots say it
    ax.set_ylabel(r"$L_\lambda$ [$L_\odot\,\AA^{-1}\,M_\odot^{-1}$]")
    age = m["age_yr"]        # 10 Myr, not "0.01 Gyr"
    age_text = f"{age / 1e9:.3g} Gyr" if age >= 1e9 else f"{age / 1e6:.3g} Myr"
    ax.set_title(f"SSP {m['isochrones']} {m['imf']}  age {age_text}  Z={m['Z']:.4g}\n"
                 f"({m['generator']}; outside coverage {100 * m['outside_fraction']:.3g}%, "
                 f"missing {100 * m['missing_fraction']:.3g}% Lbol)", fontsize=9)
    ax.legend(fontsize=7, loc="best", ncol=2, framealpha=0.8)
    pl = m["phase_luminosity"]
    names = sorted(pl, key=lambda k: -pl[k])
    frac = np.array([pl[k] for k in names]) / m["lbol"]
    bx.barh(names, frac, color="C0")
    bx.set_xlabel("fraction of L_bol")
    bx.set_xlim(0, 1)
    bx.invert_yaxis()
    bx.tick_params(labelsize=7)
    fig.tight_layout()
    from .output_files import save_plot
    return save_plot(fig, path, dpi=110)


FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
GRID_SUFFIXES = (".h5", ".hdf5", ".npz")


def _cmd_ssp(args):
    from .output_files import check_outputs, matplotlib_formats, write_out_and_plot
    # every output is checked before the SSP is computed: a bad path fails in a second, not after a minute
    outputs = check_outputs(args, {"out": (FITS_SUFFIXES, "FITS table"),
                                   "plot": (matplotlib_formats(), "plot")})
    age = S.cli_age(args.age)                      # a bad age fails before the model loads
    iso = S.cli_isochrones(args.isochrones)        # so does an unknown or uninstalled isochrone family,
    S._log_ages(age, iso)                          # an age or a metallicity outside its grid
    S.cli_metallicities(args, iso)
    S.get_imf(args.imf)                            # and an unknown IMF (--imf foo loaded a named model first)
    from .neural import load_generator_option
    gen = load_generator_option(args.generator, args.meta, device=args.device)
    spec = S.ssp_spectrum(age, Z=args.Z, logzsol=args.logzsol, imf=args.imf,
                        isochrones=iso, generator=gen, special_phases=args.special_phases,
                        outside=args.outside, by_phase=bool(args.plot), device=args.device)
    m = spec.meta
    wave = spec.spectral_axis.to_value(u.AA)
    wave_range = f"{wave.min():,.0f}-{wave.max():,.0f} A"
    top = sorted(m["phase_luminosity"].items(), key=lambda kv: -kv[1])[:4]
    lines = [f"SSP {m['isochrones']} / {m['imf']} / {m['generator']}: age {m['age_yr'] / 1e9:.4g} Gyr "
             f"(log t = {m['log_age']:.3f}), Z = {m['Z']:.4g} (logzsol {m['logzsol']:+.2f})",
             f"  log Lbol = {m['log_lbol']:.4f} Lsun/Msun   log M = {m['log_mass']:.4f} "
             f"(stars {m['mass_stars']:.4f} + remnants {m['mass_remnants']:.4f} Msun per Msun formed)",
             f"  {m['n_points']} isochrone points; Lbol fraction from stars outside coverage "
             f"{m['outside_fraction']:.3g} (outside={m['outside']}), "
             f"without a spectrum {m['missing_fraction']:.3g}"
             # said only where it matters (a short grid's SSP is not the bolometric light it looks like)
             + (f", emitted beyond the {wave_range} wavelength grid {m['beyond_grid_fraction']:.3g}"
                if m["beyond_grid_fraction"] > BEYOND_GRID_PRINT_FRACTION else ""),
             "  Lbol by phase: " + ", ".join(f"{k} {v / m['lbol']:.1%}" for k, v in top)]
    wrote = write_out_and_plot(args, outputs, lambda path: _write_fits(spec, path), lambda: plot_ssp(spec))
    lines += [f"  wrote {path}" for path in wrote.values()]
    print("\n".join(lines))
    return 0


def _cmd_ssp_grid(args):
    from .cli import show_progress
    from .output_files import atomic_output, check_outputs
    outputs = check_outputs(args, {"out": (GRID_SUFFIXES, "SSP grid")})   # fail before the (slow) grid
    # `--ages` / `--Z` given without a value must not silently mean "all tabulated" (that is: omit the option)
    for option, values in (("--ages", args.ages), ("--Z", args.Z), ("--logzsol", args.logzsol)):
        if values is not None and len(values) == 0:
            raise ValueError(f"{option} was given without a value; give one or more values "
                             f"(e.g. --ages 1Gyr 3Gyr, --Z 0.002 0.0152) or leave {option} out for all "
                             "tabulated values")
    iso = S.cli_isochrones(args.isochrones)        # an unknown or uninstalled family fails before any work
    ages = S.cli_ages(args.ages, n_ages=args.n_ages)    # so do bad ages and metallicities
    if args.ages is None and args.n_ages is not None:
        from .cli import warn_n_ages_unused
        warn_n_ages_unused(args.n_ages, "without --ages every tabulated age is computed")
    zs = S.cli_metallicities(args, iso)
    S._age_array(ages, iso), S._z_array(zs, iso)    # ranges checked here, not after a named model has loaded
    S.get_imf(args.imf)                            # an unknown IMF too
    from . import distributed
    if distributed.wants_cluster(args):        # --scheduler / --workers: the same grid as Dask tasks
        from .isochrones import is_family_name
        if not is_family_name(args.isochrones):
            # the workers load families by name: a file (a CMD output, a converted .npz) failed there as
            # "unknown isochrone family", after the cluster had started
            raise ValueError("--scheduler / --workers take an isochrone family (parsec, padova, mist); a "
                             "file of isochrones runs in this process: leave out --scheduler / --workers")
        # the workers run the generator and may have CUDA where this client has none: the name only, as
        # 'mags --points' checks it ('--device gpu' started the cluster, each worker failed, a store was left)
        from .neural import check_device_name
        check_device_name(args.device)
        # handed over parsed (exact float text in years): a range's --n-ages and --logzsol are applied here
        import argparse
        cluster_args = argparse.Namespace(**{
            **vars(args), "Z": None if zs is None else [float(z) for z in zs],
            "ages": None if ages is None else [f"{float(a)!r}yr" for a in ages]})
        return distributed.cli_ssp_grid(cluster_args, outputs["out"])
    from .neural import load_generator_option
    gen = load_generator_option(args.generator, args.meta, device=args.device)
    grid = S.ssp_grid(ages, zs, imf=args.imf, isochrones=iso, generator=gen,
                    special_phases=args.special_phases, outside=args.outside, progress=show_progress(args),
                    device=args.device)
    with atomic_output(outputs["out"], overwrite=args.overwrite) as tmp:
        S.save_ssp_grid(grid, tmp)
    print(f"wrote {args.out}: {grid.ssp_flux.shape[0]} Z x {grid.ssp_flux.shape[1]} ages x "
          f"{grid.ssp_flux.shape[2]} wavelengths ({grid.attrs['n_points']} isochrone points, "
          f"{grid.attrs['seconds']:.1f} s); max missing Lbol fraction {np.max(grid.missing_fraction):.3g}")
    return 0


def _common_args(p):
    from .neural import add_meta_option
    p.add_argument("--imf", default="kroupa", help=IMF_CHOICES)
    p.add_argument("--isochrones", default="parsec",
                   help=f"{FAMILY_CHOICES}; or the path of your own isochrone file: an output of PARSEC's "
                        "CMD web form, or a table written by convert_fsps_isochrones (.npz)")
    p.add_argument("--generator", default=None,
                   help="'default' (shipped model), 'semi-empirical' (calibrated on MILES stars), "
                        "'blackbody', a model directory or a released SM-Net checkpoint (.pt, with --meta)")
    add_meta_option(p)
    add_backend_options(p)


def add_backend_options(p):
    """``--special-phases``, ``--outside`` and ``--device``: the backend options of every command that builds
    SSPs (``ssp``, ``ssp-grid``, ``mags``), one definition (``mags`` had none of them: its SSPs were always
    special_phases="model", outside="extrapolate")."""
    p.add_argument("--special-phases", default="model", choices=("model", "dedicated"),
                   help="TP-AGB, post-AGB and Wolf-Rayet stars: 'model' (default) generates them like any "
                        "star; 'dedicated' takes Lancon/Aringer, Rauch and CMFGEN spectra as FSPS does, "
                        "CMFGEN also for the hot stripped massive stars the isochrones do not flag as WR "
                        "(docs/ssp.md, 'Young populations')")
    p.add_argument("--outside", default="extrapolate", choices=("exclude", "blackbody", "extrapolate"),
                   help="stars outside the generator's coverage: 'extrapolate' (default, flagged), "
                        "'blackbody' (Planck spectrum of the same Teff and L) or 'exclude' (their L_bol "
                        "reported as missing)")
    add_device_option(p)


def add_device_option(p):
    """``--device``: where a command's model runs (``ssp``, ``ssp-grid``, ``mags``, ``fit``)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when present; the default), cpu or cuda")


def add_cli(sub):
    from .cli import AGES_HELP, DEFAULT_N_AGES, MAX_N_AGES
    p = sub.add_parser("ssp", help="spectrum of one simple stellar population",
                       description="Spectrum of an SSP [L_sun/A per M_sun formed] -> FITS table and a plot.")
    p.add_argument("--age", required=True, help="age with unit, e.g. '10Gyr', '500 Myr', '1e9 yr'")
    p.add_argument("--Z", type=float, default=None,
                   help="metal mass fraction (default: the family's solar Z, 0.0152 PARSEC, 0.019 Padova, "
                        "0.0142 MIST; a file of one Z: its Z)")
    p.add_argument("--logzsol", type=float, default=None,
                   help="[M/H] = log10(Z/Zsun) [dex] with the family's Zsun, instead of --Z")
    _common_args(p)
    p.add_argument("--out", default=None,
                   help="output FITS table (WAVELENGTH, FLUX); extension .fits, .fit, .fts or .fits.gz")
    p.add_argument("--plot", default=None, help="output plot (.png, .pdf, .svg, ...: any matplotlib format)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_ssp)

    g = sub.add_parser("ssp-grid", help="grid of SSP spectra (DSPS layout) to .h5 or .npz",
                       description="SSP grid over ages x Z in one batched generator pass.")
    g.add_argument("--ages", nargs="*", default=None, help=f"{AGES_HELP} (default: all tabulated)")
    g.add_argument("--n-ages", type=int, default=None,
                   help=f"number of ages of each 'lo-hi' range, 2-{MAX_N_AGES} (default {DEFAULT_N_AGES})")
    g.add_argument("--Z", nargs="*", default=None,
                   help="metal mass fractions, several or comma-separated (default: all tabulated)")
    g.add_argument("--logzsol", nargs="*", default=None,
                   help="[M/H] = log10(Z/Zsun) [dex] with the family's Zsun, instead of --Z; several or "
                        "comma-separated")
    _common_args(g)
    g.add_argument("--out", required=True,
                   help="output .h5 / .hdf5 (DSPS's template file: ssp_flux in L_sun/Hz per M_sun, read as "
                        "it is by dsps.load_ssp_templates) or .npz (ssp_flux in L_sun/A per M_sun)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    from .distributed import add_cluster_args
    add_cluster_args(g)                         # --scheduler / --workers (smnet-sps[dask])
    g.set_defaults(func=_cmd_ssp_grid)
