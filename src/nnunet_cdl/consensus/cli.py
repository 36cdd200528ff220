"""`nnunet-cdl consensus`: refine K candidate label sets into one nnU-Net dataset with difficulty tiers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_cdl.consensus.run import ConsensusSummary, run_consensus, run_part
from nnunet_cdl.consensus.scores import DS_MODES
from nnunet_cdl.consensus.settings import (
    ConsensusSettings,
    default_dataset_name,
    input_dataset_json,
    labels_and_extra,
    parse_allowed_labels,
    source_list,
)
from nnunet_cdl.consensus.tiers import REFINE_MODES, TIER_MODES, load_config
from nnunet_cdl.errors import CdlError


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--images", type=Path, required=True, help="imagesTr folder (CASE_0000.nii.gz ...)")
    p.add_argument("--labels", type=Path, nargs="+", required=True, metavar="DIR",
                   help="one folder per pseudo-label source (CASE.nii.gz); a source's name is its folder's name; "
                        "list the most trusted first (it wins ties)")
    p.add_argument("--reference", type=Path, nargs="*", default=[], metavar="DIR",
                   help="extra candidates such as your own model's predictions: they vote in RS like any source "
                        "and can be selected (see --reference-votes-only), but are not challenge labels in "
                        "--ds-mode paper")
    p.add_argument("--reference-votes-only", action="store_true",
                   help="references take part in RS and DS but are never selected as the refined label")
    p.add_argument("--out", type=Path, required=True, help="folder that receives DatasetNNN_<Name>/")
    p.add_argument("--dataset-id", type=int, required=True, help="NNN of the new dataset")
    p.add_argument("--dataset-name", default=None, help="<Name> of the new dataset [default: <input name>Consensus]")
    p.add_argument("--allowed-labels", default=None,
                   help="label values kept, e.g. 0-13 [default: the input dataset.json's labels, else 0-13]")
    p.add_argument("--config", type=Path, default=None, help="settings file [default: packaged configs/consensus.json]")
    p.add_argument("--ds-mode", choices=DS_MODES, default=None,
                   help="trusted: per organ, the mean Dice among the candidates trusted for it (one failing "
                        "candidate cannot drag it down); others: mean Dice of the selected label with the other "
                        "candidates; paper: CDL-UNet Eq. 2 (mean with the challenge labels, itself included) "
                        "[default: from the config, trusted]")
    p.add_argument("--refine", choices=REFINE_MODES, default=None,
                   help="trusted-vote: voxel-wise vote in which a candidate has no say on the organs it is not "
                        "trusted for; select: the highest-RS candidate (CDL-UNet); vote: the plain voxel-wise "
                        "majority, ties to that candidate; staple: SimpleITK's multi-label STAPLE (slower); DS and "
                        "tiers do not depend on it [default: from the config, trusted-vote]")
    p.add_argument("--trust-margin", type=float, default=None,
                   help="a candidate is not trusted for an organ when its best per-organ Dice with another "
                        "candidate is more than this below the best pair's [config: 0.1]")
    p.add_argument("--tier-mode", choices=TIER_MODES, default=None, help="[default: from the config, fixed]")
    p.add_argument("--easy-threshold", type=float, default=None, help="DS >= this is easy [config: 0.90]")
    p.add_argument("--hard-threshold", type=float, default=None, help="DS >= this (and < easy) is hard [config: 0.80]")
    p.add_argument("--easy-quantile", type=float, default=None, help="quantile mode: easy threshold [config: 0.5]")
    p.add_argument("--hard-quantile", type=float, default=None, help="quantile mode: hard threshold [config: 0.1]")
    p.add_argument("--keep-erroneous", action="store_true",
                   help="also put erroneous cases into labelsTr (nnUNetTrainerCDL still never trains on them)")
    p.add_argument("--num-processes", "-np", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--num-parts", type=int, default=1, help="split the cases into this many parts for array jobs (default 1)")
    p.add_argument("--part-id", type=int, default=0, help="which part this process scores (0..num-parts-1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    return p


def settings_from_args(args: argparse.Namespace) -> ConsensusSettings:
    images: Path = args.images
    if not images.is_dir():
        raise CdlError(f"{images}: images folder not found")
    sources = source_list(args.labels, args.reference)
    base = input_dataset_json(images)
    allowed = parse_allowed_labels(args.allowed_labels) if args.allowed_labels else None
    labels, extra, ending = labels_and_extra(base, allowed, images)
    config = load_config(args.config).with_overrides(
        ds_mode=args.ds_mode, tier_mode=args.tier_mode, refine=args.refine, trust_margin=args.trust_margin, thresholds_easy=args.easy_threshold,
        thresholds_hard=args.hard_threshold, quantiles_easy=args.easy_quantile, quantiles_hard=args.hard_quantile,
    )
    if not 1 <= args.dataset_id <= 999:
        raise CdlError(f"--dataset-id must be in 1..999, got {args.dataset_id}")
    name = args.dataset_name or default_dataset_name(images)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise CdlError(f"--dataset-name {name!r}: use letters, digits, '_' or '-'")
    return ConsensusSettings(
        images=images.resolve(), sources=tuple(s for s in sources), out=args.out.resolve(), dataset_id=args.dataset_id,
        dataset_name=name, labels=labels, config=config, file_ending=ending, dataset_json_extra=extra,
        keep_erroneous=args.keep_erroneous, reference_votes_only=args.reference_votes_only,
    )


def report(summary: ConsensusSummary) -> int:
    """Print the tier counts (stdout) and every failed case (stderr); exit code 1 when a case failed."""
    counts = {t: sum(v == t for v in summary.tiers.values()) for t in ("easy", "hard", "erroneous")}
    print(f"{summary.dataset_folder}: " + ", ".join(f"{n} {t}" for t, n in counts.items())
          + f", {len(summary.failed)} failed")
    for case, error in summary.failed.items():
        print(f"consensus: case {case} skipped: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    settings = settings_from_args(args)
    if args.num_parts == 1 and args.part_id == 0:
        return report(run_consensus(settings, args.num_processes, args.overwrite))
    folder = run_part(settings, args.num_parts, args.part_id, args.num_processes)
    print(f"{folder}: part {args.part_id} of {args.num_parts} done; when all parts are done run "
          f"`nnunet-cdl consensus-merge --out {settings.out} --dataset-id {settings.dataset_id}`")
    return 0

