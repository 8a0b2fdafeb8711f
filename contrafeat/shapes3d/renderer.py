"""Differentiable batched renderer of the 3DShapes look-alike scene: sky, a three-walled room and one object.

Input: continuous factor values [B, 6] in the order floor_hue, wall_hue, object_hue (hues in [0, 1),
wrapping), scale (0.75..1.25), shape (a coordinate in [0, 3] that blends the signed distance fields of
cube 0, cylinder 1, sphere 2, capsule 3) and orientation (the camera's azimuth in degrees, -30..30).
Scales above 1.25 would be cut by the object window, and azimuths beyond about 36 degrees would put
the camera outside the room.
The room, floor and sky come from analytic ray-plane intersections with edges ramped over one pixel;
the object is sphere-traced inside its fixed screen-space bounding box, with a coverage taken from the
smallest signed distance along each ray, so silhouettes are anti-aliased and differentiable.
Renders are supersampled and box-filtered; the result is deterministic and lies in [0, 1].
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F

SKY_RGB = (153 / 255, 226 / 255, 249 / 255)
CAMERA_DISTANCE = 5.0
"""Horizontal distance of the camera from the object's vertical axis (world units)."""
CAMERA_HEIGHT = 1.6
LOOK_AT_HEIGHT = 1.29
FOCAL = 95 / 64
"""Focal length in image widths."""
ROOM_HALF_WIDTH = 3.0
BACK_WALL_Z = -6.0
WALL_HEIGHT = 2.54
SIDE_WALL_SHADE = 0.72
AMBIENT = 0.5
LIGHT = (-0.45, 0.7, 0.75)
"""Direction towards the key light: upper left, in front of the object."""
SHADOW_STRENGTH = 0.55
BOUND_RADIUS = 0.92
BOUND_HEIGHT = 1.6
"""Radius and height of a vertical cylinder around the object's axis holding every shape up to scale 1.25."""
TRACE_START = CAMERA_DISTANCE - BOUND_RADIUS - 0.05
TRACE_END = CAMERA_DISTANCE + BOUND_RADIUS + 0.5
MIN_STEP = 0.5
"""Smallest forward step of the sphere tracing, in pixel footprints (speeds up rays grazing a face)."""
NUM_SHAPES = 4
_EPS = 1e-12


class Rendering(NamedTuple):
    """An image [B, 3, R, R] in [0, 1] and the share of each pixel per surface [B, 4, R, R]: sky, wall, floor, object."""

    image: torch.Tensor
    coverage: torch.Tensor


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """hsv(hue, 1, 1) -> rgb [..., 3], differentiable; hue wraps with period 1."""
    sextant = 6.0 * hue[..., None] + hue.new_tensor([0.0, 4.0, 2.0])
    return ((torch.remainder(sextant, 6.0) - 3.0).abs() - 1.0).clamp(0.0, 1.0)


def render(factors: torch.Tensor, resolution: int = 64, supersample: int = 4, trace_steps: int = 32) -> torch.Tensor:
    """Factor values [B, 6] -> images [B, 3, resolution, resolution] in [0, 1]."""
    return render_scene(factors, resolution, supersample, trace_steps).image


def render_scene(factors: torch.Tensor, resolution: int = 64, supersample: int = 4, trace_steps: int = 32) -> Rendering:
    """Factor values [B, 6] -> the image and its per-surface coverage, both box-filtered to `resolution`."""
    if factors.ndim != 2 or factors.shape[1] != 6:
        raise ValueError(f"factors: expected shape [B, 6], got {list(factors.shape)}")
    if resolution < 8 or supersample < 1 or trace_steps < 1:
        got = f"{resolution}, {supersample}, {trace_steps}"
        raise ValueError(f"render: expected resolution >= 8, supersample >= 1, trace_steps >= 1; got {got}")
    size = resolution * supersample
    floor_hue, wall_hue, object_hue, scale, shape, orientation = factors.unbind(1)
    camera = _camera(orientation)
    rays = _rays(camera, size)
    pixel_angle = 1.0 / (FOCAL * size)
    colour, surfaces = _background(camera[0], rays, pixel_angle, hue_to_rgb(floor_hue), hue_to_rgb(wall_hue), scale)
    top, bottom, left, right = _object_window(size)
    window = rays[:, :, top:bottom, left:right]
    object_colour, object_alpha = _object(camera[0], window, pixel_angle, hue_to_rgb(object_hue), scale, shape, trace_steps)
    padding = (left, size - right, top, size - bottom)
    alpha = F.pad(object_alpha, padding)[:, None]
    image = colour * (1.0 - alpha) + F.pad(object_colour, padding) * alpha
    coverage = torch.cat([surfaces * (1.0 - alpha), alpha], dim=1)
    if supersample > 1:
        image, coverage = F.avg_pool2d(image, supersample), F.avg_pool2d(coverage, supersample)
    return Rendering(image, coverage)


