"""`contrafeat align` (photos -> FFHQ-aligned faces), `contrafeat project` (images -> codes), `contrafeat edit` (a strip of
one edited code) and `contrafeat name` (name directions)."""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from contrafeat.commands.common import add_command, add_force_option, check_generator_match, run_checkpoint
from contrafeat.console import LOG
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.editing.edit import STRENGTH_FORMAT, edit_strip, parse_strengths
from contrafeat.editing.face_alignment import Alignment, FaceChoiceError, align_photo, outline
from contrafeat.editing.image_input import load_image, read_image, to_tensor
from contrafeat.editing.projector import SPACES, ProjectionResult, default_loss_network, load_projected_w, project, save_projected_w
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import attribute_change_matrix, build_predictor
from contrafeat.evaluation.dead_directions import DEAD_CHECK_SAMPLES, dead_directions
from contrafeat.features import Sensor, build_sensor
from contrafeat.gan.interface import GeneratorLike, seeded_codes
from contrafeat.io_utils import atomic_write_text
from contrafeat.options import COUNT, INDEX, NON_NEGATIVE, Domain
from contrafeat.runs import log_table
from contrafeat.viz.images import save_image_grid, save_png
from contrafeat.zoo import load_generator

W_FILE = "projected_w.npz"
RECONSTRUCTION_FILE = "reconstruction.png"
SIDE_BY_SIDE_FILE = "side_by_side.png"
ALIGNED_FILE = "aligned.png"
ALIGNMENT_FILE = "alignment.json"
RESOLUTION = Domain(int, 8, 4096, "a whole number of pixels in 8..4096")
ENTANGLED_RATIO = 0.5
"""--auto marks a direction whose second-most-moved attribute moves more than this share of the first."""
ENTANGLED_MARK = "?"
MAX_NAME_LENGTH = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_align(subparsers)
    _register_project(subparsers)
    _register_edit(subparsers)
    _register_name(subparsers)


def _add_face_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--face", type=COUNT, default=None,
        help="which face to align, 1 the largest (default: the largest; a line says when there are several)",
    )


def _register_align(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "align",
        "Crop each photo's face as the FFHQ dataset did (from five detected landmarks), for generators trained on aligned faces.",
    )
    parser.add_argument("images", type=Path, nargs="+", help="PNG, JPEG, WEBP or BMP photos")
    parser.add_argument(
        "--out", type=Path, default=Path("aligned"),
        help="folder of STEM.png (the aligned face) and STEM.json (source, landmarks, box, crop square, transform) per photo",
    )
    parser.add_argument(
        "--resolution", type=RESOLUTION, default=1024, help="side of the aligned image in pixels: the generator's (FFHQ: 1024)"
    )
    _add_face_option(parser)
    parser.set_defaults(handler=run_align)


def _register_project(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "project", "Find the code of each image by optimisation (the stylegan2-ada projector) and save it.")
    parser.add_argument(
        "images", type=Path, nargs="+",
        help="PNG, JPEG, WEBP or BMP files (centre-cropped to a square, resized to the generator; with --align, the face aligned)",
    )
    parser.add_argument(
        "--align", action="store_true",
        help=(
            "for face generators (FFHQ and others trained on aligned faces): find the face and align it as the FFHQ dataset did "
            f"instead of the centre crop (see `contrafeat align`); adds {ALIGNED_FILE} and {ALIGNMENT_FILE}, and "
            f"{SIDE_BY_SIDE_FILE} shows the photo with the crop, the aligned face and the reconstruction"
        ),
    )
    _add_face_option(parser)
    parser.add_argument("--checkpoint", default="shapes3d", help="generator: zoo name or checkpoint path")
    parser.add_argument("--space", default="w+", choices=SPACES, help="w+: one code per layer; w: one code shared by all layers")
    parser.add_argument("--steps", type=COUNT, default=1000, help="optimisation steps")
    parser.add_argument("--mse-weight", type=NON_NEGATIVE, default=0.0, help="weight of the pixel MSE added to the perceptual distance")
    parser.add_argument(
        "--sensor", default=None, help="perceptual network (default: vgg16 when its weights are at hand, else mobilenet_v2)"
    )
    parser.add_argument("--sensor-weights", default=None, help="weight file of --sensor")
    parser.add_argument("--batch-size", type=COUNT, default=4, help="images optimised together")
    parser.add_argument(
        "--out", type=Path, default=Path("projections"),
        help=f"one folder per image, named after its file stem, holding {W_FILE}, {RECONSTRUCTION_FILE} and {SIDE_BY_SIDE_FILE}",
    )
    parser.add_argument("--seed", type=INDEX, default=0, help="seed of the noise maps and the latent noise")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run_project)


