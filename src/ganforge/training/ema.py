"""An exponential moving average of the generator's weights (Karras et al., Yazıcı et al. 2019).

Averaging G over the last few thousand steps smooths out the oscillation of adversarial
training; samples and exported models use the average by default.
"""

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend in `model`'s weights; early on the decay is lower, so the average forgets the random start."""
        decay = min(self.decay, (1 + step) / (10 + step))
        # One fused call over every tensor (torch._foreach_*) instead of a kernel launch per tensor.
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
        buffers = list(self.model.buffers())
        if buffers:  # batch-norm statistics are taken as they are
            torch._foreach_copy_(buffers, list(model.buffers()))
