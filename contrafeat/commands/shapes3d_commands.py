"""`contrafeat shapes3d render` (images of the procedural 3DShapes world with their factor labels),
`contrafeat shapes3d train-predictor` (the CNN that reads the factors back off images) and
`contrafeat shapes3d train-world` (the learned generator `shapes3d-learned`)."""
from __future__ import annotations

import argparse
import csv
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from PIL import Image

from contrafeat.commands.common import add_command
from contrafeat.errors import UserError
from contrafeat.options import COUNT, INDEX, POSITIVE, flag
from contrafeat.shapes3d import factor_predictor
from contrafeat.shapes3d.grid import FACTOR_NAMES, NUM_IMAGES, NpzWriter, factor_values, index_to_factors, iter_renders
from contrafeat.shapes3d.world_training import WorldSettings, train_world

RESOLUTIONS = (32, 64, 128)
LABELS_FILE = "labels.csv"


def register(subparsers: argparse._SubParsersAction) -> None:
    shapes3d = add_command(subparsers, "shapes3d", "The procedural 3DShapes world.")
    actions = shapes3d.add_subparsers(dest="shapes3d_command", metavar="ACTION")
    actions.required = True
    render = add_command(actions, "render", f"Render images as PNGs plus {LABELS_FILE} (index and the six factor values).")
    render.add_argument("--out", type=Path, required=True, help="output folder")
    count = render.add_mutually_exclusive_group()
    count.add_argument("--n", type=COUNT, default=64, help="number of distinct random indices")
    count.add_argument("--all", action="store_true", help=f"render all {NUM_IMAGES} images in index order")
    render.add_argument("--resolution", type=int, default=64, choices=RESOLUTIONS, help="image width and height")
    render.add_argument("--seed", type=INDEX, default=0, help="seed of the random indices")
    render.add_argument("--npz", type=Path, default=None, help="also write images and labels laid out like the original 3dshapes.npz")
    render.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    render.set_defaults(handler=run_render)
    register_train_predictor(actions)
    register_train_world(actions)


def register_train_predictor(actions: argparse._SubParsersAction) -> None:
    train = add_command(
        actions,
        "train-predictor",
        "Train the CNN that reads the six factors off generator images, on renders of the training split; "
        "print its accuracy on held-out indices.",
    )
    train.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    train.add_argument("--steps", type=COUNT, default=factor_predictor.DEFAULT_STEPS, help="optimisation steps")
    train.add_argument("--batch", type=COUNT, default=factor_predictor.DEFAULT_BATCH, help="renders per step")
    train.add_argument("--lr", type=POSITIVE, default=factor_predictor.DEFAULT_LR, help="initial Adam learning rate (cosine decay to 0)")
    train.add_argument("--seed", type=INDEX, default=0, help="seed of the initialisation and of the training batches")
    train.add_argument("--eval-count", type=COUNT, default=factor_predictor.EVAL_COUNT, help="held-out renders scored at the end")
    train.add_argument("--resume", action="store_true", help="continue the unfinished run that writes --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=run_train_predictor)


def register_train_world(actions: argparse._SubParsersAction) -> None:
    train = add_command(
        actions,
        "train-world",
        "Train the learned shapes3d generator (its W -> factor map, no image rendered) and write its weights; "
        "the package ships the result as shapes3d-learned.",
    )
    defaults = WorldSettings()
    train.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    for name in fields(WorldSettings):
        train.add_argument(flag(name.name), type=name.metadata["domain"], default=getattr(defaults, name.name), help=name.metadata["help"])
    train.add_argument("--save-every", type=COUNT, default=500, help="steps between atomic saves of the training state")
    train.add_argument("--resume", action="store_true", help="continue the unfinished run that writes --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=run_train_world)


def run_train_world(args: argparse.Namespace) -> int:
    settings = WorldSettings(**{name.name: getattr(args, name.name) for name in fields(WorldSettings)})
    started = time.perf_counter()
    train_world(args.out, settings, save_every=args.save_every, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {args.out} ({settings.steps} steps, {time.perf_counter() - started:.0f} s this run)")
    return 0


def choose_indices(count: int | None, render_all: bool, seed: int) -> np.ndarray:
    """All indices in order, or `count` distinct ones drawn with `seed` and sorted."""
    if render_all:
        return np.arange(NUM_IMAGES)
    if count is None or not 1 <= count <= NUM_IMAGES:
        raise UserError(f"--n {count}: expected an integer between 1 and {NUM_IMAGES} (or --all)")
    return np.sort(np.random.default_rng(seed).choice(NUM_IMAGES, size=count, replace=False))


def run_render(args: argparse.Namespace) -> int:
    indices = choose_indices(args.n, args.all, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    npz = NpzWriter(args.npz, indices, args.resolution) if args.npz is not None else None
    for batch, images in iter_renders(indices, args.resolution, progress=not args.no_progress):
        for index, image in zip(batch, images):
            Image.fromarray(image).save(args.out / f"{index:06d}.png")
        if npz is not None:
            npz.write(images)
    if npz is not None:
        npz.close()
    write_labels(args.out / LABELS_FILE, indices)
    print(f"wrote {len(indices)} images and {LABELS_FILE} to {args.out}" + (f", and {args.npz}" if args.npz else ""))
    return 0


def write_labels(path: Path, indices: np.ndarray) -> None:
    """CSV with a header: index and the six factor values per image."""
    labels = factor_values(index_to_factors(indices))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", *FACTOR_NAMES])
        writer.writerows([int(index), *(repr(float(value)) for value in row)] for index, row in zip(indices, labels))


def run_train_predictor(args: argparse.Namespace) -> int:
    accuracy = factor_predictor.train_factor_predictor(
        args.out,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
        progress=not args.no_progress,
        eval_count=args.eval_count,
    )
    print(f"wrote {args.out}; accuracy on {args.eval_count} held-out renders:")
    for name, value in accuracy.items():
        print(f"  {name:<12} {value:.4f}")
    return 0
