"""Common wavelength grid, flux-conserving resampling and the union grid file (build/save/load/info/plot)."""
import os

import numpy as np
import pytest
from astropy import units as u

from smnet_sps.cli import main
from smnet_sps.grid import (PHASE_FILE, build_grid, grid_info, load_grid, load_phase_libraries, save_grid,
                            skipped_libraries)
from smnet_sps.libraries import LIBRARIES, PHASE_LIBRARIES, UNION_LIBRARIES, nextgen, read_library
from smnet_sps.wavegrid import bin_edges, default_wavelength, resample


@pytest.fixture(scope="module")
def libdir(fixtures_dir):
    return fixtures_dir / "libraries"


@pytest.fixture(scope="module")
def wave():
    return default_wavelength().to_value(u.AA)


# ------------------------------------------------------------------------------------------ wavegrid
def test_default_wavelength_grid():
    w = default_wavelength()
    assert w.unit == u.AA and w.shape == (1221,)
    assert w[0].value == 91.0 and w[-1].value == 1.6e6
    steps = np.diff(w.value)
    assert steps[(w.value[1:] > 1500) & (w.value[1:] < 2900)].max() <= 12.0      # ~10 A in the UV
    assert steps[(w.value[1:] > 3100) & (w.value[1:] < 10000)].max() == 20.0     # 10-20 A in the optical


def test_resample_conserves_nextgen_integral(libdir, wave):
    _, _, _, w_in, f_in = nextgen.read_file(libdir / "nextgen_phoenix/Z-0.0/lte58-4.5-0.0.NextGen.spec.gz")
    out, mask = resample(w_in, f_in, wave)
    width = np.diff(np.clip(bin_edges(wave), w_in[0], w_in[-1]))
    native = np.trapezoid(f_in, w_in)
    assert abs(np.sum(out[mask] * width[mask]) / native - 1) < 0.005
    # also band by band: the V band region keeps its flux to 0.5 %
    band = (wave > 5000) & (wave < 6000)
    sel = (w_in > wave[band][0] - 10) & (w_in < wave[band][-1] + 10)
    edges = bin_edges(wave)[np.r_[np.flatnonzero(band), np.flatnonzero(band)[-1] + 1]]
    fine = np.interp(np.linspace(edges[0], edges[-1], 200001), w_in[sel], f_in[sel])
    assert abs(np.sum(out[band] * np.diff(edges)) / (fine.mean() * (edges[-1] - edges[0])) - 1) < 0.005


def test_resample_constant_stays_constant_and_vectorised(wave):
    w_in = np.linspace(500.0, 30000.0, 7001)
    flux = np.vstack([np.full(w_in.size, 3.0), np.full(w_in.size, 7.5)])
    out, mask = resample(w_in, flux, wave)
    assert out.shape == (2, wave.size)
    np.testing.assert_allclose(out[0, mask], 3.0, rtol=1e-12)
    np.testing.assert_allclose(out[1, mask], 7.5, rtol=1e-12)


def test_resample_unknown_pixels_are_nan_and_masked(libdir, wave):
    _, _, _, w_in, f_in = nextgen.read_file(libdir / "nextgen_phoenix/Z-0.0/lte58-4.5-0.0.NextGen.spec.gz")
    out, mask = resample(w_in, f_in, wave)
    below = wave < 99.0          # whole bin below NextGen's first wavelength (100 A)
    assert below.sum() == 4 and not mask[below].any() and np.isnan(out[below]).all()
    assert mask[~below].all() and np.all(out[~below] >= 0)
    # a library that stops early: every bin beyond its range is unknown, never 0
    short = w_in < 20000
    out2, mask2 = resample(w_in[short], f_in[short], wave)
    assert not mask2[wave > 20100].any() and np.isnan(out2[wave > 20100]).all()


