"""Procedural images from factor values, in NumPy: binary sprites (dSprites-like) and coloured scenes (3dshapes-like).

Pure functions from arrays of factor values [n] to uint8 images [n, H, W, C]; `tfvae.factors` maps factor
indices to values and calls them. A shape is an implicit function of canonical coordinates (u, v): u to the
right, v downwards, the shape inside roughly [-1, 1]^2. An image tests every pixel centre: it is moved to the
shape's centre, rotated back by the orientation and divided by the shape's half-size (pixels), so a pixel is
on when its centre lies inside the shape. No anti-aliasing, so sprites are exactly binary.

Conventions: pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5) pixels, y downwards; an
orientation of theta radians turns the shape counterclockwise as seen on the screen.
"""

from __future__ import annotations

import numpy as np

SPRITE_SHAPES = ("square", "ellipse", "heart")
SCENE_SHAPES = ("cube", "cylinder", "sphere", "pill")

SPRITE_HALF_SIZE = 0.2  # half-size of a sprite at scale 1, as a fraction of the image side
SPRITE_EXTENT = 1.07  # farthest point of any sprite from its centre, in half-sizes (the heart's lobes; square: 1.06)
SCENE_HALF_SIZE = 0.22  # half-size of a scene object at scale 1, as a fraction of the image side
LIGHT_LEVELS = 16  # brightness steps of a scene object
HORIZON = 0.6  # height of the floor/wall boundary at the image centre, as a fraction of the side from the top
_CHUNK = 256  # images rasterised at once (float32 temporaries of a few MB stay warm in memory)


def sprite_margin(size: int) -> float:
    """Pixels between the image border and the extreme centre positions (x or y = 0 or 1) of a sprite.

    Keeps the largest sprite (scale 1) inside the image at every orientation.
    """
    return float(np.ceil(SPRITE_EXTENT * SPRITE_HALF_SIZE * size) + 1)


def sprite_centre(position: np.ndarray, size: int) -> np.ndarray:
    """Position values in [0, 1] -> pixel coordinate of the sprite's centre, linearly in [margin, size - margin]."""
    margin = sprite_margin(size)
    return margin + np.asarray(position, np.float64) * (size - 2 * margin)


