"""`nnunet-cdl bench` and the process-tree measurement behind it."""

from __future__ import annotations

import csv
import shlex
import sys
from pathlib import Path

import numpy as np

from nnunet_cdl.cli import main
from nnunet_cdl.evaluation.bench_cli import fill_template
from nnunet_cdl.evaluation.efficiency import EFFICIENCY_COLUMNS, run_measured
from nnunet_cdl.io import Geometry, read_volume, write_volume

PYTHON = shlex.quote(sys.executable)
GEOMETRY = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
# Copies the one image it finds in {input} to {output}/CASE.nii.gz: a stand-in for a predictor.
COPY = (
    f"{PYTHON} -c \"import pathlib, shutil, sys; [image] = pathlib.Path(sys.argv[1]).iterdir(); "
    f"shutil.copy(image, pathlib.Path(sys.argv[2]) / image.name.replace('_0000', ''))\" {{input}} {{output}}"
)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def make_images(folder: Path, cases: dict[str, tuple[int, int, int]]) -> None:
    for case, shape in cases.items():
        write_volume(folder / f"{case}_0000.nii.gz", np.full(shape, 3, np.uint8), GEOMETRY)


def test_bench_runs_each_case_alone_and_records_efficiency(tmp_path: Path, capsys) -> None:
    images, out = tmp_path / "images", tmp_path / "bench"
    make_images(images, {"a": (4, 5, 6), "b": (3, 3, 3)})
    assert main(["bench", "--cmd", COPY, "--images", str(images), "--out", str(out)]) == 0
    rows = read_rows(out / "efficiency.csv")
    assert tuple(rows[0]) == EFFICIENCY_COLUMNS
    assert [(r["case"], r["shape"], r["exit_code"], r["timed_out"]) for r in rows] == [
        ("a", "4x5x6", "0", "False"),
        ("b", "3x3x3", "0", "False"),
    ]
    for row in rows:
        assert 0 < float(row["wall_s"]) < 30
        # sampled every 0.1 s: a short command may show only its shell, or (on a loaded machine) end before the
        # first sample; the kernel's maximum below always sees it
        assert 0 <= float(row["peak_rss_mb"]) < 2000
        assert 5 < float(row["max_process_rss_mb"])  # the kernel saw the Python interpreter
    assert read_volume(out / "a.nii.gz").array.shape == (4, 5, 6)  # the one-liner found one image only
    assert (out / "logs" / "a.log").is_file()
    assert "2 of 2 cases ran" in capsys.readouterr().out
    assert main(["bench", "--cmd", COPY, "--images", str(images), "--out", str(out)]) == 2  # exists
    assert main(["bench", "--cmd", COPY, "--images", str(images), "--out", str(out), "--overwrite"]) == 0


def test_failing_command_is_recorded_and_reported(tmp_path: Path, capsys) -> None:
    images, out = tmp_path / "images", tmp_path / "bench"
    make_images(images, {"a": (2, 2, 2)})
    assert main(["bench", "--cmd", "echo {input} {output}; exit 3", "--images", str(images), "--out", str(out)]) == 2
    assert read_rows(out / "efficiency.csv")[0]["exit_code"] == "3"
    assert "exited with code 3" in capsys.readouterr().err
    assert str(images) not in (out / "logs" / "a.log").read_text()  # the command saw a temporary copy
    assert main(["bench", "--cmd", "true {input}", "--images", str(images), "--out", str(out)]) == 2
    assert "must contain {output}" in capsys.readouterr().err


def test_memory_is_summed_over_the_process_tree() -> None:
    # Pages written (not just reserved), held long enough that both children overlap on a loaded machine.
    hold = f"{PYTHON} -c 'import time; block = bytearray([1]) * (150 * 2**20); time.sleep(4)'"
    measurement = run_measured(f"{hold} & {hold} & wait", interval=0.05)
    assert measurement.exit_code == 0 and not measurement.timed_out
    assert measurement.peak_rss_mb > 300  # two children of the shell at once
    assert measurement.max_process_rss_mb > 150  # the largest single process (plus the launcher's pages at fork)
    assert measurement.wall_s >= 4 and measurement.rss_area_mb_s > 300


def test_launcher_pages_are_not_counted() -> None:
    # The launcher's own pages: a forked child shows them until it exec's; Popen returns only after the exec.
    held = bytearray([1]) * (400 * 2**20)
    measurement = run_measured(f"{PYTHON} -c 'import time; time.sleep(1)'", interval=0.01)
    assert len(held) and measurement.exit_code == 0
    assert measurement.peak_rss_mb < 200, measurement


def test_timeout_kills_the_whole_tree() -> None:
    measurement = run_measured("sleep 30 & sleep 30; wait", interval=0.05, timeout=0.5)
    assert measurement.timed_out and measurement.exit_code < 0 and measurement.wall_s < 10


def test_template_quotes_paths() -> None:
    command = fill_template("run {input} {output} --id {case}", Path("/tmp/in dir"), Path("/tmp/out"), "c1")
    assert command == "run '/tmp/in dir' /tmp/out --id c1"
