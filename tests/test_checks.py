"""One shape check for every function that takes tensors, and the torch-free method registry."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from contrafeat.checks import check_shape
from contrafeat.discovery.objectives import ContrastBi, ContrastPt, LatentCLR, Recog
from contrafeat.discovery.registry import RENDER_COUNTS


def test_check_shape_accepts_named_dimensions_of_any_size() -> None:
    check_shape(torch.zeros(3, 10, 64), ["B", 10, 64], "ws")
    check_shape(torch.zeros(0, 10, 64), ["B", 10, 64], "ws")


@pytest.mark.parametrize("shape", [(3, 9, 64), (3, 10), (1, 3, 10, 64)])
def test_check_shape_names_the_tensor_and_both_shapes(shape) -> None:
    with pytest.raises(ValueError, match=rf"^ws: expected shape \[B, 10, 64\], got \[{', '.join(map(str, shape))}\]$"):
        check_shape(torch.zeros(shape), ["B", 10, 64], "ws")


def test_the_method_registry_imports_no_torch() -> None:
    code = "import sys, contrafeat.discovery.registry as r; assert r.METHODS; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_objectives_take_their_render_counts_from_the_registry() -> None:
    pairs = {"bi": ContrastBi, "pt": ContrastPt, "latentclr": LatentCLR, "recog": Recog}
    for name, objective in pairs.items():
        assert objective.render_count is RENDER_COUNTS[name] and objective.codes_per_unit == RENDER_COUNTS[name].codes_per_unit
    assert [RENDER_COUNTS[name].per_batch(10, 10) for name in pairs] == [25, 20, 110, 20]
