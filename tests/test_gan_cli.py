"""`contrafeat info | convert | generate` through contrafeat.cli.main."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from stylegan2_factories import FIXTURES, random_generator, write_nvidia_pickle

from contrafeat.cli import main
from contrafeat.gan.checkpoints import load_checkpoint, save_native
from contrafeat.viz.images import to_uint8

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared StyleGAN2 fixtures not found at {FIXTURES}")


@pytest.fixture
def native_model(tmp_path: Path) -> Path:
    return save_native(random_generator(), tmp_path / "model")


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@needs_fixtures
def test_info_describes_the_checkpoint(capsys) -> None:
    assert main(["info", str(FIXTURES / "ada_size32.pkl")]) == 0
    out = capsys.readouterr().out
    for line in ("(nvidia-pkl)", "resolution       32 x 32, 3 channels", "z_dim / w_dim    64 / 64", "num_ws           8",
                 "mapping          2 layers of 64, lr multiplier 0.01", "channels         4:64 8:64 16:64 32:32", "parameters D     "):
        assert line in out


def test_generate_writes_one_png_per_seed_and_a_grid(native_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "images"
    options = ["--seeds", "0-2,7", "--out", str(out), "--grid-cols", "2", "--trunc", "0.8", "--device", "auto"]
    assert main(["generate", "--checkpoint", str(native_model), *options]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "seed_0000.png", "seed_0001.png", "seed_0002.png", "seed_0007.png"]
    assert png(out / "grid.png").shape == (32, 32, 3)  # 2 x 2 tiles of 16 px
    generator = load_checkpoint(native_model)
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(7))
    expected = to_uint8(generator(z, truncation_psi=0.8, fused_modconv=True))[0]
    assert np.abs(png(out / "seed_0007.png").astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(png(out / "grid.png")[16:, 16:], png(out / "seed_0007.png"))
    assert "wrote 4 images" in capsys.readouterr().out


def test_generate_renders_projected_codes(native_model: Path, tmp_path: Path) -> None:
    generator = load_checkpoint(native_model)
    codes = torch.randn(2, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / "projected_w.npz", w=codes.numpy())
    out = tmp_path / "proj"
    assert main(["generate", "--checkpoint", str(native_model), "--projected-w", str(tmp_path / "projected_w.npz"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "projected_0000.png", "projected_0001.png"]
    expected = to_uint8(generator.synthesis(codes, fused_modconv=False))
    assert np.array_equal(png(out / "projected_0001.png"), expected[1])


def test_convert_then_generate_is_bit_identical(tmp_path: Path) -> None:
    source = random_generator(channels={4: 16, 8: 12, 16: 8, 32: 8})
    original = write_nvidia_pickle(source, tmp_path / "snapshot.pkl")
    assert main(["convert", str(original), str(tmp_path / "native")]) == 0
    assert main(["convert", str(original), str(tmp_path / "exported.pt"), "--to", "rosinality"]) == 0
    for checkpoint, out in [(original, "a"), (tmp_path / "native", "b"), (tmp_path / "exported.pt", "c")]:
        assert main(["generate", "--checkpoint", str(checkpoint), "--seeds", "3,4", "--out", str(tmp_path / out)]) == 0
    for name in ("seed_0003.png", "seed_0004.png", "grid.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
    z = torch.randn(4, source.z_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_checkpoint(tmp_path / "native")(z), load_checkpoint(original)(z))


def bad_input_cases(native: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty.pkl").write_bytes(b"")
    (tmp / "noise.bin").write_bytes(np.random.default_rng(1).bytes(512).replace(b"\x80", b"\x00"))
    np.savez(tmp / "wrong_shape.npz", w=np.zeros((1, 3, 16), np.float32))
    np.savez(tmp / "no_w.npz", latents=np.zeros((1, 6, 16), np.float32))
    np.save(tmp / "single.npy", np.zeros((1, 6, 16), np.float32))
    generate = ["generate", "--checkpoint", str(native), "--out", str(tmp / "out")]
    return {
        "missing checkpoint": (["info", str(tmp / "missing.pkl")], "no such file"),
        "empty checkpoint": (["generate", "--checkpoint", str(tmp / "empty.pkl")], "empty file"),
        "random bytes": (["convert", str(tmp / "noise.bin"), str(tmp / "converted")], "not a StyleGAN2 checkpoint"),
        "bad seeds": (generate + ["--seeds", "1-x"], "--seeds '1-x'"),
        "descending seeds": (generate + ["--seeds", "5-2"], "ascending ranges"),
        "bad grid columns": (generate + ["--grid-cols", "0"], "--grid-cols 0"),
        "wrong projected shape": (generate + ["--projected-w", str(tmp / "wrong_shape.npz")], "expected [N, 6, 16] for this generator"),
        "projected without w": (generate + ["--projected-w", str(tmp / "no_w.npz")], "no array 'w'"),
        "projected .npy": (generate + ["--projected-w", str(tmp / "single.npy")], "expected an .npz archive"),
        "projected missing": (generate + ["--projected-w", str(tmp / "absent.npz")], "cannot read an .npz file"),
    }


def test_bad_input_gives_one_line_and_exit_code_2(native_model: Path, tmp_path: Path, capsys) -> None:
    for case, (argv, expected) in bad_input_cases(native_model, tmp_path).items():
        capsys.readouterr()
        assert main(argv) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("contrafeat: error: "), (case, err)
        assert expected in err and "Traceback" not in err, (case, err)