def canonical_coordinates(centre_x, centre_y, half_size, angle, box: int, origin_x=0, origin_y=0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The pixel centres of a box in each shape's own frame: (u, v), each float32 [n, box, box], in half-sizes.

    Args:
      centre_x, centre_y: [n] pixel coordinates of the shapes' centres (y downwards).
      half_size: [n] pixels per canonical unit.
      angle: [n] radians, counterclockwise on the screen.
      box: side of the square of pixels tested, pixels.
      origin_x, origin_y: [n] or scalars: column and row of the box's top-left pixel in the image.
    """
    grid = np.arange(box, dtype=np.float32) + 0.5
    n = len(np.atleast_1d(centre_x))
    origin_x = np.broadcast_to(np.asarray(origin_x, np.float32), (n,))
    origin_y = np.broadcast_to(np.asarray(origin_y, np.float32), (n,))
    dx = (origin_x - np.asarray(centre_x, np.float32))[:, None, None] + grid[None, None, :]
    up = (np.asarray(centre_y, np.float32) - origin_y)[:, None, None] - grid[None, :, None]  # y upwards
    cos = np.cos(np.asarray(angle, np.float32))[:, None, None]
    sin = np.sin(np.asarray(angle, np.float32))[:, None, None]
    scale = np.asarray(half_size, np.float32)[:, None, None]
    u = (cos * dx + sin * up) / scale
    v = (sin * dx - cos * up) / scale  # rotated back by -angle, then flipped to point downwards
    return u, v


def _by_shape(mask_fns, shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """bool [n, B, B]: each image tested against its own shape only (mask_fns[id](u, v))."""
    inside = np.zeros(u.shape, bool)
    for shape_id, fn in enumerate(mask_fns):
        rows = np.flatnonzero(shape == shape_id)
        if rows.size:
            inside[rows] = fn(u[rows], v[rows])
    return inside


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75


def _ellipse(u, v):
    return u * u + 4.0 * v * v <= 1.0  # semi-axes 1 and 0.5


def _heart(u, v):
    # The heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3 (y up), spanning x in +-1.14, y in [-1, 1.24]: centred and
    # shrunk so that no point lies farther than SPRITE_EXTENT from the centre.
    x, y = 1.25 * u, 0.118 - 1.25 * v
    x2, y2 = x * x, y * y
    r = x2 + y2 - 1.0
    return r * r * r <= x2 * y2 * y  # products: NumPy's float power is ~20x slower


def sprite_mask(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-tests of the dSprites shapes: bool [n, B, B] for shape ids [n] (0 square, 1 ellipse, 2 heart)."""
    return _by_shape((_square, _ellipse, _heart), np.asarray(shape), u, v)


def sprites(shape, scale, orientation, x, y, *, size: int) -> np.ndarray:
    """dSprites-like binary images: uint8 [n, size, size, 1], 255 on the shape, 0 elsewhere.

    Args:
      shape: [n] ids into SPRITE_SHAPES.
      scale: [n] sizes relative to the largest (dSprites: 0.5..1); at scale 1 the half-size is
        SPRITE_HALF_SIZE * size pixels.
      orientation: [n] radians.
      x, y: [n] positions in [0, 1]; 0 and 1 are the extreme centres (`sprite_centre`), y downwards.
      size: image side, pixels.
    """
    columns = [np.asarray(a) for a in (shape, scale, orientation, x, y)]
    n = len(columns[0])
    out = np.zeros((n, size, size, 1), np.uint8)
    box = int(2 * sprite_margin(size))  # holds any sprite, and stays inside the image for centres in range
    offsets = np.arange(box)
    for start in range(0, n, _CHUNK):
        s, sc, o, px, py = (c[start:start + _CHUNK] for c in columns)
        cx, cy = sprite_centre(px, size), sprite_centre(py, size)
        left = np.clip(np.floor(cx - box / 2), 0, size - box).astype(int)
        top = np.clip(np.floor(cy - box / 2), 0, size - box).astype(int)
        u, v = canonical_coordinates(cx, cy, sc * SPRITE_HALF_SIZE * size, o, box, left, top)
        image = start + np.arange(len(s))
        out[image[:, None, None], (top[:, None] + offsets)[:, :, None], (left[:, None] + offsets)[:, None, :], 0] = (
            sprite_mask(s, u, v).astype(np.uint8) * 255)
    return out


def _cube(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _cylinder(u, v):  # a side face and an elliptical top
    return ((np.abs(u) <= 0.55) & (np.abs(v) <= 0.85)) | ((u / 0.55) ** 2 + ((v + 0.85) / 0.2) ** 2 <= 1.0)


def _sphere(u, v):
    return u * u + v * v <= 0.81


def _pill(u, v):  # a stadium: radius 0.45, straight part of length 1
    w = np.abs(v) - np.minimum(np.abs(v), 0.5)
    return u * u + w * w <= 0.2025


SCENE_EXTENT = 1.14  # farthest point of any scene object from its centre, in half-sizes (the cube's corners)


def scene_mask(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-tests of the scene objects: bool [n, B, B] for ids [n] (0 cube, 1 cylinder, 2 sphere, 3 pill)."""
    return _by_shape((_cube, _cylinder, _sphere, _pill), np.asarray(shape), u, v)


def hsv_to_rgb(hue, saturation: float, value: float) -> np.ndarray:
    """Colours [n, 3] in [0, 1] from hues [n] in [0, 1) and one saturation and value."""
    h = (np.asarray(hue, np.float64) % 1.0) * 6.0
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    vv = np.full_like(f, value)
    pp = np.full_like(f, p)
    table = np.stack([np.stack(c, -1) for c in ((vv, t, pp), (q, vv, pp), (pp, vv, t),
                                                (pp, q, vv), (t, pp, vv), (vv, pp, q))], 0)
    return table[sector, np.arange(len(f))]


def scenes(floor_hue, wall_hue, object_hue, scale, shape, orientation, *, size: int) -> np.ndarray:
    """3dshapes-like colour images: uint8 [n, size, size, 3].

    A wall (pale, top) above a floor (darker, bottom) whose boundary passes HORIZON * size pixels from the top
    at the centre, tilted by the orientation (slope tan(orientation) / 2); an object of one hue, lit from above
    (its brightness falls from 100% at its top edge to 65% at its bottom edge, in its own frame, so the light
    turns with it; LIGHT_LEVELS steps), centred on the boundary and turned by the orientation.

    Args:
      floor_hue, wall_hue, object_hue: [n] hues in [0, 1).
      scale: [n] sizes (3dshapes: 0.75..1.25); at scale 1 the half-size is SCENE_HALF_SIZE * size pixels.
      shape: [n] ids into SCENE_SHAPES.
      orientation: [n] radians (3dshapes: -30..30 degrees).
      size: image side, pixels.
    """
    columns = [np.asarray(a) for a in (floor_hue, wall_hue, object_hue, scale, shape, orientation)]
    n = len(columns[0])
    out = np.empty((n, size, size, 3), np.uint8)
    grid = np.arange(size, dtype=np.float32) + 0.5
    centre_x, centre_y = size / 2, HORIZON * size
    largest = SCENE_EXTENT * SCENE_HALF_SIZE * size * float(np.max(columns[3], initial=0.0))
    box = min(size, 2 * int(np.ceil(largest)) + 2)
    left = min(max(int(np.floor(centre_x - box / 2)), 0), size - box)
    top = min(max(int(np.floor(centre_y - box / 2)), 0), size - box)
    brightness = np.linspace(1.0, 0.65, LIGHT_LEVELS)
    for start in range(0, n, _CHUNK):
        fh, wh, oh, sc, sh, o = (c[start:start + _CHUNK] for c in columns)
        m = len(fh)
        # Each pixel's label: 0 wall, 1 floor, 2 + k the object at light level k; then a palette per image.
        slope = (0.5 * np.tan(o)).astype(np.float32)[:, None, None]
        label = (grid[None, :, None] >= HORIZON * size + slope * (grid[None, None, :] - np.float32(centre_x)))
        label = label.astype(np.intp)
        u, v = canonical_coordinates(np.full(m, centre_x), np.full(m, centre_y), sc * SCENE_HALF_SIZE * size, o,
                                     box, left, top)
        level = np.clip(np.floor((v + 1.0) / 2.0 * LIGHT_LEVELS), 0, LIGHT_LEVELS - 1).astype(np.intp)
        np.copyto(label[:, top:top + box, left:left + box], 2 + level, where=scene_mask(sh, u, v))
        palette = np.zeros((m, 2 + LIGHT_LEVELS, 4), np.uint8)  # RGBA: one uint32 per colour, so one gather
        palette[:, 0, :3] = _to_uint8(hsv_to_rgb(wh, 0.55, 0.95))
        palette[:, 1, :3] = _to_uint8(hsv_to_rgb(fh, 0.75, 0.65))
        palette[:, 2:, :3] = _to_uint8(hsv_to_rgb(oh, 1.0, 1.0)[:, None, :] * brightness[None, :, None])
        flat = palette.view(np.uint32).reshape(-1)
        rgba = np.take(flat, label + (np.arange(m) * (2 + LIGHT_LEVELS))[:, None, None])
        out[start:start + m] = rgba.view(np.uint8).reshape(m, size, size, 4)[..., :3]
    return out


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] -> uint8 0..255, rounded."""
    return np.round(np.asarray(rgb) * 255).astype(np.uint8)
