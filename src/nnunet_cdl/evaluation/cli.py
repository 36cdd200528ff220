"""`nnunet-cdl evaluate`: FLARE 2024 DSC and NSD per case and organ, with a CSV, a JSON summary and a figure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_cdl.errors import CdlError
from nnunet_cdl.evaluation.cases import evaluate_case, pair_cases
from nnunet_cdl.evaluation.efficiency import efficiency_summary, read_efficiency_csv
from nnunet_cdl.evaluation.report import (
    FIGURE_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    build_summary,
    plot_report,
    write_metrics_csv,
)
from nnunet_cdl.io import NIFTI_ENDING, write_json
from nnunet_cdl.parallel import parallel_map


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Score predicted label maps against the truth with FLARE 2024's organ metrics (DSC and NSD per organ, "
            f"as FLARE's official script). Writes {METRICS_FILE}, {SUMMARY_FILE} and {FIGURE_FILE} into --out."
        ),
    )
    parser.add_argument("--truth", required=True, type=Path, help="folder of truth label maps CASE.nii.gz")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted label maps CASE.nii.gz")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the report into (created)")
    parser.add_argument("--num-processes", type=int, default=1, help="cases evaluated in parallel (default 1)")
    parser.add_argument(
        "--efficiency",
        type=Path,
        default=None,
        help="efficiency.csv of `nnunet-cdl bench`: adds an efficiency section to the summary and the figure",
    )
    parser.add_argument("--file-ending", default=NIFTI_ENDING, help=f"label file ending (default {NIFTI_ENDING})")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.num_processes < 1:
        raise CdlError(f"--num-processes must be >= 1, got {args.num_processes}")
    if args.out.exists() and not args.out.is_dir():
        raise CdlError(f"--out {args.out}: exists and is not a folder")
    pairing = pair_cases(args.truth, args.pred, args.file_ending)
    efficiency_rows = read_efficiency_csv(args.efficiency) if args.efficiency is not None else None
    for case in pairing.missing_predictions:
        print(f"{prog}: missing prediction for {case}: every organ scores 0", file=sys.stderr)
    for case in pairing.unmatched_predictions:
        print(f"{prog}: warning: prediction {case} has no truth in {args.truth}; ignored", file=sys.stderr)

    results = parallel_map(evaluate_case, pairing.tasks, args.num_processes, desc="evaluate")
    failed = [r for r in results if r.status == "error"]
    for result in failed:
        print(f"{prog}: error: {result.case}: {result.error}", file=sys.stderr)

    efficiency = efficiency_summary(efficiency_rows) if efficiency_rows is not None else None
    summary = build_summary(results, pairing.unmatched_predictions, efficiency)
    args.out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(args.out / METRICS_FILE, results)
    plot_report(args.out / FIGURE_FILE, results, efficiency_rows)
    write_json(args.out / SUMMARY_FILE, summary)

    overall = summary["overall"]
    print(
        f"{summary['num_scored']} of {summary['num_cases']} cases scored "
        f"({len(summary['missing_predictions'])} missing predictions): "
        f"mean DSC {format_stat(overall['dsc']['mean'])}, mean NSD {format_stat(overall['nsd']['mean'])}; "
        f"report in {args.out}"
    )
    if failed:
        raise CdlError(
            f"{len(failed)} case(s) could not be evaluated ({', '.join(r.case for r in failed)}); "
            f"the others are in {args.out / METRICS_FILE}, the reasons in {args.out / SUMMARY_FILE}"
        )
    return 0


def format_stat(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
