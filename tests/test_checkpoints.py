"""Checkpoint formats: detection by content, loading at any size, the native round trip, and refusal of bad files."""
from __future__ import annotations

import builtins
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from stylegan2_factories import FIXTURES, random_generator, with_stylegan3_input, write_nvidia_pickle, write_rosinality

from contrafeat.errors import CheckpointError
from contrafeat.gan.checkpoints import detect_format, load_checkpoint, save_native
from contrafeat.gan.rosinality import estimate_w_avg
from contrafeat.gan.stylegan2 import Generator

NOT_A_CHECKPOINT = "not a StyleGAN2 checkpoint: expected a .pkl network snapshot, a rosinality .pt or a native folder"


def assert_same_network(loaded: Generator, source: Generator) -> None:
    """Same architecture, bit-identical tensors (discriminator included) and therefore identical images."""
    assert loaded.config == source.config
    ours, theirs = loaded.state_dict(), source.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    ws = source.broadcast(source.mapping(torch.randn(2, source.z_dim, generator=torch.Generator().manual_seed(5))))
    assert torch.equal(loaded.synthesis(ws), source.synthesis(ws))


def load_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


# --- NVIDIA pickles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "z_dim, w_dim, channels, mapping_layers, extra",
    [
        (24, 16, {4: 32, 8: 24, 16: 16, 32: 12, 64: 8}, 3, dict(conv_clamp=256.0, mapping_lr_multiplier=0.05, mapping_layer_features=20)),
        (8, 12, {4: 8, 8: 8}, 8, {}),
    ],
    ids=["64px-clamp-lr0.05", "8px-depth8"],
)
def test_nvidia_pickle_at_other_sizes_loads_exactly(tmp_path: Path, z_dim, w_dim, channels, mapping_layers, extra) -> None:
    source = random_generator(z_dim, w_dim, channels, mapping_layers, **extra)
    training_copy = random_generator(z_dim, w_dim, channels, mapping_layers, seed=1, **extra)
    path = write_nvidia_pickle(source, tmp_path / "snapshot.bin", training_copy=training_copy)
    assert detect_format(path) == "nvidia-pkl"
    loaded = load_checkpoint(path)
    assert_same_network(loaded, source)  # G_ema, not the training copy G
    assert loaded.img_resolution == max(channels) and loaded.num_ws == 2 * len(channels)


def test_nvidia_pickle_without_init_kwargs_uses_stored_attributes(tmp_path: Path) -> None:
    source = random_generator(conv_clamp=64.0, mapping_lr_multiplier=0.1, mbstd_group_size=3)
    loaded = load_checkpoint(write_nvidia_pickle(source, tmp_path / "g.pkl", g_kwargs={}, d_kwargs={}))
    assert loaded.config["mapping_lr_multiplier"] == pytest.approx(0.1)
    assert loaded.config["conv_clamp"] == 64.0 and loaded.discriminator.conv_clamp == 64.0
    assert loaded.discriminator.mbstd_group_size == 3
    assert_same_network(loaded, source)


def test_malicious_module_src_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    source = random_generator(with_discriminator=False)
    path = write_nvidia_pickle(source, tmp_path / "g.pkl", module_src=f"open({str(marker)!r}, 'w').write('ran')\n")
    assert_same_network(load_checkpoint(path), source)
    assert not marker.exists()


class SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class ExecCall:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return builtins.exec, (self.code,)


@pytest.mark.parametrize("payload, global_name", [(SystemCall, f"{os.system.__module__}.system"), (ExecCall, "builtins.exec")])
def test_malicious_pickles_are_refused_naming_the_global(tmp_path: Path, payload, global_name: str) -> None:
    marker = tmp_path / "marker.txt"
    action = f"touch {marker}" if payload is SystemCall else f"open({str(marker)!r}, 'w')"
    for name, content in [("top.pkl", payload(action)), ("nested.pkl", {"G_ema": {"state": payload(action)}})]:
        path = tmp_path / name
        path.write_bytes(pickle.dumps(content))
        message = load_error(path)
        assert f"'{global_name}'" in message and "refused" in message
    torch.save({"g_ema": {}, "evil": payload(action)}, tmp_path / "evil.pt")
    assert f"'{global_name}'" in load_error(tmp_path / "evil.pt")
    assert not marker.exists()


def test_stylegan3_and_conditional_snapshots_are_rejected_clearly(tmp_path: Path) -> None:
    path = write_nvidia_pickle(with_stylegan3_input(random_generator(with_discriminator=False)), tmp_path / "sg3.pkl")
    assert "StyleGAN3-R/T models are not supported yet" in load_error(path)
    path = write_nvidia_pickle(random_generator(with_discriminator=False), tmp_path / "cond.pkl", g_kwargs={"c_dim": 10, "mapping_kwargs": {}})
    assert "conditional models (c_dim=10) are not supported yet" in load_error(path)


