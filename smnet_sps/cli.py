"""The ``smnet-sps`` command line. Each stage module registers its own sub-commands via ``add_cli``."""
from __future__ import annotations

import argparse
import importlib
import re
import sys

# argparse reads "-1Gyr" as an unknown option; treat anything starting like a negative number as a value,
# so that `--age -1Gyr` reaches our validation and gets a clear "age must be positive" message.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")

# (module, what it adds); modules are imported lazily so `smnet-sps --help` stays fast.
COMMAND_MODULES = [
    "smnet_sps.grid",         # grid build / grid info
    "smnet_sps.train",        # train
    "smnet_sps.evaluate",     # evaluate
    "smnet_sps.validate",     # validate (observed stars, mixture ranking)
    "smnet_sps.ssp",          # ssp / ssp-grid
    "smnet_sps.photometry",   # mags
    "smnet_sps.plugin_registry",  # plugins
    "smnet_sps.fit_cli",      # fit (stars, SSPs)
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="smnet-sps",
        description="Neural stellar libraries (SM-Net) for stellar population synthesis.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"smnet-sps {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:      # stage not written yet
                continue
            raise
        module.add_cli(sub)
    for p in [parser, *sub.choices.values()]:
        p._negative_number_matcher = _NEGATIVE_VALUE
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"smnet-sps {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
