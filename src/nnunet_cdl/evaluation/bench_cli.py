"""`nnunet-cdl bench`: run a prediction command once per case, alone, and record its wall time and peak memory.

As FLARE's efficiency evaluation does, each case is copied alone into a fresh input folder and the command is
run on that folder; the command's output `CASE.nii.gz` is moved into --out beside `efficiency.csv`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_cdl.errors import CdlError
from nnunet_cdl.evaluation.efficiency import (
    EFFICIENCY_FILE,
    efficiency_row,
    efficiency_summary,
    run_measured,
    write_efficiency_csv,
)
from nnunet_cdl.io import NIFTI_ENDING, atomic_directory, list_image_files, read_geometry
from nnunet_cdl.parallel import parallel_map

PLACEHOLDERS = ("{input}", "{output}", "{case}")


def fill_template(template: str, input_dir: Path, output_dir: Path, case: str) -> str:
    """The command for one case: `{input}`, `{output}`, `{case}` replaced by shell-quoted values."""
    values = (str(input_dir), str(output_dir), case)
    for placeholder, value in zip(PLACEHOLDERS, values):
        template = template.replace(placeholder, shlex.quote(value))
    return template


def case_files(images_dir: Path, case: str, file_ending: str) -> list[Path]:
    """All channel files `CASE_XXXX{file_ending}` of a case."""
    return sorted(p for p in images_dir.glob(f"{case}_[0-9][0-9][0-9][0-9]{file_ending}"))


@dataclass(frozen=True)
class BenchSettings:
    """What every case of one `bench` run shares."""

    template: str
    images_dir: Path
    out_dir: Path
    file_ending: str
    interval: float
    timeout: float | None


def bench_case(case: str, image: Path, settings: BenchSettings) -> tuple[dict[str, Any], str | None]:
    """Run the command on one case alone; its `efficiency.csv` row and a problem (None when it went well)."""
    shape, _ = read_geometry(image)
    with tempfile.TemporaryDirectory(prefix=f"nnunet-cdl-bench-{case}-") as work:
        input_dir, output_dir = Path(work) / "input", Path(work) / "output"
        input_dir.mkdir()
        output_dir.mkdir()
        for file in case_files(settings.images_dir, case, settings.file_ending):
            shutil.copy2(file, input_dir / file.name)
        command = fill_template(settings.template, input_dir, output_dir, case)
        log = settings.out_dir / "logs" / f"{case}.log"
        measurement = run_measured(command, settings.interval, settings.timeout, log=log)
        produced = output_dir / f"{case}{settings.file_ending}"
        wrote_output = produced.is_file()
        if wrote_output:
            shutil.move(str(produced), settings.out_dir / produced.name)
    row = efficiency_row(case, shape, measurement)
    if measurement.timed_out:
        return row, f"{case}: killed after --timeout {settings.timeout} s (log: logs/{log.name})"
    if measurement.exit_code != 0:
        return row, f"{case}: command exited with code {measurement.exit_code} (log: logs/{log.name})"
    if not wrote_output:
        return row, f"{case}: command wrote no {produced.name} into {{output}} (log: logs/{log.name})"
    return row, None


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Measure a prediction command as FLARE's efficiency evaluation does: each case alone in a fresh input "
            "folder, wall time and peak memory (summed RSS of the whole process tree) per case. Writes the "
            f"predictions, logs/CASE.log and {EFFICIENCY_FILE} into --out."
        ),
    )
    parser.add_argument(
        "--cmd",
        required=True,
        help="shell command template; {input} is a folder holding one case's images CASE_XXXX.nii.gz, {output} "
        "the folder where it must write CASE.nii.gz, {case} the case id. Example: "
        "'nnUNetv2_predict -i {input} -o {output} -d 1 -c 3d_fullres -f 0 -device cpu'",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of images CASE_0000.nii.gz")
    parser.add_argument("--out", required=True, type=Path, help="new folder for predictions, logs and the CSV")
    parser.add_argument("--interval", type=float, default=0.1, help="memory sampling interval, s (default 0.1)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a case's command after this many s")
    parser.add_argument("--cases", nargs="+", default=None, help="only these case ids (default: all)")
    parser.add_argument("--file-ending", default=NIFTI_ENDING, help=f"image file ending (default {NIFTI_ENDING})")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    for placeholder in ("{input}", "{output}"):
        if placeholder not in args.cmd:
            raise CdlError(f"--cmd must contain {placeholder}, got {args.cmd!r}")
    if args.interval <= 0:
        raise CdlError(f"--interval must be > 0, got {args.interval}")
    if args.timeout is not None and args.timeout <= 0:
        raise CdlError(f"--timeout must be > 0, got {args.timeout}")
    images = list_image_files(args.images, args.file_ending)
    if not images:
        raise CdlError(f"{args.images}: no images named CASE_0000{args.file_ending}")
    if args.cases is not None:
        unknown = sorted(set(args.cases) - set(images))
        if unknown:
            raise CdlError(f"--cases: no image for {', '.join(unknown)} in {args.images}")
        images = {case: path for case, path in images.items() if case in set(args.cases)}
    if args.out.resolve() == args.images.resolve() or args.images.resolve() in args.out.resolve().parents:
        raise CdlError(f"--out {args.out} must not be --images or inside it")

    with atomic_directory(args.out, overwrite=args.overwrite) as out_dir:
        (out_dir / "logs").mkdir()
        settings = BenchSettings(args.cmd, args.images, out_dir, args.file_ending, args.interval, args.timeout)
        outcomes = parallel_map(lambda item: bench_case(*item, settings), list(images.items()), 1, desc="bench")
        rows = [row for row, _ in outcomes]
        write_efficiency_csv(out_dir / EFFICIENCY_FILE, rows)

    summary = efficiency_summary(rows)
    wall, memory = summary["wall_s"], summary["peak_rss_mb"]
    if wall["mean"] is not None:
        print(
            f"{len(rows) - len(summary['failed_cases'])} of {len(rows)} cases ran: wall time mean {wall['mean']} s "
            f"(max {wall['max']} s), peak RSS mean {memory['mean']} MB (max {memory['max']} MB); "
            f"{args.out / EFFICIENCY_FILE}"
        )
    problems = [problem for _, problem in outcomes if problem is not None]
    for problem in problems:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    if problems:
        raise CdlError(f"{len(problems)} of {len(rows)} case(s) failed; see {args.out / 'logs'}")
    return 0