def test_unusable_discriminator_is_dropped_with_a_note(tmp_path: Path, capsys) -> None:
    source = random_generator()
    path = write_nvidia_pickle(source, tmp_path / "g.pkl", d_kwargs={"architecture": "skip"})
    loaded = load_checkpoint(path)
    assert loaded.discriminator is None
    assert "without its discriminator" in capsys.readouterr().err


# --- rosinality --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latent_avg_shape", ["1-d", "row"])
def test_rosinality_at_other_sizes_loads_exactly(tmp_path: Path, latent_avg_shape: str) -> None:
    source = random_generator(40, 40, {4: 16, 8: 12, 16: 8, 32: 8}, mapping_layers=2, mbstd_group_size=4)  # rosinality's fixed group size
    source.mapping.w_avg.copy_(torch.randn(40))
    shape = (40,) if latent_avg_shape == "1-d" else (1, 40)
    path = write_rosinality(source, tmp_path / "ckpt.weights", latent_avg_shape=shape)
    assert detect_format(path) == "rosinality-pt"
    assert_same_network(load_checkpoint(path), source)


def test_rosinality_without_latent_avg_estimates_it(tmp_path: Path, capsys) -> None:
    source = random_generator(16, 16, with_discriminator=False)
    loaded = load_checkpoint(write_rosinality(source, tmp_path / "train.pt", latent_avg_shape=None, training=False))
    assert "no latent_avg" in capsys.readouterr().err
    assert torch.equal(loaded.w_avg, estimate_w_avg(source))
    assert loaded.discriminator is None


def test_torch_file_without_g_ema_is_not_rosinality(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(10)}, path)
    assert load_error(path) == f"{path}: a torch file without 'g_ema': not a rosinality StyleGAN2 checkpoint"
    torch.save({"g_ema": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, path)
    assert "not a rosinality StyleGAN2 generator" in load_error(path)


# --- native ----------------------------------------------------------------------------------------------------


def test_native_round_trip_from_folder_or_either_file(tmp_path: Path) -> None:
    source = random_generator(conv_clamp=128.0)
    folder = save_native(source, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    for path in (folder, folder / "model.safetensors", folder / "config.json"):
        assert detect_format(path) == "native"
        assert_same_network(load_checkpoint(path), source)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared StyleGAN2 fixtures not found at {FIXTURES}")
@pytest.mark.parametrize("name, kind", [("ada_size32.pkl", "nvidia-pkl"), ("rosinality_size32.pt", "rosinality-pt")])
def test_fixture_converts_to_native_exactly(tmp_path: Path, name: str, kind: str) -> None:
    assert detect_format(FIXTURES / name) == kind
    original = load_checkpoint(FIXTURES / name)
    assert_same_network(load_checkpoint(save_native(original, tmp_path / "native")), original)


def test_native_weights_of_another_network_are_refused(tmp_path: Path) -> None:
    folder = save_native(random_generator(), tmp_path / "a")
    other = save_native(random_generator(channels={4: 16, 8: 12}), tmp_path / "b")
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    assert "do not match a StyleGAN2 network" in load_error(folder)
    (folder / "config.json").unlink()
    assert "config.json" in load_error(folder)


# --- files that are not checkpoints --------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert "no such file" in load_error(tmp_path / "missing.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert "empty file" in load_error(tmp_path / "empty.pkl")
    (tmp_path / "folder").mkdir()
    assert NOT_A_CHECKPOINT in load_error(tmp_path / "folder")


def test_png_and_random_bytes_are_not_checkpoints(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "image.pkl", format="PNG")
    random_bytes = np.random.default_rng(0).bytes(4096)
    assert random_bytes[:1] not in (b"\x80", b"P", b"{")
    (tmp_path / "noise.pt").write_bytes(random_bytes)
    for name in ("image.pkl", "noise.pt"):
        assert load_error(tmp_path / name) == f"{tmp_path / name}: {NOT_A_CHECKPOINT}"


def test_truncated_files_of_every_format(tmp_path: Path) -> None:
    generator = random_generator()
    sources = {
        "g.pkl": write_nvidia_pickle(generator, tmp_path / "full.pkl"),
        "g.pt": write_rosinality(generator, tmp_path / "full.pt", latent_avg_shape=(16,)),
        "model.safetensors": save_native(generator, tmp_path / "native") / "model.safetensors",
    }
    for name, source in sources.items():
        data = source.read_bytes()
        target_dir = tmp_path / "cut" / name.replace(".", "_")
        target_dir.mkdir(parents=True)
        if name == "model.safetensors":
            shutil.copy(source.parent / "config.json", target_dir / "config.json")
        target = target_dir / name
        target.write_bytes(data[: len(data) // 2])
        assert "truncated or corrupt" in load_error(target), name


def test_zip_that_is_not_a_torch_file(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "archive.pt", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "a zip archive that is not a torch file" in load_error(tmp_path / "archive.pt")


def test_pickle_of_another_object(tmp_path: Path) -> None:
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert load_error(path) == f"{path}: a pickle without 'G_ema': not a StyleGAN2-ADA network snapshot"
