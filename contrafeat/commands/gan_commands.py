"""`contrafeat info | convert | generate`: inspect, convert and sample StyleGAN2 checkpoints (and zoo generators)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from contrafeat.commands.common import add_command
from contrafeat.devices import resolve_device
from contrafeat.errors import UserError
from contrafeat.gan.checkpoints import detect_format, load_checkpoint, save_native
from contrafeat.gan.interface import GeneratorLike
from contrafeat.gan.rosinality import export_rosinality
from contrafeat.gan.stylegan2 import NOISE_MODES, Generator
from contrafeat.io_utils import atomic_torch_save
from contrafeat.options import COUNT, FINITE
from contrafeat.viz.images import save_image_grid, save_png
from contrafeat.zoo import ZOO, load_generator

CHECKPOINT_HELP = f"a zoo name ({', '.join(ZOO)}) or a checkpoint: NVIDIA .pkl, rosinality .pt or native folder"
SEEDS_PATTERN = re.compile(r"(\d+)(?:-(\d+))?")


def register(subparsers: argparse._SubParsersAction) -> None:
    info = add_command(subparsers, "info", "Describe a generator: resolution, z/w dims, W+ layers, mapping depth, widths, parameter counts.")
    info.add_argument("checkpoint", help=CHECKPOINT_HELP)
    info.set_defaults(handler=run_info)

    convert = add_command(subparsers, "convert", "Convert a StyleGAN2 checkpoint (.pkl, .pt or native) to the native format.")
    convert.add_argument("source", type=Path, help="NVIDIA .pkl, rosinality .pt or native folder")
    convert.add_argument("out", type=Path, help="output folder (native) or file (rosinality)")
    convert.add_argument(
        "--to", choices=("native", "rosinality"), default="native", help="output format; 'rosinality' writes a .pt with g_ema, latent_avg and d"
    )
    convert.set_defaults(handler=run_convert)

    generate = add_command(subparsers, "generate", "Render images: one PNG per seed (seed_NNNN.png) or projected code, plus grid.png.")
    generate.add_argument("--checkpoint", default="shapes3d", help=CHECKPOINT_HELP)
    codes = generate.add_mutually_exclusive_group()
    codes.add_argument("--seeds", default="0-15", help="seeds as ranges and lists, e.g. 0-15 or 1,5,7; z = torch.randn with manual_seed(seed)")
    codes.add_argument("--projected-w", type=Path, default=None, help="render the W+ codes of this .npz (key 'w', [N, num_ws, w_dim]) instead of seeds")
    generate.add_argument("--trunc", type=FINITE, default=1.0, help="truncation psi (lerp towards the average w)")
    generate.add_argument("--noise-mode", choices=NOISE_MODES, default="const", help="per-pixel noise: stored maps, fresh random maps, or none")
    generate.add_argument("--out", type=Path, default=Path("generated"), help="output folder")
    generate.add_argument("--grid-cols", type=COUNT, default=None, help="columns of grid.png; None: ceil(sqrt(count))")
    generate.add_argument("--batch-size", type=COUNT, default=8, help="images rendered per forward pass")
    generate.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    generate.set_defaults(handler=run_generate)


def parameter_count(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def describe(generator: GeneratorLike) -> list[str]:
    """Lines of `contrafeat info` for a generator."""
    lines = [
        f"resolution       {generator.img_resolution} x {generator.img_resolution}, {generator.img_channels} channels",
        f"z_dim / w_dim    {generator.z_dim} / {generator.w_dim}",
        f"num_ws           {generator.num_ws}",
    ]
    if isinstance(generator, Generator):
        widths = " ".join(f"{res}:{width}" for res, width in generator.synthesis.channels.items())
        lines += [
            f"mapping          {generator.mapping.num_layers} layers of {generator.mapping.layer_features}, lr multiplier {generator.mapping.lr_multiplier:g}",
            f"channels         {widths}",
            f"conv_clamp       {generator.conv_clamp if generator.conv_clamp is not None else 'none'}",
            f"parameters G     {parameter_count(generator.mapping) + parameter_count(generator.synthesis):,}",
        ]
    elif isinstance(generator, torch.nn.Module):
        lines.append(f"parameters G     {parameter_count(generator):,}")
    discriminator = generator.discriminator
    lines.append(f"parameters D     {parameter_count(discriminator):,}" if discriminator is not None else "discriminator    none")
    return lines


def run_info(args: argparse.Namespace) -> int:
    kind = "built-in" if args.checkpoint in ZOO else detect_format(Path(args.checkpoint))
    generator = load_generator(args.checkpoint)
    print(f"checkpoint       {args.checkpoint} ({kind})")
    print("\n".join(describe(generator)))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    generator = load_checkpoint(args.source)
    if args.to == "rosinality":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(export_rosinality(generator), args.out)
    else:
        save_native(generator, args.out)
    print(f"wrote {args.out} ({args.to}) from {args.source} ({detect_format(args.source)})")
    return 0


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        match = SEEDS_PATTERN.fullmatch(part.strip())
        if match is None or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise UserError(f"--seeds {text!r}: expected non-negative integers and ascending ranges, e.g. 0-15 or 1,5,7")
        first = int(match.group(1))
        seeds += range(first, int(match.group(2) or first) + 1)
    return seeds


def seed_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """z [N, z_dim]: row i is torch.randn(1, z_dim) from torch.Generator().manual_seed(seeds[i])."""
    return torch.cat([torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds])


def load_projected_w(path: Path, generator: GeneratorLike) -> torch.Tensor:
    """W+ codes [N, num_ws, w_dim] from an .npz with key 'w', checked against the generator."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"--projected-w {path}: cannot read an .npz file ({' '.join(str(error).split())})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"--projected-w {path}: expected an .npz archive with an array 'w', got a single array")
    with archive:
        if "w" not in archive.files:
            raise UserError(f"--projected-w {path}: no array 'w' in the file (found: {', '.join(archive.files) or 'nothing'})")
        codes = archive["w"]
    expected = (generator.num_ws, generator.w_dim)
    if codes.ndim != 3 or codes.shape[0] == 0 or tuple(codes.shape[1:]) != expected:
        raise UserError(f"--projected-w {path}: 'w' has shape {list(codes.shape)}, expected [N, {expected[0]}, {expected[1]}] for this generator")
    return torch.from_numpy(np.asarray(codes, dtype=np.float32))



