"""`benchmarks/gpu_check.py --smoke`: the GPU check's every stage runs, on CPU at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_smoke_run_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["smoke"] is True and report["machine"]["device"] == "cpu"
    (training,) = report["training_random"]
    assert training["preset"] == "tiny" and training["iterations_per_s"] > 0
    assert training["share_of_conv_throughput"] > 0  # convolutions alone take some time
    (pipeline,) = report["training_pipeline"]
    assert pipeline["iterations_per_s"] > 0 and 0 <= pipeline["share_waiting"] <= 1
    prediction = report["prediction"]
    assert prediction["ours_s"] > 0 and prediction["monai_s"] > 0
    assert prediction["ours_tta8_s"] > prediction["ours_s"]  # eight passes instead of one
    assert prediction["max_abs_difference"] < 1e-4  # same tiles and weights as MONAI's (fp32)
