"""scripts/bench_train.py runs and writes its JSON (tiny patch, one repeat: a smoke test, not a speed test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"


def test_bench_train_writes_json_and_table(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps({"patch_size": [8, 32, 48]}))
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", str(preset), "--repeats", "1", "--warmup", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["patch_size"] == [8, 32, 48] and result["batch_size"] == 2
    for key in ("train_iteration", "inference_patch"):
        for precision in ("fp32", "bf16"):
            assert result[key][precision]["median_s"] > 0 and len(result[key][precision]["timings_s"]) == 1
    assert "| training iteration, batch 2, 8x32x48 |" in capsys.readouterr().out
