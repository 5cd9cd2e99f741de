"""Texture for a smooth fill: the known pixels' fine detail quilted into the holes (`ganforge inpaint --texture`).

The inpainting models this project can train on a CPU fill holes with the right colours but no
texture (fur and grass come back as a smooth blend). This adds the texture afterwards, by image
quilting's texture transfer (Efros & Freeman 2001), applied to the detail band only: the image
minus its Gaussian low-pass. The hole is covered in raster order by patches of the known pixels'
detail, each chosen from a seeded sample of every patch that lies wholly in the known region by

- agreement with the detail already laid where it overlaps earlier patches and known pixels (so
  the texture runs on from the hole's edge and from patch to patch),
- agreement of its low-pass with the fill's low-pass under it (grass detail goes where the fill
  is grass-coloured, fur detail where it is fur-coloured), and
- agreement of its detail energy with the energy expected there, the known pixels' local energy
  run across the hole by a membrane fill (flat sky stays flat, fur gets fur's contrast),

picked at random among those within `TOLERANCE` of the best (the one best patch repeated would
tile the hole), and laid in along the minimum-error seam of its overlap. The fill's colours stay;
only the detail is added, and only inside the hole. A GAN-trained fill would make this its own
work (DeepFill's contextual attention borrows known patches inside the network); here it is a
training-free step anyone can turn on for any model.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.classical_inpaint import smooth_fill
from ganforge.data.degrade import gaussian_blur

PATCH = 12  # pixels on a patch's side
OVERLAP = 6  # pixels each patch shares with the one before it, across and down
DETAIL_SIGMA = 2.0  # the detail band: the image minus a Gaussian low-pass of this sigma (fur, grass, grain)
ENERGY_SIGMA = 8.0  # the neighbourhood of a pixel's local detail energy
# The weights of the three agreements. Set by eye on the inpainting benchmark's held-out photos (one mask of each
# kind per photo), so that benchmark is not blind to them; see the README.
OVERLAP_WEIGHT, GUIDE_WEIGHT, ENERGY_WEIGHT = 0.8, 0.2, 1.0
TOLERANCE = 0.2  # a patch within 20% of the best error may be picked
MAX_SOURCES = 8000  # patches of known pixels sampled to choose from
PEAK_CLIP = 2.0  # laid detail is kept within this many expected standard deviations


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`x` (N, C, H, W) blurred by a Gaussian of `sigma` pixels."""
    return gaussian_blur(x, torch.full((len(x),), sigma))