def _camera(orientation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origin, forward, right and up vectors [B, 3] of the camera orbiting the object by `orientation` degrees."""
    azimuth = orientation * (math.pi / 180.0)
    height = torch.full_like(azimuth, CAMERA_HEIGHT)
    origin = torch.stack([CAMERA_DISTANCE * torch.sin(azimuth), height, CAMERA_DISTANCE * torch.cos(azimuth)], dim=1)
    target = origin.new_tensor([0.0, LOOK_AT_HEIGHT, 0.0])
    forward = F.normalize(target - origin, dim=1)
    right = F.normalize(torch.stack([-forward[:, 2], torch.zeros_like(azimuth), forward[:, 0]], dim=1), dim=1)
    up = torch.linalg.cross(right, forward, dim=1)
    return origin, forward, right, up


def _rays(camera: tuple[torch.Tensor, ...], size: int) -> torch.Tensor:
    """Ray directions [B, 3, size, size] through pixel centres on an image plane at unit depth (not normalised)."""
    _, forward, right, up = camera
    offsets = (torch.arange(size, dtype=forward.dtype, device=forward.device) + 0.5 - size / 2) / (FOCAL * size)
    across = offsets[None, None, None, :] * right[:, :, None, None]
    down = offsets[None, None, :, None] * up[:, :, None, None]
    return forward[:, :, None, None] + across - down


def _ramp(signed_pixels: torch.Tensor) -> torch.Tensor:
    """Share of a pixel on the positive side of an edge `signed_pixels` pixels away from its centre."""
    return (0.5 + signed_pixels).clamp(0.0, 1.0)


def _background(
    origin: torch.Tensor, rays: torch.Tensor, pixel_angle: float, floor_rgb: torch.Tensor, wall_rgb: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Room colour [B, 3, S, S] and the sky, wall and floor shares [B, 3, S, S] of every ray (camera inside the room)."""
    ox, oy, oz = (origin[:, axis, None, None] for axis in range(3))
    dx, dy, dz = rays.unbind(1)
    t_back = (BACK_WALL_Z - oz) / dz
    x_back, y_back = ox + t_back * dx, oy + t_back * dy
    dx_safe = torch.where(dx.abs() < 1e-9, torch.full_like(dx, 1e-9), dx)
    t_side = (torch.sign(dx_safe) * ROOM_HALF_WIDTH - ox) / dx_safe
    y_side = oy + t_side * dy
    side = _ramp((x_back.abs() - ROOM_HALF_WIDTH) / (t_back * pixel_angle))
    floor_back = _ramp(-y_back / (t_back * pixel_angle))
    sky_back = _ramp((y_back - WALL_HEIGHT) / (t_back * pixel_angle))
    floor_side = _ramp(-y_side / (t_side * pixel_angle))
    sky_side = _ramp((y_side - WALL_HEIGHT) / (t_side * pixel_angle))
    back_wall = (1.0 - side) * (1.0 - floor_back - sky_back)
    side_wall = side * (1.0 - floor_side - sky_side)
    sky = (1.0 - side) * sky_back + side * sky_side
    floor = (1.0 - side) * floor_back + side * floor_side
    wall_light = back_wall * _wall_shade(y_back) + side_wall * (SIDE_WALL_SHADE * _wall_shade(y_side))
    colour = (
        sky[:, None] * rays.new_tensor(SKY_RGB)[None, :, None, None]
        + floor[:, None] * _floor_colour(origin, rays, floor_rgb, scale)
        + wall_light[:, None] * wall_rgb[:, :, None, None]
    )
    return colour, torch.stack([sky, back_wall + side_wall, floor], dim=1)


def _wall_shade(height: torch.Tensor) -> torch.Tensor:
    """Walls a little darker towards the floor."""
    return 0.84 + 0.12 * (height / WALL_HEIGHT).clamp(0.0, 1.0)


def _floor_colour(origin: torch.Tensor, rays: torch.Tensor, floor_rgb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Floor colour [B, 3, S, S] where each ray meets the floor: brighter towards the camera, with the object's soft shadow."""
    ox, oy, oz = (origin[:, axis, None, None] for axis in range(3))
    dx, dy, dz = rays.unbind(1)
    t_floor = -oy / torch.where(dy < -1e-6, dy, torch.full_like(dy, -1e-6))
    x, z = ox + t_floor * dx, oz + t_floor * dz
    depth = ((z - BACK_WALL_Z) / (CAMERA_DISTANCE - BACK_WALL_Z)).clamp(0.0, 1.0)
    s = scale[:, None, None]
    blob = torch.exp(-(((x - 0.3 * s) / (0.7 * s)) ** 2 + ((z - 0.25 * s) / (0.55 * s)) ** 2))
    light = (0.82 + 0.18 * depth) * (1.0 - SHADOW_STRENGTH * blob)
    return light[:, None] * floor_rgb[:, :, None, None]


@lru_cache(maxsize=None)
def _object_window(size: int) -> tuple[int, int, int, int]:
    """Rows [top, bottom) and columns [left, right) that hold the object's projection at every azimuth.

    The camera orbits the object's axis, so the projection of the bounding cylinder does not depend on the azimuth.
    """
    camera = _camera(torch.zeros(1, dtype=torch.float64))
    origin, forward, right, up = (vector[0] for vector in camera)
    angles = torch.linspace(0, 2 * math.pi, 97, dtype=torch.float64)
    rim = torch.stack([BOUND_RADIUS * torch.cos(angles), torch.zeros_like(angles), BOUND_RADIUS * torch.sin(angles)], dim=1)
    points = torch.cat([rim, rim + rim.new_tensor([0.0, BOUND_HEIGHT, 0.0])]) - origin
    depth = points @ forward
    column = (points @ right) / depth * FOCAL * size + size / 2
    row = -(points @ up) / depth * FOCAL * size + size / 2
    margin = 2
    return (
        max(0, int(row.min()) - margin),
        min(size, int(math.ceil(float(row.max()))) + margin),
        max(0, int(column.min()) - margin),
        min(size, int(math.ceil(float(column.max()))) + margin),
    )


def _object(
    origin: torch.Tensor,
    rays: torch.Tensor,
    pixel_angle: float,
    object_rgb: torch.Tensor,
    scale: torch.Tensor,
    shape: torch.Tensor,
    trace_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object colour [B, 3, h, w] and coverage [B, h, w] for the rays of the object window."""
    directions = F.normalize(rays, dim=1)
    start = origin[:, :, None, None]
    blend = shape_blend(shape)
    with torch.no_grad():
        t_closest, t_surface, hit = _trace(start, directions, scale, blend, pixel_angle, trace_steps)
    distance = shape_sdf(start + t_closest[:, None] * directions, scale, blend)
    coverage = _ramp(-distance / (t_closest * pixel_angle))
    t_shade = torch.where(hit, t_surface, t_closest)
    normal = _normal(start + t_shade[:, None] * directions, scale, blend)
    lambert = (normal * normal.new_tensor(LIGHT)[None, :, None, None]).sum(1) / math.hypot(*LIGHT)
    light = AMBIENT + (1.0 - AMBIENT) * lambert.clamp_min(0.0)
    return light[:, None] * object_rgb[:, :, None, None], coverage


def _trace(
    start: torch.Tensor, directions: torch.Tensor, scale: torch.Tensor, blend: ShapeBlend, pixel_angle: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sphere tracing (relaxed by MIN_STEP) -> ray parameters of the smallest distance per pixel footprint and of
    the surface, and which rays hit."""
    t = torch.full_like(directions[:, 0], TRACE_START)
    best_ratio = torch.full_like(t, math.inf)
    best_t = t.clone()
    for _ in range(steps):
        distance = shape_sdf(start + t[:, None] * directions, scale, blend)
        best_ratio, best_t = _keep_smaller(distance / t, t, best_ratio, best_t)
        t_last = t
        step = torch.where(distance < 0, distance, distance.clamp_min(MIN_STEP * pixel_angle * t))
        t = (t + step).clamp(max=TRACE_END)
    hit = distance < 0.25 * pixel_angle * t_last
    for depth in (0.5, 1.0, 2.0):
        t_inside = t_last + depth * pixel_angle * t_last
        ratio = shape_sdf(start + t_inside[:, None] * directions, scale, blend) / t_inside
        best_ratio, best_t = _keep_smaller(ratio, t_inside, best_ratio, best_t)
    return best_t, t_last, hit


def _keep_smaller(
    ratio: torch.Tensor, t: torch.Tensor, best_ratio: torch.Tensor, best_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    smaller = ratio < best_ratio
    return torch.where(smaller, ratio, best_ratio), torch.where(smaller, t, best_t)


def _normal(points: torch.Tensor, scale: torch.Tensor, blend: ShapeBlend, step: float = 2e-3) -> torch.Tensor:
    """Unit surface normals [B, 3, h, w] by tetrahedral finite differences of the SDF."""
    corners = points.new_tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
    gradient = sum(
        corner[None, :, None, None] * shape_sdf(points + step * corner[None, :, None, None], scale, blend)[:, None]
        for corner in corners
    )
    return F.normalize(gradient, dim=1)


class ShapeBlend(NamedTuple):
    """Per-sample blend weights [B, 4] of the four shapes and the shapes any sample of the batch uses."""

    weights: torch.Tensor
    active: tuple[int, ...]


def shape_blend(shape: torch.Tensor) -> ShapeBlend:
    """Weights linear between the two integers around the shape coordinate: floor(shape) and the next one.

    The lower neighbour is floor(shape) (2 at shape 3), so the derivative with respect to the shape is never zero.
    """
    shape = shape.clamp(0.0, NUM_SHAPES - 1.0)
    lower = shape.detach().floor().clamp(max=NUM_SHAPES - 2.0)
    fraction = (shape - lower)[:, None]
    index = torch.arange(NUM_SHAPES, device=shape.device, dtype=shape.dtype)[None, :]
    weights = (1.0 - fraction) * (index == lower[:, None]) + fraction * (index == lower[:, None] + 1)
    lowest, highest = int(lower.min()), int(lower.max()) + 1
    return ShapeBlend(weights, tuple(range(lowest, highest + 1)))


def shape_sdf(points: torch.Tensor, scale: torch.Tensor, blend: ShapeBlend) -> torch.Tensor:
    """Blended signed distance [B, ...] of points [B, 3, ...] to the object standing on the floor at the origin."""
    x, y, z = points.unbind(1)
    s = scale.reshape(-1, *([1] * (x.ndim - 1)))
    total = torch.zeros_like(x)
    for index in blend.active:
        total = total + blend.weights[:, index].reshape(s.shape) * _PRIMITIVES[index](x, y, z, s)
    return total


def _length(*parts: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(sum(part * part for part in parts) + _EPS)


def _cube(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    half, rounding = 0.5 * s, 0.04 * s
    qx, qy, qz = x.abs() - half + rounding, (y - half).abs() - half + rounding, z.abs() - half + rounding
    inside = torch.maximum(torch.maximum(qx, qy), qz).clamp(max=0.0)
    return _length(qx.clamp(min=0.0), qy.clamp(min=0.0), qz.clamp(min=0.0)) + inside - rounding


def _cylinder(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    radius, half_height, rounding = 0.5 * s, 0.6 * s, 0.03 * s
    radial = _length(x, z) - radius + rounding
    vertical = (y - half_height).abs() - half_height + rounding
    inside = torch.maximum(radial, vertical).clamp(max=0.0)
    return _length(radial.clamp(min=0.0), vertical.clamp(min=0.0)) + inside - rounding


def _sphere(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    radius = 0.55 * s
    return _length(x, y - radius, z) - radius


def _capsule(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    radius, half_segment = 0.42 * s, 0.2 * s
    height = y - (radius + half_segment)
    return _length(x, height - torch.maximum(torch.minimum(height, half_segment), -half_segment), z) - radius


_PRIMITIVES = (_cube, _cylinder, _sphere, _capsule)
"""Signed distance functions in the shape order of 3DShapes: cube, cylinder, sphere, capsule."""