def test_resample_non_finite_input_pixels_are_unknown_only_where_they_fall(wave):
    """A NaN (or inf) input pixel is unknown: only the output bins that overlap it are NaN with mask False;
    the running sum made every pixel redward of it NaN while the mask said known (80 of 89 pixels)."""
    from smnet_sps.wavegrid import POINT_SAMPLE_WIDTH
    w_in = np.linspace(1000.0, 10000.0, 901)
    clean = 1e8 * w_in ** -2.0
    w_out = np.linspace(1100.0, 9900.0, 89)
    reference, ref_mask = resample(w_in, clean, w_out)
    holed = clean.copy()
    holed[100] = np.nan                                     # 2,000 A: edges 1,995-2,005 A
    out, mask = resample(w_in, holed, w_out)
    overlaps = (bin_edges(w_out)[:-1] < 2005.0) & (bin_edges(w_out)[1:] > 1995.0)
    assert overlaps.sum() == 1 and ref_mask.all()
    np.testing.assert_array_equal(mask, ~overlaps)
    assert np.isnan(out[overlaps]).all()
    np.testing.assert_allclose(out[mask], reference[mask], rtol=1e-12)
    # several spectra share one mask: a pixel unknown in one is unknown (NaN) in all, the others untouched
    both = np.vstack([holed, 2 * clean])
    both[0, 100] = np.inf
    out2, mask2 = resample(w_in, both, w_out)
    np.testing.assert_array_equal(mask2, ~overlaps)
    assert np.isnan(out2[:, ~mask2]).all()
    np.testing.assert_allclose(out2[1, mask2], 2 * reference[mask2], rtol=1e-12)
    # a sampled (wide) pixel next to an unknown input point is unknown too
    w_far = np.r_[np.geomspace(5e4, 2.1e5, 400), 7.1e5, 1.21e6, 1.7e6]
    f_far = 3e14 * w_far ** -4.0
    f_far[-2] = np.nan                                      # 121 um: the 80-160 um pixels sample it
    far, far_mask = resample(w_far, f_far, wave, point_above=POINT_SAMPLE_WIDTH)
    lost = (wave > 7.1e5) & (wave < 1.7e6)
    assert lost.sum() == 5 and not far_mask[lost].any() and np.isnan(far[lost]).all()
    assert np.isfinite(far[far_mask]).all() and far_mask[(wave > 5e4) & (wave < 7.1e5)].all()


def test_resample_samples_the_wide_far_infrared_pixels_at_their_wavelength(wave):
    """A Rayleigh-Jeans tail sampled as NextGen is (21, 71, 121 um): each pixel wider than POINT_SAMPLE_WIDTH
    takes the flux density at its own wavelength (exact for a power law), as CK04 and BaSeL tabulate it; the
    bin average put the 21 um flux into the 40 um pixel (11x) and made the 10 um pixel (10-15 um) 0.47x."""
    from smnet_sps.wavegrid import POINT_SAMPLE_WIDTH
    w_in = np.r_[np.geomspace(5e4, 2.1e5, 400), 7.1e5, 1.21e6, 1.7e6]
    flux = 3e14 * w_in ** -4.0
    wide = np.diff(bin_edges(wave)) > POINT_SAMPLE_WIDTH * wave
    assert wide.sum() == 9 and (wave[wide] >= 1e5).all()
    sampled, mask = resample(w_in, flux, wave, point_above=POINT_SAMPLE_WIDTH)
    np.testing.assert_allclose(sampled[wide], 3e14 * wave[wide] ** -4.0, rtol=1e-10)
    averaged, mask_avg = resample(w_in, flux, wave)
    assert averaged[wave == 4e5][0] / (3e14 * 4e5 ** -4.0) > 5           # what it was
    # every narrow pixel is the bin average, bit for bit
    np.testing.assert_array_equal(sampled[~wide & mask], averaged[~wide & mask])
    np.testing.assert_array_equal(mask, mask_avg)
    # a wide pixel whose wavelength lies beyond the input is unknown, not the last value carried on
    short, short_mask = resample(w_in[:-1], flux[:-1], wave, point_above=POINT_SAMPLE_WIDTH)
    assert not short_mask[wave > 1.21e6].any() and np.isnan(short[wave > 1.21e6]).all()
    for bad in (0.0, -0.1, np.nan, "wide"):
        with pytest.raises(ValueError, match="point_above must be a number > 0"):
            resample(w_in, flux, wave, point_above=bad)
    # a Quantity flux keeps its unit
    per_aa = u.erg / u.s / u.cm ** 2 / u.AA
    assert resample(w_in, flux * per_aa, wave)[0].unit == per_aa