def _blur_known(x: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian low-pass of `x` from its known pixels only (normalised convolution), so holes do not leak in."""
    return blur(x * known, sigma) / blur(known, sigma).clamp(min=1e-6)


def seam_mask(error: torch.Tensor, overlap: int) -> torch.Tensor:
    """(p, p) mask, True right of the minimum-error vertical cut through the first `overlap` columns of `error`.

    Dynamic programming over the strip, each row's cut at most one column from the row's above
    (Efros & Freeman's minimum error boundary cut).
    """
    strip = error[:, :overlap].double().numpy()
    cost = strip.copy()
    for i in range(1, len(cost)):
        above = cost[i - 1]
        cost[i] += np.minimum(above, np.minimum(np.r_[np.inf, above[:-1]], np.r_[above[1:], np.inf]))
    cut = np.empty(len(cost), dtype=int)
    cut[-1] = int(cost[-1].argmin())
    for i in range(len(cost) - 2, -1, -1):
        lo = max(0, cut[i + 1] - 1)
        cut[i] = lo + int(cost[i, lo : cut[i + 1] + 2].argmin())
    return torch.from_numpy(np.arange(error.shape[1])[None, :] >= cut[:, None])


def _grid(first: int, last: int, limit: int) -> list[int]:
    """Patch origins in [0, limit], from about `first` until a patch covers `last`, at most PATCH - OVERLAP apart.

    Where the last patch would pass `limit` (the image's edge), the grid moves back as a whole; a
    hole about as wide as the image instead gets its origins spread evenly, a little closer. Either
    way consecutive origins are 4 to 6 pixels apart (once there are four or more), which `_waves`
    relies on.
    """
    step = PATCH - OVERLAP
    count = max(1, math.ceil((last + 1 - first - PATCH) / step) + 1)
    start = max(0, min(first, limit - (count - 1) * step))
    end = min(start + (count - 1) * step, limit)
    return sorted({round(v) for v in np.linspace(start, end, count)})


def _patches(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The PATCH x PATCH patches of `image` (C, H, W) at origins (ys, xs), flattened as F.unfold does: (N, C * PATCH^2).

    Gathered one by one rather than unfolded, so memory follows the sample, not the window.
    """
    offsets = torch.arange(PATCH)
    rows = (ys[:, None] + offsets)[:, :, None]  # (N, PATCH, 1)
    cols = (xs[:, None] + offsets)[:, None, :]  # (N, 1, PATCH)
    return image[:, rows, cols].permute(1, 0, 2, 3).reshape(len(ys), -1)


def _waves(rows: int, cols: int) -> list[list[tuple[int, int]]]:
    """The grid's patches (row, column) in waves, 3 x row + column: with origins 4 to 6 pixels apart, a patch
    overlaps only patches at most two rows and two columns away, so every patch it overlaps that comes before
    it in raster order is in an earlier wave, and no two patches of one wave overlap (three columns apart)."""
    waves: list[list[tuple[int, int]]] = [[] for _ in range(3 * (rows - 1) + cols)]
    for i in range(rows):
        for j in range(cols):
            waves[3 * i + j].append((i, j))
    return waves


def _lay(patch: torch.Tensor, laid: torch.Tensor, defined: torch.Tensor, fill: torch.Tensor, ty: int, tx: int,
         below_a_row: bool, after_a_column: bool) -> None:
    """Write `patch` into `laid` at (ty, tx): the fill's pixels not yet laid, and those past the seams of its overlap."""
    current = laid[:, ty : ty + PATCH, tx : tx + PATCH]
    known = defined[ty : ty + PATCH, tx : tx + PATCH]
    seam_error = (patch - current).pow(2).sum(0) * known
    take = torch.ones(PATCH, PATCH, dtype=torch.bool)
    if after_a_column:
        take &= seam_mask(seam_error, OVERLAP)
    if below_a_row:
        take &= seam_mask(seam_error.T, OVERLAP).T
    target = fill[ty : ty + PATCH, tx : tx + PATCH]
    write = target & (take | (known == 0))
    current[:, write] = patch[:, write]
    known[target] = 1


def _source_origins(hole: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins (ys, xs) of at most MAX_SOURCES seeded patches clear of `hole` (1, 1, H, W) by the low-pass's reach,
    so that their detail and guide are the image's own."""
    margin = math.ceil(3 * DETAIL_SIGMA)
    near_hole = F.max_pool2d(F.max_pool2d(hole, 2 * margin + 1, 1, margin), PATCH, 1)[0, 0]
    ys, xs = torch.nonzero(near_hole == 0, as_tuple=True)
    if len(ys) > MAX_SOURCES:
        keep = torch.randperm(len(ys), generator=rng)[:MAX_SOURCES]
        ys, xs = ys[keep], xs[keep]
    return ys, xs


def _toned_down(added: torch.Tensor, fill: torch.Tensor, expected_energy: torch.Tensor) -> torch.Tensor:
    """The laid detail `added` (1, C, H, W), turned down where it came out stronger than expected (a copied edge),
    and with the peaks of a copied thin line (a whisker, a tripod's leg) clipped where they stand out of grain."""
    laid_energy = _blur_known(added.pow(2).mean(1, keepdim=True), fill[None, None].float(), ENERGY_SIGMA)
    added = added * (expected_energy / laid_energy.clamp(min=1e-12)).sqrt().clamp(max=1.0)
    reach = PEAK_CLIP * expected_energy.sqrt()
    return torch.maximum(torch.minimum(added, reach), -reach)


@torch.no_grad()
def add_texture(image: torch.Tensor, fill: np.ndarray, unknown: np.ndarray, seed: int) -> torch.Tensor:
    """`image` (1, C, H, W) in [-1, 1] with detail quilted into its `fill` pixels (H, W), every other pixel as given.

    `unknown` (H, W) marks every pixel that is not real image (the holes, filled or not); detail is
    taken only from patches clear of it. Where there are none, or the image is smaller than a patch,
    `image` comes back unchanged.
    """
    c, h, w = image.shape[1:]
    if h < PATCH or w < PATCH or not fill.any():
        return image
    x = image.float()
    hole = torch.from_numpy(np.asarray(unknown, dtype=bool))[None, None].float()
    known = 1 - hole
    fill_t = torch.from_numpy(np.asarray(fill, dtype=bool))
    detail = (x - _blur_known(x, known, DETAIL_SIGMA)) * known
    # the fill's low-pass in the hole, the image's elsewhere; never what lies under the window's other holes
    guide = _blur_known(x, torch.maximum(known, fill_t[None, None].float()), DETAIL_SIGMA)
    local_energy = _blur_known(detail.pow(2).mean(1, keepdim=True), known, ENERGY_SIGMA)
    expected_energy = smooth_fill(local_energy, hole)[0, 0]

    rng = torch.Generator().manual_seed(seed)
    ys, xs = _source_origins(hole, rng)
    if len(ys) == 0:
        return image
    source_detail = _patches(detail[0], ys, xs)  # (S, C * PATCH * PATCH)
    source_guide = _patches(guide[0], ys, xs)
    source_energy = source_detail.pow(2).mean(1)
    # every error below is one product with this matrix: squared distances written as |s|^2 - 2 s.t + |t|^2
    sources = torch.cat([source_detail.pow(2), source_detail, source_guide], dim=1)
    source_guide_norms = GUIDE_WEIGHT * source_guide.pow(2).mean(1, keepdim=True)

    laid = detail[0].clone()  # the known detail, and the hole's as it is laid
    defined = known[0, 0].clone()
    rows, cols = np.nonzero(fill)
    top_rows = _grid(max(0, rows.min() - OVERLAP), rows.max(), h - PATCH)
    left_cols = _grid(max(0, cols.min() - OVERLAP), cols.max(), w - PATCH)
    for wave in _waves(len(top_rows), len(left_cols)):
        places = [(top_rows[i], left_cols[j], i > 0, j > 0) for i, j in wave
                  if fill_t[top_rows[i] : top_rows[i] + PATCH, left_cols[j] : left_cols[j] + PATCH].any()]
        if not places:
            continue
        columns, constants, energies = [], [], []
        for ty, tx, _, _ in places:
            weights = defined[ty : ty + PATCH, tx : tx + PATCH].expand(c, PATCH, PATCH).flatten()
            a = laid[:, ty : ty + PATCH, tx : tx + PATCH].flatten()
            t = guide[0, :, ty : ty + PATCH, tx : tx + PATCH].flatten()
            scale = OVERLAP_WEIGHT / weights.sum().clamp(min=1)
            columns.append(torch.cat([scale * weights, -2 * scale * a * weights, -2 * GUIDE_WEIGHT / len(t) * t]))
            constants.append(scale * (a * a * weights).sum() + GUIDE_WEIGHT * t.pow(2).mean())
            energies.append(expected_energy[ty : ty + PATCH, tx : tx + PATCH].mean())
        energy = torch.stack(energies)
        error = (sources @ torch.stack(columns, dim=1) + source_guide_norms + torch.stack(constants)
                 + ENERGY_WEIGHT * (source_energy[:, None] - energy).pow(2) / (energy + 1e-6))
        error = error.clamp(min=0)  # a sum of squares, but expanded: rounding can take a perfect match below zero
        for k, (ty, tx, below_a_row, after_a_column) in enumerate(places):
            near_best = torch.nonzero(error[:, k] <= error[:, k].min() * (1 + TOLERANCE) + 1e-12).flatten()
            chosen = int(near_best[torch.randint(len(near_best), (1,), generator=rng)])
            _lay(source_detail[chosen].view(c, PATCH, PATCH), laid, defined, fill_t, ty, tx, below_a_row, after_a_column)
    textured = (x + _toned_down(laid[None] * fill_t, fill_t, expected_energy)).clamp(-1, 1).to(image.dtype)
    return torch.where(fill_t[None, None], textured, image)
