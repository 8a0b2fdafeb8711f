"""The notebook-style example runs from top to bottom as a user would run it."""
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "notebook.py"


def test_the_notebook_example_runs(tmp_path):
    env = {**os.environ, "CONTRAFEAT_CACHE": str(tmp_path / "cache"), "CONTRAFEAT_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "notebook_output"
    with Image.open(out / "traversal_0.png") as traversal, Image.open(out / "edit.png") as edit:
        assert traversal.size == (7 * 64, 3 * 64) and edit.size == (2 * 64, 64)
    assert (out / "directions" / "directions.safetensors").is_file()
    assert "saved and loaded 10 directions found by contra-bi" in done.stdout
    assert "budget: 100 steps" in done.stderr  # logging configured in the example shows what discover() logs