def test_grid_far_infrared_follows_rayleigh_jeans_for_nextgen(built, libdir):
    """In the built grid NextGen's far infrared falls as lambda^-4 from pixel to pixel within 10 %, as CK04's
    tabulated samples do (bin averages gave 0.5-14x steps)."""
    g = load_grid(built[0])
    far = g.wavelength >= 1e5                       # the 9 wide pixels, 10-160 um
    for name in ("nextgen", "ck04"):
        rows = np.flatnonzero(g.library_id == g.library_names.index(name))
        f = g.flux[np.ix_(rows, np.flatnonzero(far))]
        slope = np.log(f[:, 1:] / f[:, :-1]) / np.log(g.wavelength[far][1:] / g.wavelength[far][:-1])
        assert np.all(np.abs(slope + 4.0) < 0.5), (name, slope.round(2))


def test_resample_rejects_bad_input(wave):
    with pytest.raises(ValueError, match="strictly increasing"):
        resample([1.0, 3.0, 2.0], [1.0, 1.0, 1.0], wave)
    with pytest.raises(ValueError, match="n_in = 3"):
        resample([1.0, 2.0, 3.0], [1.0, 1.0], wave)
    import astropy.units as u
    with pytest.raises(ValueError, match="wave_in must be a wavelength"):
        resample([1.0, 2.0, 3.0] * u.s, [1.0, 1.0, 1.0], wave)
    # a wavelength in another unit is converted: nm in, the same as Angstrom
    np.testing.assert_allclose(bin_edges(wave[:50] / 10 * u.nm), bin_edges(wave[:50]), rtol=1e-12)


