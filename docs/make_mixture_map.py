"""Draw docs/mixture_map.png: which library the default mixture uses where (Teff x log g, a few [M/H]).

Usage: ``python docs/make_mixture_map.py [--model DIR] [--out docs/mixture_map.png]`` (re-run after
``smnet-sps validate --rank-libraries --write-mixture MODEL_DIR``).
"""
import argparse
from pathlib import Path

from smnet_sps.mixture import LibraryMixture, plot_mixture_map
from smnet_sps.neural import load_generator


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("mixture_map.png")))
    args = ap.parse_args(argv)
    gen = load_generator(args.model, device="cpu")
    mix = LibraryMixture(gen.library_names, gen.library_boxes, gen.nodes, gen.mixture_policy)
    fig = plot_mixture_map(mix, logz_values=(-1.0, -0.25, 0.0, 0.3), teff_range=(2000.0, 200000.0),
                           logg_range=(-1.0, 8.0), n=220)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
