"""Physical constants and paths shared by every stage (cgs unless the name says otherwise)."""
import os
from pathlib import Path

from astropy import constants as const
from astropy import units as u

SIGMA_SB = const.sigma_sb.cgs.value      # erg s^-1 cm^-2 K^-4
L_SUN = const.L_sun.cgs.value            # erg s^-1 (IAU 2015 nominal, 3.828e33)
R_SUN = const.R_sun.cgs.value            # cm
C_ANGSTROM = const.c.to(u.AA / u.s).value  # speed of light [A/s]
PC_CM = const.pc.cgs.value               # cm
MBOL_SUN = 4.74                          # IAU 2015 B2
# exact in the 2019 SI; the blackbody's constants, one place for every stage
PLANCK_H = 6.62607015e-27                # erg s
LIGHT_C = 2.99792458e10                  # cm / s
BOLTZMANN_K = 1.380649e-16               # erg / K
HC_OVER_K = PLANCK_H * LIGHT_C / BOLTZMANN_K * 1e8   # h c / k [A K]: x = HC_OVER_K / (lambda T)

FLAM_UNIT = u.Unit("erg s-1 cm-2 AA-1")   # surface flux F_lambda
LLAM_UNIT = u.Unit("erg s-1 AA-1")        # L_lambda of one star
SSP_UNIT = u.L_sun / u.AA                 # per M_sun formed (the unit says L_sun/A; metadata says per M_sun)
# L_sun per M_sun formed that ssp_flux integrated over wavelength may give for the brightest SSP of a grid:
# L_bol is ~0.1-0.3 at 13 Gyr and ~1e3 at a few Myr, less on a grid covering part of the spectrum. L_nu
# [L_sun / Hz] taken as L_lambda gives ~1e-11 of it (smnet-sps' .h5 files and DSPS hold L_nu), erg/s in
# place of L_sun 4e33 times it (checked by the fitting templates and the plugins' writers)
SSP_LBOL_RANGE = (1e-3, 1e6)

# Physical domain of stellar parameters accepted by every generator (inclusive). Wider than any training box:
# points inside it but outside a model's coverage are answered with a CoverageWarning / inside=False flag;
# points outside it are refused with a ValueError. log g reaches 15 for the remnant phases of the Padova
# isochrones (log g 13.8) and neutron stars; [M/H] -6 is below the most metal-poor stars known.
TEFF_DOMAIN = (500.0, 1.0e6)             # K
LOGG_DOMAIN = (-3.0, 15.0)               # log10(g / cm s^-2)
LOGZ_DOMAIN = (-6.0, 2.0)                # [M/H], dex
LOGL_DOMAIN = (-10.0, 10.0)              # log10(L / L_sun) of a star (isochrones: about -6 .. 7)
# each parameter's domain and unit, as the error messages of every stage name them
PARAMETER_DOMAINS = {"teff": (TEFF_DOMAIN, "K"), "logg": (LOGG_DOMAIN, "dex (cgs)"),
                     "logz": (LOGZ_DOMAIN, "dex")}

# Nominal grid step per input (log10 Teff, log g, [M/H], each in dex): the unit in which distances between
# parameter points are measured everywhere (mixture hole test, coverage flags, interpolation baselines,
# training-sample weights and input jitter), so that one step along any axis counts alike.
NODE_STEPS = (0.02, 0.5, 0.5)

PACKAGE_DATA = Path(__file__).parent / "data"
LIBRARIES_ENV = "SMNET_SPS_LIBRARIES"


def default_library_dir():
    """Directory holding the native stellar libraries.

    Order: $SMNET_SPS_LIBRARIES, then ``../shared/data/libraries`` next to the current directory or
    next to the source checkout. Returns ``None`` when none exists.
    """
    candidates = []
    if os.environ.get(LIBRARIES_ENV):
        candidates.append(Path(os.environ[LIBRARIES_ENV]))
    candidates.append(Path.cwd() / ".." / "shared" / "data" / "libraries")
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "libraries")
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    return None


def shared_data_dir():
    """The ``shared/data`` folder beside the checkout, or ``None`` (used by benchmarks and some tests)."""
    for path in (Path.cwd() / ".." / "shared" / "data",
                 Path(__file__).resolve().parents[2] / "shared" / "data"):
        if path.is_dir():
            return path.resolve()
    return None