def _register_edit(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "edit", "Render a strip of one code edited along one direction at several strengths.")
    # argparse would read '-2:2:5' as an option; every '-<digit>' word is a value here (no option looks like a number).
    parser._negative_number_matcher = re.compile(r"^-\.?\d")
    parser.add_argument("--w", type=Path, required=True, help=f"{W_FILE} written by `contrafeat project` (key 'w', [1, num_ws, w_dim])")
    parser.add_argument("--directions", type=Path, required=True, help="run folder written by `contrafeat discover`")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=INDEX, help="direction index")
    which.add_argument("--name", help="direction name (see `contrafeat name`)")
    parser.add_argument(
        "--strength", default="-2:2:5",
        help=f"multiples of the direction's suggested strength, as traverse's --strength-multiplier: {STRENGTH_FORMAT}",
    )
    parser.add_argument("--checkpoint", default=None, help="generator (default: the one in the run's config.yaml)")
    parser.add_argument("--out", type=Path, default=Path("strip.png"), help="the strip PNG, one column per strength")
    add_force_option(parser)
    parser.set_defaults(handler=run_edit)


def _register_name(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "name",
        "Name directions of a run: RUN INDEX NAME by hand, RUN --auto by the attribute each moves most, --clear to remove names.",
    )
    parser.add_argument("run", type=Path, help="run folder written by `contrafeat discover`")
    parser.add_argument("index", type=INDEX, nargs="?", help="direction index")
    parser.add_argument("name", nargs="?", help="the name to store")
    parser.add_argument(
        "--auto", action="store_true",
        help=(
            "name every direction by the attribute it moves most between -s and +s (s its suggested strength); when several "
            "move the same one, the cleanest keeps the plain name and the others get -2, -3, ...; a name ending in "
            f"'{ENTANGLED_MARK}' marks a direction whose second attribute moves more than {ENTANGLED_RATIO:g} times the first"
        ),
    )
    parser.add_argument("--clear", action="store_true", help="remove the name of INDEX, or of every direction without INDEX")
    parser.add_argument(
        "--predictor", default="exact", help="--auto: exact (shapes3d factors), cnn (bundled shapes3d CNN) or MODULE:CALLABLE"
    )
    parser.add_argument("--samples", type=COUNT, default=200, help="--auto: samples per direction")
    parser.add_argument("--checkpoint", default=None, help="--auto: generator (default: the one in the run's config.yaml)")
    add_force_option(parser)
    parser.set_defaults(handler=run_name)


def _loss_network(args: argparse.Namespace, generator: GeneratorLike) -> Sensor:
    if args.sensor is None:
        return default_loss_network(generator)
    return build_sensor(args.sensor, weights=args.sensor_weights, generator=generator)


def _check_stems(images: list[Path], out: Path, suffix: str = "") -> None:
    """Refuse two inputs that would write to the same place (out / STEM + suffix)."""
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise UserError(f"{path} and {stems[path.stem]} would both write to {out / (path.stem + suffix)}; rename one")
        stems[path.stem] = path


def _check_project_args(args: argparse.Namespace) -> None:
    if args.sensor is None and args.sensor_weights is not None:
        raise UserError("--sensor-weights needs --sensor NAME to say which network the file is for")
    if args.face is not None and not args.align:
        raise UserError(f"--face {args.face} chooses the face to align; add --align")
    _check_stems(args.images, args.out)


def _align(path: Path, resolution: int, face: int | None) -> tuple[Alignment, Image.Image]:
    """One photo's aligned face and the photo itself; a line when it has several faces and none was chosen."""
    name, photo = read_image(path, square_crop=False)
    try:
        alignment = align_photo(photo, resolution, face, name)
    except FaceChoiceError as error:
        found = f"{error.found} face{'s' if error.found > 1 else ''}"
        raise UserError(f"--face {error.number}: only {found} found in {name}") from None
    if face is None and alignment.faces_found > 1:
        LOG.warning(f"{alignment.faces_found} faces found in {name}; aligning the largest (--face 1..{alignment.faces_found} to choose)")
    return alignment, photo


def _write_alignment(alignment: Alignment, source: Path, image_path: Path, json_path: Path) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    alignment.image.save(image_path, format="PNG")
    atomic_write_text(json_path, json.dumps(alignment.describe(str(source)), indent=2) + "\n")


