"""`nnunet-cdl synth`: write a synthetic nnU-Net v2 raw dataset with pseudo-labels and a manifest."""

from __future__ import annotations

import argparse
import json

from nnunet_cdl.synth.dataset import generate_dataset
from nnunet_cdl.synth.labelers import default_regime, regime_names
from nnunet_cdl.synth.presets import preset_names


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate synthetic abdominal CT phantoms (13 FLARE organs) as an nnU-Net v2 raw dataset "
        "DIR/DatasetNNN_<name>/, with pseudolabels/<source>/ from simulated imperfect labelers and manifest.json.",
    )
    parser.add_argument("--out", required=True, help="folder that receives DatasetNNN_<name>/ (e.g. $nnUNet_raw)")
    parser.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1..999")
    parser.add_argument("--cases", type=int, required=True, help="number of training cases")
    parser.add_argument("--test-cases", type=int, default=2, help="number of test cases (default 2)")
    parser.add_argument("--preset", default="small", help=f"geometry preset: {' | '.join(preset_names())}")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the output is identical for a seed")
    parser.add_argument("--sources", type=int, default=3, help="number of simulated pseudo-label sources (default 3)")
    parser.add_argument("--regime", default=None, choices=regime_names(),
                        help="how the simulated labelers' errors relate: shared-bias (boundary habits, two sources "
                        "often share one), independent, failing-labeler (one source fails on most cases), "
                        f"weak-reference (the last source is a worse model) [default: {default_regime()}]")
    parser.add_argument("--num-processes", type=int, default=1, help="worker processes (output does not change)")
    parser.add_argument("--name", default="CDLPhantom", help="dataset name (DatasetNNN_<name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetNNN_<name> folder")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    folder = generate_dataset(
        args.out, args.dataset_id, args.cases, num_test=args.test_cases, preset=args.preset, seed=args.seed,
        num_sources=args.sources, num_processes=args.num_processes, name=args.name, overwrite=args.overwrite,
        regime=args.regime,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"wrote {folder}")
    print(f"{'case':<12} {'split':<6} {'group':<7} {'shape (z,y,x)':<16} " + " ".join(f"{s:>9}" for s in manifest["sources"]))
    for case_id, entry in manifest["cases"].items():
        dice = " ".join(f"{entry['sources'][s]['dice']:>9.3f}" for s in manifest["sources"]) if "sources" in entry else ""
        shape = "x".join(str(n) for n in entry["shape_zyx"])
        print(f"{case_id:<12} {entry['split']:<6} {entry['group'] or '-':<7} {shape:<16} {dice}")
    return 0