# ---------------------------------------------------------------------------------------- union grid
@pytest.fixture(scope="module")
def built(libdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    h5, png, npz = out / "grid.h5", out / "coverage.png", out / "phase.npz"
    rc = main(["grid", "build", "--libraries", str(libdir), "--out", str(h5), "--plot", str(png),
               "--phase-out", str(npz), "--no-progress"])
    assert rc == 0
    return h5, png, npz


def test_build_load_round_trip_via_cli(built, libdir):
    h5, _, _ = built
    grid = load_grid(h5)
    expected = {n: len(read_library(n, libdir)) for n in UNION_LIBRARIES}
    assert grid.library_names == list(UNION_LIBRARIES)
    assert {n: int(grid.select(n).sum()) for n in UNION_LIBRARIES} == expected
    n = sum(expected.values())
    assert grid.flux.shape == (n, 1221) and grid.flux.dtype == np.float32
    assert grid.mask.shape == grid.flux.shape and grid.mask.dtype == bool
    assert np.isnan(grid.flux[~grid.mask]).all() and np.isfinite(grid.flux[grid.mask]).all()
    # NextGen starts at 100 A: its first four pixels are unknown, everything else known
    ng = grid.select("nextgen")
    assert not grid.mask[ng][:, :4].any() and grid.mask[ng][:, 4:].all()
    assert grid.libraries["ck04"]["n_dropped"] == 9
    for name in ("ck04", "nextgen", "basel22"):
        assert grid.libraries[name]["bolometric_deviation"]["max_abs"] < 0.015
    assert all(s.split("/")[0] for s in grid.source_file)
    assert len(grid.provenance) >= 20
    for line in grid.provenance:
        rel, sha = line.split()
        assert (libdir / rel).is_file() and len(sha) == 64
    assert not any("rauch_tmap" in line for line in grid.provenance)     # not a default library
    assert skipped_libraries(grid) == {}
    assert set(grid.phase_libraries) == set(PHASE_LIBRARIES)
    wn = grid.phase_libraries["cmfgen_wn"]
    assert wn.flux.shape == (2, 1221) and "Smith" in wn.meta["citation"]


def test_loaded_grid_saves_and_loads_unchanged(built, tmp_path):
    """A grid read from disk (edited, subset) can be written again: its array attributes (lsf_fwhm) too."""
    grid = load_grid(built[0])
    save_grid(grid, tmp_path / "again.h5")
    again = load_grid(tmp_path / "again.h5")
    np.testing.assert_array_equal(again.flux, grid.flux)
    np.testing.assert_array_equal(again.attrs["lsf_fwhm"], grid.attrs["lsf_fwhm"])
    assert again.library_names == grid.library_names and again.libraries == grid.libraries


def test_a_loaded_grid_subset_saves_its_own_library_names(built, tmp_path):
    """load_grid copies every file attribute into grid.attrs; re-saved, those stale copies must not replace
    the library names and units save_grid writes (a NextGen-only subset came back labelled ck04)."""
    import dataclasses
    grid = load_grid(built[0])
    keep = grid.select("nextgen")
    sub = dataclasses.replace(
        grid, teff=grid.teff[keep], logg=grid.logg[keep], logz=grid.logz[keep],
        library_id=np.zeros(int(keep.sum()), np.int16), library_names=["nextgen"], flux=grid.flux[keep],
        mask=grid.mask[keep], source_file=grid.source_file[keep],
        libraries={"nextgen": grid.libraries["nextgen"]},
        attrs={**grid.attrs, "flux_unit": "stale", "wavelength_unit": "stale"})
    save_grid(sub, tmp_path / "nextgen_only.h5")
    again = load_grid(tmp_path / "nextgen_only.h5")
    assert again.library_names == ["nextgen"]
    assert int(again.select("nextgen").sum()) == int(keep.sum()) > 0
    np.testing.assert_array_equal(again.teff, grid.teff[keep])
    assert again.attrs["flux_unit"] == "erg s-1 cm-2 AA-1" and again.attrs["wavelength_unit"] == "AA"


def test_saved_flux_integrates_to_sigma_teff4(built):
    from smnet_sps.constants import SIGMA_SB
    grid = load_grid(built[0])
    width = np.diff(bin_edges(grid.wavelength))
    sel = grid.select("basel22") | grid.select("nextgen")
    ratio = np.nansum(grid.flux[sel] * width, axis=1) / (SIGMA_SB * grid.teff[sel] ** 4)
    assert np.all(np.abs(ratio - 1) < 0.01), ratio


def test_grid_info_cli(built, capsys):
    assert main(["grid", "info", str(built[0])]) == 0
    text = capsys.readouterr().out
    for name in UNION_LIBRARIES + PHASE_LIBRARIES:
        assert name in text
    assert "ck04                    24     9" in text          # count and dropped columns
    assert "ipagb" in text and "provenance" in text and "SKIPPED" not in text


# ------------------------------------------------------------------- a library that cannot be read
def test_degenerate_library_is_skipped_logged_and_recorded(libdir, tmp_path, capsys):
    """Naming every library (rauch_tmap included): the degenerate Rauch FITS is skipped, loudly, and
    recorded."""
    lines = []
    grid = build_grid(libdir, only=list(LIBRARIES), progress=False, log=lines.append)
    assert "rauch_tmap" not in grid.library_names and grid.library_names == list(UNION_LIBRARIES)
    loud = [ln for ln in lines if "SKIPPED" in ln]
    assert any("rauch_tmap" in ln and "stellib_Rauch.grid.fits: 4 rows but only 1 distinct spectrum" in ln
               for ln in loud), lines
    reasons = skipped_libraries(grid)
    assert list(reasons) == ["rauch_tmap"] and "degenerate" in reasons["rauch_tmap"]
    save_grid(grid, tmp_path / "g.h5")
    assert skipped_libraries(load_grid(tmp_path / "g.h5")) == reasons       # survives the file round trip
    assert main(["grid", "info", str(tmp_path / "g.h5")]) == 0
    text = capsys.readouterr().out
    assert "SKIPPED" in text and "rauch_tmap: ValueError" in text and "1 distinct spectrum" in text
    assert "SKIPPED" in grid_info(grid)


def test_strict_build_fails_on_degenerate_library(libdir, tmp_path, capsys):
    out = tmp_path / "s.h5"
    rc = main(["grid", "build", "--libraries", str(libdir), "--out", str(out), "--only", "cm87,rauch_tmap",
               "--strict", "--no-progress"])
    assert rc == 1 and not out.exists()
    assert "rauch_tmap" in capsys.readouterr().err
    # without --strict the same build succeeds without it
    rc = main(["grid", "build", "--libraries", str(libdir), "--out", str(out), "--only", "cm87,rauch_tmap",
               "--no-progress"])
    assert rc == 0 and load_grid(out).library_names == ["cm87"]


def test_impossible_stellar_parameters_fail_strict_and_skip_otherwise(libdir, tmp_path, capsys):
    """A star outside the generators' physical domain (log g = -99 in stellibCM.dat) is a damaged file, like
    NaN flux: --strict fails naming the file, the star and the range; otherwise the library is skipped and
    recorded (it was built into the grid, whose info then read log g -99..8)."""
    import shutil

    libs = tmp_path / "libs"
    for folder in ("pegase_cm87_hotstars", "basel22_lejeune_solar"):
        shutil.copytree(libdir / folder, libs / folder)
    path = libs / "pegase_cm87_hotstars" / "stellibCM.dat"
    lines = path.read_text().splitlines(keepends=True)
    assert lines[2].startswith("5.000 5.50 ")                     # star 2 of the file
    lines[2] = lines[2].replace("5.000 5.50 ", "5.000 -99.0 ", 1)
    path.write_text("".join(lines))
    out = tmp_path / "g.h5"
    assert main(["grid", "build", "--libraries", str(libs), "--out", str(out), "--only", "cm87,basel22",
                 "--strict", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()
    assert f"{path}: star 2 of this file" in err and "log g = -99, outside the physical range -3 .. 15" in err
    grid = build_grid(libs, only="cm87,basel22", progress=False, log=lambda s: None)
    assert grid.library_names == ["basel22"] and "log g = -99" in skipped_libraries(grid)["cm87"]
    assert grid.logg.min() >= -3


def test_build_fails_when_no_library_can_be_read(libdir):
    with pytest.raises(ValueError, match="no library could be read.*rauch_tmap.*distinct"):
        build_grid(libdir, only="rauch_tmap", progress=False, log=lambda s: None)


def test_coverage_plot_written(built, tmp_path):
    assert built[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and built[1].stat().st_size > 10_000
    png = tmp_path / "again.png"
    assert main(["grid", "info", str(built[0]), "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_only_and_unknown_names(libdir, tmp_path, capsys):
    grid = build_grid(libdir, only="basel22,cm87", progress=False, log=lambda s: None)
    assert grid.library_names == ["basel22", "cm87"] and not grid.phase_libraries
    rc = main(["grid", "build", "--libraries", str(libdir), "--out", str(tmp_path / "x.h5"), "--only",
               "kurucz"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "kurucz" in err and "valid names: ck04, nextgen" in err
    assert not (tmp_path / "x.h5").exists()


def test_save_is_atomic_and_leaves_no_temp_files(libdir, tmp_path):
    grid = build_grid(libdir, only=["cm87"], progress=False, log=lambda s: None)
    save_grid(grid, tmp_path / "g.h5")
    assert os.listdir(tmp_path) == ["g.h5"]


def test_load_grid_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_grid(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(ValueError, match="bad.h5"):
        load_grid(bad)
    import h5py
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="other.h5: not a smnet-sps union grid"):
        load_grid(other)


def test_missing_library_dir_cli(tmp_path, capsys):
    assert main(["grid", "build", "--libraries", str(tmp_path / "none"), "--out",
                 str(tmp_path / "g.h5")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_one_library_folder_given_as_the_libraries_folder_is_one_line(fixtures_dir, tmp_path, capsys):
    """--libraries pointing at one library's own folder (ck04_castelli_kurucz/) printed 11 SKIPPED lines and
    then an error of ~3,500 characters repeating '<root>/<folder> does not exist (give the folder ...)' for
    each library; it is now one line that says to give its parent."""
    root = fixtures_dir / "libraries"
    assert main(["grid", "build", "--libraries", str(root / "ck04_castelli_kurucz"), "--out",
                 str(tmp_path / "g.h5"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "SKIPPED" not in err and len(err.strip().splitlines()) == 1 and len(err) < 600
    assert f"it is the ck04_castelli_kurucz/ library folder itself: give its parent, {root}" in err
    assert not (tmp_path / "g.h5").exists()
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds none of the library folders asked for "
                                                r"\(pegase_cm87_hotstars/\); give the folder holding them"):
        build_grid(tmp_path / "elsewhere", only="cm87", progress=False)


# ----------------------------------------------------------------------------------- phase libraries
def test_phase_npz_round_trip(built):
    phases = load_phase_libraries(built[2])
    assert set(phases) - {"wavelength"} == set(PHASE_LIBRARIES)
    orich = phases["tpagb_orich"]
    assert orich["teff"].unit == u.K and orich["flux"].shape == (2, 1221)
    assert orich["teff_table"].shape == (2, 22)
    w = phases["wavelength"].to_value(u.AA)          # the zero padding below 3,523 A is unknown, not dark
    assert not orich["mask"][:, w < 3500].any() and not (orich["mask"] & (orich["flux"].value == 0)).any()
    assert "Lancon" in orich["citation"]


def test_shipped_phase_libraries():
    assert PHASE_FILE.stat().st_size < 2_000_000
    phases = load_phase_libraries()
    assert set(phases) - {"wavelength"} == set(PHASE_LIBRARIES)
    w = phases["wavelength"].to_value(u.AA)
    np.testing.assert_array_equal(w, default_wavelength().value)
    counts = {n: len(phases[n]["teff"]) for n in PHASE_LIBRARIES}
    assert counts == {"cmfgen_wn": 60, "cmfgen_wc": 60, "rauch_pagb": 30, "tpagb_orich": 9, "tpagb_crich": 5,
                      "tpagb_crich_aringer": 9}
    for n in PHASE_LIBRARIES:
        f, m = phases[n]["flux"].value, phases[n]["mask"]
        assert np.isnan(f[~m]).all() and np.isfinite(f[m]).all() and (f[m] >= 0).all()
    # Aringer models start at 3523 A: bluer pixels are unknown, not zero; so do Lancon & Mouhcine's, whose
    # files pad 100-3,488 A with zeros (352 known zero pixels per spectrum before)
    for name in ("tpagb_crich_aringer", "tpagb_orich", "tpagb_crich"):
        f, m = phases[name]["flux"].value, phases[name]["mask"]
        assert not m[:, w < 3500].any() and m[:, w > 3600].all(), name
        assert not (m & (f == 0)).any(), name
    # Rauch post-AGB: all 15 Teff columns (50-190 kK), solar and halo, no log g in the file
    pagb = phases["rauch_pagb"]
    np.testing.assert_allclose(pagb["teff"].value, np.tile(np.arange(50000.0, 190001.0, 10000.0), 2))
    np.testing.assert_allclose(pagb["logz"], [0.0] * 15 + [-1.0] * 15)
    assert "Rauch 2003" in pagb["citation"] and pagb["mask"].all()


def test_load_phase_libraries_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_phase_libraries(tmp_path / "missing.npz")
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="x.npz: not a phase-library"):
        load_phase_libraries(tmp_path / "x.npz")


@pytest.mark.parametrize("damage", ["truncated", "flipped", "method", "encrypted", "npy_header"])
def test_a_damaged_phase_library_file_is_named(tmp_path, damage):
    """A truncated phase-library .npz (a copy cut short) raised zipfile's bare BadZipFile 'File is not a zip
    file', and one with damaged bytes zlib's 'Error -3 while decompressing data', naming neither the file
    nor what it is; a damaged header's compression method (NotImplementedError) or 'encrypted' flag
    (RuntimeError) still did, and a damaged .npy header numpy's tokenize.TokenError."""
    from zip_damage import damage_npy_header, damage_zip_member
    np.savez_compressed(tmp_path / "p.npz", names=np.array(["a"]), wavelength=np.linspace(1e3, 1e4, 5000))
    raw = bytearray((tmp_path / "p.npz").read_bytes())
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "flipped":
        raw[200:300] = bytes(b ^ 0xFF for b in raw[200:300])
    (tmp_path / "p.npz").write_bytes(bytes(raw))
    if damage in ("method", "encrypted"):
        damage_zip_member(tmp_path / "p.npz", tmp_path / "p.npz", "wavelength.npy",
                          **({"method": 99} if damage == "method" else {"encrypted": True}))
    elif damage == "npy_header":
        damage_npy_header(tmp_path / "p.npz", tmp_path / "p.npz", "wavelength.npy", old=b",)", new=b", ")
    with pytest.raises(ValueError, match=r"p.npz is not a readable phase-library .npz "
                                         r"\((BadZipFile|error|NotImplementedError|RuntimeError|TokenError): "
                                         r".*\); "
                                         r"write it again with export_phase_"):
        load_phase_libraries(tmp_path / "p.npz")


@pytest.mark.parametrize("damage, match", [
    ("nan_flux", r"spectrum 3 .* known pixels that are negative or not finite"),
    ("negative_flux", r"spectrum 3 .* known pixels that are negative or not finite"),
    ("zero_spectrum", r"spectrum 3 .* no positive known pixel"),
    ("nan_teff", r"'teff' of spectrum 3 is nan"),
    ("library_id", r"'library_id' holds 0..7, but the file names 2 libraries"),
    ("reversed_wavelength", r"'wavelength' must be positive, finite and strictly increasing"),
    ("repeated_node", r"1 spectra repeat the parameters of another of their library"),
])
def test_a_damaged_grid_file_is_refused_on_load(tmp_path, damage, match):
    """What the native readers refuse must not come back through an edited or damaged grid file: NaN or
    negative known flux was trained on as the 1e-30 floor, a reversed wavelength axis gave a model that
    load_generator refused, a NaN Teff or an out-of-range library id crashed inside scipy / torch."""
    import h5py
    from test_train import make_synthetic_grid

    from smnet_sps.grid import load_grid
    path = make_synthetic_grid(tmp_path / "grid.h5")
    load_grid(path)                                                     # intact: fine
    with h5py.File(path, "r+") as f:
        if damage in ("nan_flux", "negative_flux", "zero_spectrum"):
            flux = f["flux"][()]
            flux[3, 100] = {"nan_flux": np.nan, "negative_flux": -1.0}.get(damage, 0.0)
            if damage == "zero_spectrum":
                flux[3] = 0.0
            f["flux"][...] = flux
        elif damage == "nan_teff":
            teff = f["teff"][()]
            teff[3] = np.nan
            f["teff"][...] = teff
        elif damage == "library_id":
            ids = f["library_id"][()]
            ids[5] = 7
            f["library_id"][...] = ids
        elif damage == "reversed_wavelength":
            f["wavelength"][...] = f["wavelength"][()][::-1]
        else:
            for name in ("teff", "logg", "logz"):
                values = f[name][()]
                values[1] = values[0]
                f[name][...] = values
    with pytest.raises(ValueError, match=match):
        load_grid(path)


def test_resample_treats_masked_flux_as_unknown():
    """np.asarray dropped a masked array's mask: the values under it were binned as data (-99 under the mask
    gave an output pixel of -96.5 marked known). Masked elements are now unknown as NaN is (the bins over
    them NaN, mask False, the others as for the clean spectrum); a masked wavelength is refused."""
    from astropy.utils.masked import Masked
    w_in = np.linspace(1000.0, 10000.0, 901)
    clean = 1e8 * w_in ** -2.0
    w_out = np.linspace(1100.0, 9900.0, 89)
    reference, _ = resample(w_in, clean, w_out)
    hidden = np.zeros(w_in.size, bool)
    hidden[100] = True                                      # 2,000 A: edges 1,995-2,005 A
    garbage = np.where(hidden, -99.0, clean)
    nan_hole, nan_mask = resample(w_in, np.where(hidden, np.nan, clean), w_out)
    assert (~nan_mask).sum() == 1
    for masked in (np.ma.array(garbage, mask=hidden), Masked(garbage * u.Jy, mask=hidden)):
        out, mask = resample(w_in, masked, w_out)
        np.testing.assert_array_equal(mask, nan_mask)
        values = getattr(out, "value", out)
        assert np.isnan(values[~mask]).all()
        np.testing.assert_allclose(values[mask], reference[mask], rtol=1e-12)
    with pytest.raises(ValueError, match="wave_in is a masked array"):
        resample(np.ma.array(w_in, mask=hidden), clean, w_out)
