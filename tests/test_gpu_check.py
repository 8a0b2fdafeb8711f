"""benchmarks/gpu_check.py at toy sizes on the CPU: every check runs, none fails, and the table is written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan2"


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "CONTRAFEAT_OFFLINE": "1", "CONTRAFEAT_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {(row["section"], row["check"]): row for row in report["rows"]}
    assert [row for row in rows.values() if row["status"] == "failed"] == []
    fixture_status = {row["status"] for (section, _), row in rows.items() if section == "fixtures" and "config-f" not in row["check"]}
    assert fixture_status == ({"ok"} if FIXTURES.is_dir() else {"skipped"})
    if FIXTURES.is_dir():
        assert all(row["values"]["max_abs_diff"] < 1e-4 for (section, check), row in rows.items() if section == "fixtures")
    for method in ("contra-bi", "contra-pt", "latentclr+att", "recog+att"):
        for precision in ("fp32", "bf16"):
            values = rows[("training", f"{method} 32 px {precision}")]["values"]
            assert values["s_per_step"] > 0 and values["images_per_s"] > 0 and values["bare_ratio"] > 0
        assert rows[("training", f"{method} 32 px fp32 --compile")]["status"] == "skipped"
        assert rows[("memory", f"{method} 32 px")]["status"] == "skipped"
    resumed = rows[("torchrun", "discover stopped on the device, resumed on cpu")]
    assert resumed["status"] == "ok" and resumed["values"] == {"backend": "gloo", "max_abs_diff": 0.0}
    assert "checks:" in result.stdout and "0 failed" in result.stdout
