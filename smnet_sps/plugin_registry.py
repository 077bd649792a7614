"""Discovery of host-code backends (entry-point group ``smnet_sps.backends``) and ``smnet-sps plugins``.

A backend is a module declaring ``HOST`` (the host package's import name), ``HOST_VERSIONS`` (the host
versions it supports, PEP 440 specifier or a note) and ``DESCRIPTION``. Third-party packages can add their
own by declaring an entry point in the same group.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
from dataclasses import dataclass

__all__ = ["ENTRY_POINT_GROUP", "KNOWN_BACKENDS", "BackendInfo", "discover_backends", "backend_table",
           "load_backend", "add_cli"]

ENTRY_POINT_GROUP = "smnet_sps.backends"
# Fallback when smnet-sps is not installed as a distribution (e.g. running from a source tree).
KNOWN_BACKENDS = {name: f"smnet_sps.plugins.{name}_backend"
                  for name in ("dsps", "ppxf", "bagpipes", "pystellibs", "fsps")}

# The distribution name to ask for a host's version when it differs from the import name.
_DIST_NAMES = {"fsps": "fsps", "pystellibs": "pystellibs", "dsps": "dsps", "ppxf": "ppxf",
               "bagpipes": "bagpipes"}


@dataclass(frozen=True)
class BackendInfo:
    """What ``smnet-sps plugins`` reports about one backend."""

    name: str
    module: str
    host: str = ""
    host_versions: str = ""
    description: str = ""
    host_installed: bool = False
    host_version: str | None = None
    error: str | None = None          # why the backend module itself failed to import, if it did

    @property
    def host_supported(self):
        """False when the installed host's version lies outside ``host_versions`` (a PEP 440 specifier);
        None when that cannot be told (no version, host not installed, or a free-text note)."""
        if not (self.host_installed and self.host_version and self.host_versions):
            return None
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
        try:
            return Version(self.host_version) in SpecifierSet(self.host_versions)
        except (InvalidSpecifier, InvalidVersion):
            return None

    @property
    def status(self):
        if self.error:
            return "broken"
        # the adapters only write files or wrap our generator: they work without the host, which is
        # needed only to use what they write
        if not self.host_installed:
            return "ready (host not installed)"
        if self.host_supported is False:
            # a host release outside the checked range may read the files differently: say so
            return f"untested host version (supports {self.host_versions})"
        return "ready"


def _entry_points():
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:                          # Python < 3.10 API
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep.value for ep in eps}


def _host_status(host):
    """(installed, version) of a host package without importing it (importing bagpipes takes seconds)."""
    if not host:
        return False, None
    try:
        return True, metadata.version(_DIST_NAMES.get(host, host))
    except metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(host) if host.isidentifier() else None
    return (spec is not None), None


def discover_backends():
    """All backends: entry points of ``smnet_sps.backends`` plus the built-in list, sorted by name."""
    found = dict(KNOWN_BACKENDS)
    found.update(_entry_points())
    infos = []
    for name, target in sorted(found.items()):
        module_name = target.split(":")[0]
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:               # a broken plugin must not break the listing
            infos.append(BackendInfo(name, module_name, error=f"{type(exc).__name__}: {exc}"))
            continue
        host = getattr(module, "HOST", "")
        installed, version = _host_status(host)
        infos.append(BackendInfo(name, module_name, host, getattr(module, "HOST_VERSIONS", ""),
                                 getattr(module, "DESCRIPTION", ""), installed, version))
    return infos


def load_backend(name):
    """Import and return the backend module registered as ``name``.

    Raises
    ------
    ValueError if no backend has that name (the message lists the valid names).
    """
    found = dict(KNOWN_BACKENDS)
    found.update(_entry_points())
    if name not in found:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(found))}")
    return importlib.import_module(found[name].split(":")[0])


def backend_table(infos=None):
    """The listing printed by ``smnet-sps plugins`` as a list of text lines."""
    infos = discover_backends() if infos is None else infos
    rows = [("backend", "host", "supports", "installed", "status", "description")]
    for i in infos:
        installed = (i.host_version or "yes") if i.host_installed else "no"
        rows.append((i.name, i.host or "?", i.host_versions or "?", installed, i.status,
                     i.error or i.description))
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    return ["  ".join(r[k].ljust(widths[k]) for k in range(5)) + "  " + r[5] for r in rows]


def _cmd_plugins(args):
    infos = discover_backends()
    if args.json:
        import json
        print(json.dumps([{**i.__dict__, "status": i.status, "host_supported": i.host_supported}
                          for i in infos], indent=1))
    else:
        print("\n".join(backend_table(infos)))
    return 1 if any(i.error for i in infos) else 0


def add_cli(subparsers):
    """Register ``smnet-sps plugins``."""
    p = subparsers.add_parser("plugins",
                              help="list host-code backends (DSPS, pPXF, bagpipes, pystellibs, FSPS)",
                              description="List the backends registered under the entry-point group "
                                          f"'{ENTRY_POINT_GROUP}', the host package each adapts, the host "
                                          "versions it supports and whether that host is installed here.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_plugins)
