"""`nnunet-cdl consensus-merge`: combine the parts of a `consensus --num-parts N` run into the final outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_cdl.consensus.cli import report
from nnunet_cdl.consensus.run import find_parts_folder, merge_parts


def main(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description="Combine the parts of `nnunet-cdl consensus --num-parts N` "
                                "into the dataset, consensus.csv, curriculum.json and ds_histogram.png.")
    p.add_argument("--out", type=Path, required=True, help="the --out folder of the part runs")
    p.add_argument("--dataset-id", type=int, required=True, help="the --dataset-id of the part runs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    p.add_argument("--keep-parts", action="store_true", help="keep the part folders after merging")
    args = p.parse_args(argv)
    folder = find_parts_folder(args.out.resolve(), args.dataset_id)
    return report(merge_parts(folder, args.overwrite, args.keep_parts))