@torch.no_grad()
def render_codes(generator: GeneratorLike, ws: torch.Tensor, noise_mode: str, batch_size: int) -> torch.Tensor:
    """Images [N, C, R, R] (on CPU) for W+ codes [N, num_ws, w_dim], rendered in batches."""
    device = generator.w_avg.device
    return torch.cat([generator.synthesis(batch.to(device), noise_mode=noise_mode).cpu() for batch in ws.split(batch_size)])


def run_generate(args: argparse.Namespace) -> int:
    if args.grid_cols is not None and args.grid_cols < 1:
        raise UserError(f"--grid-cols {args.grid_cols}: expected a positive number of columns")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected a positive batch size")
    generator = load_generator(args.checkpoint, resolve_device(args.device))
    if args.projected_w is not None:
        ws = load_projected_w(args.projected_w, generator)
        names = [f"projected_{index:04d}.png" for index in range(len(ws))]
        if args.trunc != 1:
            ws = generator.w_avg.cpu().lerp(ws, args.trunc)
    else:
        seeds = parse_seeds(args.seeds)
        z = seed_latents(seeds, generator.z_dim).to(generator.w_avg.device)
        with torch.no_grad():
            w = generator.mapping(z, truncation_psi=args.trunc).cpu()
        ws = w.unsqueeze(1).repeat(1, generator.num_ws, 1)
        names = [f"seed_{seed:04d}.png" for seed in seeds]
    images = render_codes(generator, ws, args.noise_mode, args.batch_size)
    for name, image in zip(names, images):
        save_png(image, args.out / name)
    save_image_grid(images, args.out / "grid.png", columns=args.grid_cols)
    print(f"wrote {len(names)} images and grid.png to {args.out}")
    return 0
