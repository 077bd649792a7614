"""`smnet-sps plugins` and entry-point discovery."""
import json

import pytest

from smnet_sps import plugin_registry as reg
from smnet_sps.cli import main

EXPECTED = {"dsps", "ppxf", "bagpipes", "pystellibs", "fsps"}


def test_every_backend_declares_host_and_versions():
    infos = {i.name: i for i in reg.discover_backends()}
    assert EXPECTED <= set(infos)
    for name in EXPECTED:
        i = infos[name]
        assert i.error is None, i.error
        assert i.host == name and i.host_versions and i.description
        assert i.module == f"smnet_sps.plugins.{name}_backend"


def test_installed_hosts_report_versions():
    infos = {i.name: i for i in reg.discover_backends()}
    for name in ("dsps", "ppxf", "bagpipes"):
        if infos[name].host_installed:
            assert infos[name].host_version and infos[name].status == "ready"


def test_cli_lists_backends(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:5] == ["backend", "host", "supports", "installed", "status"]
    assert all(any(line.startswith(n) for line in out.splitlines()) for n in EXPECTED)
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= EXPECTED and all("host_versions" in r for r in rows)


def test_entry_points_match_fallback_list():
    eps = reg._entry_points()
    if not eps:
        pytest.skip("smnet-sps not installed as a distribution; fallback list in use")
    assert {k: v for k, v in eps.items() if k in EXPECTED} == reg.KNOWN_BACKENDS


def test_broken_plugin_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(reg, "_entry_points", lambda: {"broken": "smnet_sps.plugins.does_not_exist"})
    infos = {i.name: i for i in reg.discover_backends()}
    assert infos["broken"].status == "broken" and "ModuleNotFoundError" in infos["broken"].error
    with pytest.raises(ValueError, match="available"):
        reg.load_backend("nope")
    assert reg.load_backend("dsps").HOST == "dsps"


def test_a_host_version_outside_the_supported_range_is_not_reported_ready():
    """A bagpipes 1.4 or ppxf 10 showed "ready" although the adapters declare <1.4 and <10."""
    info = reg.BackendInfo("ppxf", "m", "ppxf", ">=9.0,<10", "d", True, "10.1")
    assert info.host_supported is False and info.status.startswith("untested host version")
    assert ">=9.0,<10" in info.status
    inside = reg.BackendInfo("ppxf", "m", "ppxf", ">=9.0,<10", "d", True, "9.4.1")
    assert inside.host_supported is True and inside.status == "ready"
    # a free-text note (FSPS, pystellibs) cannot be checked: no verdict, still ready
    note = reg.BackendInfo("fsps", "m", "fsps", "3.3 (C3K build); Fortran FSPS", "d", True, "0.4.7")
    assert note.host_supported is None and note.status == "ready"
    assert reg.BackendInfo("x", "m", "x", ">=1", "d", False).status == "ready (host not installed)"
