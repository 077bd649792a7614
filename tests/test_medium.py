"""Air/vacuum conversion against known lines and its own inverse."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.medium import air_to_vacuum, convert_medium, vacuum_to_air


def test_known_lines():
    # H-alpha 6562.80 A (air) = 6564.61 A (vacuum); H-beta 4861.33 / 4862.68; Na D2 5889.95 / 5891.58 (NIST)
    for air, vac in ((6562.80, 6564.61), (4861.33, 4862.68), (5889.95, 5891.58)):
        assert air_to_vacuum(air) == pytest.approx(vac, abs=0.02)
        assert vacuum_to_air(vac) == pytest.approx(air, abs=0.02)


def test_round_trip_and_uv_convention():
    lam = np.geomspace(900, 2e5, 500)
    back = air_to_vacuum(vacuum_to_air(lam))
    assert np.max(np.abs(back - lam)) < 1e-4 * 10      # < 1e-3 A everywhere
    uv = lam < 2000
    assert np.array_equal(vacuum_to_air(lam)[uv], lam[uv])
    q = convert_medium([5000.0, 7000.0] * u.AA, "vacuum", "air")
    assert q.unit == u.AA and np.all(q.value < [5000.0, 7000.0])
    with pytest.raises(ValueError, match="medium must be one of"):
        convert_medium(5000.0, "vacuum", "water")
