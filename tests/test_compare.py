"""`contrafeat compare`: several runs' traversals side by side, refused across generators."""
import json
import re

import pytest

from contrafeat.cli import main

TINY = ["--checkpoint", "shapes3d", "--pca-samples", "2000", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A ganspace run with 2 directions and a sefa run with 3, on the shapes3d world."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTRAFEAT_CACHE", str(root / "cache"))
        patch.setenv("CONTRAFEAT_OFFLINE", "1")
        assert main(["discover", "--method", "ganspace", "--num-directions", "2", "--out", str(root / "gsp"), *TINY]) == 0
        assert main(["discover", "--method", "sefa", "--num-directions", "3", "--out", str(root / "sefa"), *TINY]) == 0
    return root / "gsp", root / "sefa"


def test_compare_puts_runs_side_by_side(runs, tmp_path):
    page = tmp_path / "compare.html"
    assert main(["compare", *map(str, runs), "--out", str(page), "--samples", "2", "--frames", "5"]) == 0
    text = page.read_text()
    sections = re.findall(r"<section><h2>direction (\d+)</h2>(.*?)</section>", text)
    assert [index for index, _ in sections] == ["0", "1", "2"]
    for index, body in sections:
        assert body.index("gsp: ganspace") < body.index("sefa: sefa")
        assert body.count("data:image/png;base64,") == (1 if index == "2" else 2)
    assert "(no direction 2)" in sections[2][1]


def test_compare_refuses_runs_of_different_generators(runs, tmp_path, capsys):
    meta_path = runs[1] / "directions.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["generator_id"] = "0123456789abcdef"
    meta_path.write_text(json.dumps(meta))
    try:
        assert main(["compare", *map(str, runs), "--out", str(tmp_path / "c.html")]) == 2
    finally:
        meta_path.write_text(original)
    error = capsys.readouterr().err
    assert "the runs were found on different generators" in error and "0123456789abcdef" in error
    assert not (tmp_path / "c.html").exists()


def test_compare_bad_input(runs, tmp_path, capsys):
    assert main(["compare", str(runs[0]), str(tmp_path / "nothing")]) == 2
    assert "no directions.safetensors" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), "--frames", "0"]) == 2
    assert "--frames 0: expected a positive integer" in capsys.readouterr().err