def run_align(args: argparse.Namespace) -> int:
    _check_stems(args.images, args.out, ".png")
    inputs = {path.resolve() for path in args.images}
    for path in args.images:
        if (args.out / f"{path.stem}.png").resolve() in inputs:
            raise UserError(f"--out {args.out}: {args.out / (path.stem + '.png')} would overwrite the photo itself; choose another folder")
    aligned = [_align(path, args.resolution, args.face)[0] for path in args.images]  # every photo checked before anything is written
    for path, alignment in zip(args.images, aligned):
        image_path = args.out / f"{path.stem}.png"
        _write_alignment(alignment, path, image_path, args.out / f"{path.stem}.json")
        face = f"face {alignment.face_number} of {alignment.faces_found}"
        print(f"{path}: {face}, crop {alignment.crop_size:.0f} px -> {image_path} ({alignment.resolution} px)")
    return 0


@dataclass
class Target:
    """One image to project: the tensor [3, R, R] and, when aligned, its alignment and the photo with the crop drawn."""

    path: Path
    pixels: torch.Tensor
    alignment: Alignment | None = None
    overview: torch.Tensor | None = None


def _target(path: Path, resolution: int, args: argparse.Namespace) -> Target:
    if not args.align:
        return Target(path, load_image(path, resolution)[0])
    alignment, photo = _align(path, resolution, args.face)
    return Target(path, to_tensor(alignment.image)[0], alignment, to_tensor(outline(photo, alignment, resolution))[0])


def _write_projection(target: Target, result: ProjectionResult, row: int, out: Path) -> None:
    """The files of one image, and its final errors on stdout."""
    folder = out / target.path.stem
    save_projected_w(result.ws[row : row + 1], folder / W_FILE)
    save_png(result.images[row], folder / RECONSTRUCTION_FILE)
    columns = [target.pixels, result.images[row]]
    if target.alignment is not None and target.overview is not None:
        _write_alignment(target.alignment, target.path, folder / ALIGNED_FILE, folder / ALIGNMENT_FILE)
        columns.insert(0, target.overview)
    save_image_grid(torch.stack(columns), folder / SIDE_BY_SIDE_FILE, columns=len(columns))
    perceptual, mse = float(result.perceptual[row]), float(result.pixel_mse[row])
    print(f"{target.path}: perceptual {perceptual:.4f}, pixel MSE {mse:.5f} -> {folder}")


def run_project(args: argparse.Namespace) -> int:
    _check_project_args(args)
    generator = load_generator(args.checkpoint)
    if generator.img_channels != 3:
        channels = generator.img_channels
        raise UserError(f"--checkpoint {args.checkpoint}: the generator makes {channels}-channel images; projection needs RGB")
    loaded = [_target(path, generator.img_resolution, args) for path in args.images]
    targets = torch.stack([target.pixels for target in loaded])
    sensor = _loss_network(args, generator)
    print(f"projecting {len(args.images)} image(s) into {args.space} with {sensor.name}, {args.steps} steps", file=sys.stderr)
    for start in range(0, len(args.images), args.batch_size):
        batch = targets[start : start + args.batch_size]
        result = project(
            generator, batch, steps=args.steps, space=args.space, loss_network=sensor, mse_weight=args.mse_weight,
            seed=args.seed, progress=not args.no_progress,
        )
        for row, target in enumerate(loaded[start : start + args.batch_size]):
            _write_projection(target, result, row, args.out)
    return 0


def run_edit(args: argparse.Namespace) -> int:
    multiples = parse_strengths(args.strength)
    directions = load_directions(args.directions)
    checkpoint = run_checkpoint(args.directions, args.checkpoint)
    generator = load_generator(checkpoint)
    check_generator_match(directions, generator, checkpoint, args.force)
    try:
        index = directions.resolve_index(args.index, args.name)
    except UserError as error:
        raise UserError(f"{'--name' if args.name is not None else '--index'} {error}") from None
    ws = load_projected_w(args.w, generator)
    unit = float(directions.strengths[index])
    images = edit_strip(generator, ws, directions, index, [multiple * unit for multiple in multiples])
    save_image_grid(images, args.out, columns=len(multiples))
    label = f"direction {index}" + (f" ({directions.names[index]})" if directions.names[index] else "")
    print(f"strip: {args.out} ({label}, {len(multiples)} strengths x suggested strength {unit:.3g})", file=sys.stderr)
    return 0


@dataclass
class AutoName:
    """What --auto found for one direction: its name, the attribute it moves most (by how much), the runner-up and its share."""

    index: int
    name: str | None
    top: str | None
    change: float
    runner_up: str | None
    ratio: float


