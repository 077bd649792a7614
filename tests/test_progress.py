"""Progress bars of the Python API: one rule with the command line (smnet_sps.progress.want_progress)."""
import sys
import types

import numpy as np
import pytest
from astropy import units as u

from smnet_sps.progress import in_notebook, want_progress

AGES = np.geomspace(0.01, 12.0, 24) * u.Gyr          # enough isochrone points for more than one batch


def _terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)


def test_none_is_a_bar_on_a_terminal_only(capsys, monkeypatch):
    assert want_progress(None) is False                # stderr captured: not a terminal
    assert want_progress(True) is True and want_progress(np.bool_(False)) is False
    _terminal(monkeypatch)
    assert want_progress(None) is True and want_progress(False) is False


def test_none_is_a_bar_in_a_jupyter_kernel(capsys, monkeypatch):
    """In a notebook stderr is ipykernel's stream (no terminal), and tqdm.auto draws a widget there."""
    class Shell:
        def __init__(self, config):
            self.config = config

    shell = Shell({})
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert not in_notebook() and want_progress(None) is False          # an IPython shell, not a kernel
    shell.config = {"IPKernelApp": {}}
    assert in_notebook() and want_progress(None) is True
    assert want_progress(False) is False
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not in_notebook()


@pytest.mark.parametrize("bad", ["False", 1.5, "auto"])
def test_a_value_that_is_not_a_switch_is_refused(bad):
    with pytest.raises(ValueError, match=r"progress is a switch: True, False or None .*got"):
        want_progress(bad)


def test_ssp_grid_draws_no_bar_into_a_log_file(tmp_path, monkeypatch):
    """ssp_grid(progress=True by default) wrote a carriage-return bar segment per batch into a redirected
    stderr (a batch job's log file): now None by default, no bar there; progress=True still draws one."""
    import smnet_sps.ssp as sspmod

    log = tmp_path / "job.log"
    with open(log, "w") as f:
        monkeypatch.setattr(sys, "stderr", f)
        sspmod._SSP_CACHE.clear()              # SSPs computed before draw no bar: the generator is not called
        sspmod.ssp_grid(AGES, [0.0152], generator="blackbody")
        f.flush()
        assert "isochrone points" not in log.read_text()
        sspmod._SSP_CACHE.clear()
        sspmod.ssp_grid(AGES, [0.0152], generator="blackbody", progress=True)
        f.flush()
        assert "blackbody isochrone points: 100%" in log.read_text()
    with pytest.raises(ValueError, match="progress is a switch: True, False or None"):
        sspmod.ssp_grid(AGES, [0.0152], generator="blackbody", progress="False")


def test_ssp_grid_draws_its_bar_on_a_terminal(capsys, monkeypatch):
    import smnet_sps.ssp as sspmod
    _terminal(monkeypatch)
    sspmod._SSP_CACHE.clear()
    sspmod.ssp_grid(AGES, [0.0152], generator="blackbody")
    assert "blackbody isochrone points: 100%" in capsys.readouterr().err


def test_build_grid_draws_no_bar_into_captured_stderr(fixtures_dir, capsys, monkeypatch):
    from smnet_sps.grid import build_grid
    root = fixtures_dir / "libraries"
    build_grid(root, only="cm87", log=lambda s: None)
    assert "grid build" not in capsys.readouterr().err
    build_grid(root, only="cm87", log=lambda s: None, progress=True)
    assert "grid build: 100%" in capsys.readouterr().err
    _terminal(monkeypatch)
    build_grid(root, only="cm87", log=lambda s: None)
    assert "grid build: 100%" in capsys.readouterr().err


def test_generator_stream_takes_none(blackbody, capsys, monkeypatch):
    """Generator.stream stays off by default and takes None (auto) as the other functions do."""
    teff, logg, mh = np.full(10, 5800.0), np.full(10, 4.4), np.zeros(10)
    blackbody.surface_flux(teff, logg, mh, batch_size=4, progress=None)
    assert "spectra" not in capsys.readouterr().err
    _terminal(monkeypatch)
    blackbody.surface_flux(teff, logg, mh, batch_size=4)
    assert "spectra" not in capsys.readouterr().err
    blackbody.surface_flux(teff, logg, mh, batch_size=4, progress=None)
    assert "spectra: 100%" in capsys.readouterr().err


def test_points_magnitudes_draws_its_bar_on_a_terminal(blackbody, tmp_path, capsys, monkeypatch):
    """mags --points / points_magnitudes drew no bar at all (100,000 stars: 37 s without a word on a
    terminal), where ssp_grid and the Dask path's write_points do: now progress=None, the one rule, a bar
    over the generator's batches where there is more than one; none into a log file, none for one batch."""
    from astropy.table import Table

    from smnet_sps.cli import main
    from smnet_sps.star_tables import points_magnitudes
    n = 12
    stars = Table({"teff": np.linspace(4000, 9000, n), "logg": np.full(n, 4.0), "logz": np.zeros(n),
                   "L": np.ones(n)})
    ref = points_magnitudes(stars, ["bessell-V"], generator=blackbody, batch_size=5)
    assert "blackbody spectra" not in capsys.readouterr().err            # stderr captured: no terminal
    points_magnitudes(stars, ["bessell-V"], generator=blackbody, batch_size=5, progress=True)
    assert "blackbody spectra: 100%" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress is a switch"):
        points_magnitudes(stars, ["bessell-V"], generator=blackbody, progress="yes")
    _terminal(monkeypatch)
    out = points_magnitudes(stars, ["bessell-V"], generator=blackbody, batch_size=5)
    assert "blackbody spectra: 100%" in capsys.readouterr().err
    assert np.array_equal(out["M_bessell-V"], ref["M_bessell-V"])
    points_magnitudes(stars, ["bessell-V"], generator=blackbody, batch_size=n)      # one batch: no bar
    assert "blackbody spectra" not in capsys.readouterr().err
    many = Table({k: np.tile(stars[k], 400) for k in stars.colnames})              # 4,800 > one batch
    many.write(tmp_path / "many.csv")
    assert main(["mags", "--points", str(tmp_path / "many.csv"), "--filters", "bessell-V",
                 "--generator", "blackbody"]) in (0, None)
    assert "blackbody spectra: 100%" in capsys.readouterr().err
