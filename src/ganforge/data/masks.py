"""Training masks for inpainting: seeded, named generators whose coverage can be stated.

A mask is a bool array (H, W), True where pixels are missing. Each preset draws what a user's
holes look like, at any image size (the shapes are defined at 256 px and scaled):

- `box`: one to three rectangles (Context Encoders' holes, and objects to remove);
- `freeform`: DeepFill v2's free-form brush strokes: polylines of 4-12 vertices whose direction
  wanders, drawn with a round brush 12-40 px wide;
- `thin`, `medium`, `thick`: LaMa's presets (Suvorov et al. 2022, configs/data_gen/random_*_256):
  polylines of random angle, segment length and width, plus boxes for `medium` and `thick`;
- `mixed`: each mask from one of the above, chosen uniformly, which is what LaMa trains on.

As in LaMa, a mask covering more than `MAX_COVERAGE` of the image is drawn again, and so is an
empty one, so every mask leaves something to fill and enough context to fill it from.
"""

import math
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

MASK_KINDS = ("box", "freeform", "thin", "medium", "thick", "mixed")
MAX_COVERAGE = 0.5
REFERENCE_SIZE = 256  # preset sizes are in pixels of a 256 x 256 image
# LaMa's irregular-stroke presets: strokes per mask, then the segment length, width and angle limits.
LAMA_STROKES = {
    "thin": {"times": (4, 50), "max_len": 40, "max_width": 10},
    "medium": {"times": (4, 5), "max_len": 100, "max_width": 50},
    "thick": {"times": (1, 5), "max_len": 200, "max_width": 100},
}
# LaMa draws boxes in 0.3 / 1.3 of its medium and thick masks: (count range, min side, max side, margin).
LAMA_BOXES = {"medium": ((1, 5), 10, 50, 0), "thick": ((1, 3), 30, 150, 10)}
LAMA_BOX_SHARE = 0.3 / 1.3


def random_mask(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One mask of preset `kind` (see the module docstring), redrawn until 0 < coverage <= MAX_COVERAGE."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")
    while True:
        preset = MASK_KINDS[rng.integers(len(MASK_KINDS) - 1)] if kind == "mixed" else kind
        mask = _DRAW[preset](height, width, rng)
        if 0 < mask.mean() <= MAX_COVERAGE:
            return mask


def mask_batch(kind: str, n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """`n` masks as a bool array (n, H, W)."""
    return np.stack([random_mask(kind, height, width, rng) for _ in range(n)])


def _canvas(height: int, width: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("1", (width, height), 0)
    return image, ImageDraw.Draw(image)


def _scale(height: int, width: int) -> float:
    return min(height, width) / REFERENCE_SIZE


def _stroke(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float) -> None:
    """A polyline drawn with a round brush: a line per segment and a disc at every vertex."""
    r = width / 2
    draw.line(points, fill=1, width=max(1, round(width)))
    for x, y in points:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=1)


def _boxes(height: int, width: int, rng: np.random.Generator, times: tuple[int, int], min_side: float,
           max_side: float, margin: float, draw: ImageDraw.ImageDraw) -> None:
    margin = int(margin)
    max_side = max(min_side + 1, min(max_side, height - 2 * margin, width - 2 * margin))
    for _ in range(rng.integers(times[0], times[1] + 1)):
        bw, bh = (int(rng.integers(int(min_side), int(max_side))) for _ in range(2))
        x = int(rng.integers(margin, max(margin + 1, width - margin - bw + 1)))
        y = int(rng.integers(margin, max(margin + 1, height - margin - bh + 1)))
        draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=1)


def _box_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One to three rectangles, each side 10-50% of the image's."""
    image, draw = _canvas(height, width)
    for _ in range(rng.integers(1, 4)):
        bh = max(1, int(height * rng.uniform(0.1, 0.5)))
        bw = max(1, int(width * rng.uniform(0.1, 0.5)))
        y, x = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
        draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=1)
    return np.array(image, dtype=bool)


def _freeform_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """DeepFill v2's brush strokes (Yu et al. 2019, Algorithm 1), sized for a 256 px image and scaled."""
    image, draw = _canvas(height, width)
    s = _scale(height, width)
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    mean_length = math.hypot(height, width) / 8  # a segment is about an eighth of the diagonal
    for _ in range(rng.integers(1, 5)):
        vertices = int(rng.integers(4, 13))
        brush = rng.uniform(12, 40) * s
        points = [(float(rng.integers(0, width)), float(rng.integers(0, height)))]
        for i in range(vertices):
            angle = rng.uniform(mean_angle - angle_range, mean_angle + angle_range)
            angle = 2 * math.pi - angle if i % 2 == 0 else angle
            length = float(np.clip(rng.normal(mean_length, mean_length / 2), 0, 2 * mean_length))
            x, y = points[-1]
            points.append((min(max(x + length * math.cos(angle), 0), width - 1),
                           min(max(y + length * math.sin(angle), 0), height - 1)))
        _stroke(draw, points, brush)
    mask = np.array(image, dtype=bool)
    # DeepFill flips each mask half of the time, so that strokes do not all lean the same way.
    return mask[:, ::-1].copy() if rng.random() < 0.5 else mask


def _lama_mask(preset: str) -> Callable[[int, int, np.random.Generator], np.ndarray]:
    """LaMa's random irregular strokes of `preset` (with boxes for medium and thick in 0.3 / 1.3 of masks)."""
    strokes, boxes = LAMA_STROKES[preset], LAMA_BOXES.get(preset)

    def draw_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        image, draw = _canvas(height, width)
        s = _scale(height, width)
        if boxes is not None and rng.random() < LAMA_BOX_SHARE:
            times, lo, hi, margin = boxes
            _boxes(height, width, rng, times, lo * s, hi * s, margin * s, draw)
            return np.array(image, dtype=bool)
        lo, hi = strokes["times"]
        for i in range(rng.integers(lo, hi + 1)):
            points = [(float(rng.integers(0, width)), float(rng.integers(0, height)))]
            widths = []
            for _ in range(1 + rng.integers(0, 5)):
                angle = 0.01 + rng.integers(0, 4)  # LaMa's max_angle 4: radians, a coarse choice of direction
                angle = 2 * math.pi - angle if i % 2 == 0 else angle
                length = (10 + rng.integers(0, strokes["max_len"])) * s
                widths.append((5 + rng.integers(0, strokes["max_width"])) * s)
                x, y = points[-1]
                points.append((min(max(x + length * math.sin(angle), 0), width),
                               min(max(y + length * math.cos(angle), 0), height)))
            for (a, b), w in zip(zip(points, points[1:]), widths):
                draw.line((a, b), fill=1, width=max(1, round(w)))
        return np.array(image, dtype=bool)

    return draw_mask


_DRAW = {"box": _box_mask, "freeform": _freeform_mask, **{p: _lama_mask(p) for p in LAMA_STROKES}}