def _valid_name(text: str, directions: Directions, index: int) -> str:
    name = text.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise UserError(f"NAME {text!r}: expected 1 to {MAX_NAME_LENGTH} printable characters")
    for other, existing in enumerate(directions.names):
        if existing == name and other != index:
            raise UserError(f"NAME {name!r}: direction {other} already has it; names must be unique (clear or rename that one first)")
    return name


def _strongest(index: int, row: torch.Tensor, attribute_names: list[str], dead: bool) -> AutoName:
    """The attribute a matrix row moves most and the runner-up's share of it (no name yet; none for a dead direction)."""
    values, order = (part.tolist() for part in row.sort(descending=True))
    change = values[0]
    if dead or change <= 0:
        return AutoName(index, None, None, change, None, 0.0)
    if len(order) == 1:
        return AutoName(index, None, attribute_names[order[0]], change, None, 0.0)
    return AutoName(index, None, attribute_names[order[0]], change, attribute_names[order[1]], values[1] / change)


def auto_names(matrix: torch.Tensor, attribute_names: list[str], dead: Sequence[int] = ()) -> list[AutoName]:
    """Per row of an attribute-change matrix [K, A]: the attribute moved most, made unique, marked when entangled;
    `dead` rows (directions that do not move the image) get no name."""
    found = [_strongest(index, row, attribute_names, index in dead) for index, row in enumerate(matrix.double())]
    for attribute in {entry.top for entry in found if entry.top is not None}:
        group = sorted((entry for entry in found if entry.top == attribute), key=lambda entry: entry.ratio)
        for rank, entry in enumerate(group, start=1):
            base = attribute if rank == 1 else f"{attribute}-{rank}"
            entry.name = base + (ENTANGLED_MARK if entry.ratio > ENTANGLED_RATIO else "")
    return found


def _auto(args: argparse.Namespace, directions: Directions) -> None:
    checkpoint = run_checkpoint(args.run, args.checkpoint)
    generator = load_generator(checkpoint)
    check_generator_match(directions, generator, checkpoint, args.force)
    predictor = build_predictor(args.predictor, generator)
    matrix = attribute_change_matrix(generator, directions, predictor, directions.strengths, num_samples=args.samples)
    dead, _ = dead_directions(generator, directions, directions.strengths, seeded_codes(generator, DEAD_CHECK_SAMPLES, 0, 0.5))
    found = auto_names(matrix, predictor.names, dead)
    for entry in found:
        directions.names[entry.index] = entry.name
    _report_auto(found, f"names from the attribute changes ({args.predictor}, {args.samples} samples, suggested strengths)")


def _report_auto(found: list[AutoName], caption: str) -> None:
    """A warning line per unnamed or entangled direction (stderr), then the table (stdout)."""
    for entry in found:
        if entry.top is None:
            print(f"warning: direction {entry.index} moves no attribute; left unnamed", file=sys.stderr)
        elif entry.ratio > ENTANGLED_RATIO:
            print(
                f"warning: direction {entry.index} moves {entry.runner_up} {entry.ratio:.2f} times as much as {entry.top}; "
                f"named {entry.name!r}", file=sys.stderr,
            )
    rows = [
        {"direction": e.index, "name": e.name or "-", "moves most": e.top or "-", "change": e.change,
         "second": e.runner_up or "-", "second / first": e.ratio}
        for e in found
    ]
    log_table(caption, rows)


def _direction_index(index: int, directions: Directions) -> int:
    if not 0 <= index < directions.count:
        raise UserError(f"INDEX {index}: expected a direction index in 0..{directions.count - 1}")
    return index


def _check_name_args(args: argparse.Namespace) -> None:
    if args.auto and (args.clear or args.index is not None or args.name is not None):
        raise UserError("--auto names every direction; give it neither INDEX, NAME nor --clear")
    if args.clear and args.name is not None:
        raise UserError("--clear removes names; give INDEX (one direction) or nothing (all), not NAME")
    if not (args.auto or args.clear) and (args.index is None or args.name is None):
        raise UserError("expected RUN INDEX NAME, RUN --auto or RUN [INDEX] --clear")


def run_name(args: argparse.Namespace) -> int:
    _check_name_args(args)
    directions = load_directions(args.run)
    if args.auto:
        _auto(args, directions)
    elif args.clear:
        targets = range(directions.count) if args.index is None else [_direction_index(args.index, directions)]
        for index in targets:
            directions.names[index] = None
        print(f"cleared the names of {len(targets)} direction(s)", file=sys.stderr)
    else:
        index = _direction_index(args.index, directions)
        directions.names[index] = _valid_name(args.name, directions, index)
        print(f"direction {index} is now named {directions.names[index]!r}", file=sys.stderr)
    directions.save(args.run)
    return 0
