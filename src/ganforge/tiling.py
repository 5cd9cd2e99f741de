"""Running an image-to-image network on images of any size, tile by tile, with no seams.

Each tile is run with as much context as the network's receptive field on every side that has
a neighbour, and the context is cut off again, so every output pixel sees exactly the input it
would see untiled, and peak memory is set by the tile size.
"""

import torch
from tqdm import tqdm

from ganforge.imageio import float_to_uint8


@torch.no_grad()
def upscale_tensor(generator: torch.nn.Module, lr: torch.Tensor, tile: int = 256, dtype: torch.dtype = torch.uint8,
                   progress: bool = False) -> torch.Tensor:
    """Upscale one image (1, C, h, w) in [-1, 1], tile by tile, into a CPU tensor of `dtype` (with the network's
    output channels, which may be fewer than C: a fast style network reads noise channels beside the photo).

    Each `tile` x `tile` piece is run with `receptive_radius` (+1) pixels of context on every
    side that has a neighbour; the context is cut off again, so every output pixel sees exactly
    the input it would see untiled and there are no seams. Peak memory is set by `tile` and by
    the output itself, which is written tile by tile as 8-bit pixels unless `dtype` says float.
    `progress` shows a bar over the tiles (a 4096x4096 photo takes over a minute on a CPU), unless there is one.
    """
    scale, margin = generator.scale, generator.receptive_radius + 1
    device = next(generator.parameters()).device
    h, w = lr.shape[-2:]
    out = None  # allocated at the first tile, with the network's output channels
    corners = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    for y, x in tqdm(corners, desc=f"upscaling x{scale}", unit="tile", dynamic_ncols=True,
                     disable=not progress or len(corners) == 1):
        y0, x0 = max(0, y - margin), max(0, x - margin)
        y1, x1 = min(h, y + tile + margin), min(w, x + tile + margin)
        piece = generator(lr[:, :, y0:y1, x0:x1].to(device)).float().cpu().clamp_(-1, 1)
        ty, tx, oy, ox = min(tile, h - y), min(tile, w - x), (y - y0) * scale, (x - x0) * scale
        piece = piece[:, :, oy : oy + ty * scale, ox : ox + tx * scale]
        if out is None:
            out = torch.empty(1, piece.shape[1], h * scale, w * scale, dtype=dtype)
        out[:, :, y * scale : (y + ty) * scale, x * scale : (x + tx) * scale] = (
            float_to_uint8(piece) if dtype == torch.uint8 else piece)
    return out
