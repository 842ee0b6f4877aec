"""Path-length regularization of a style-based generator (Karras et al. 2020, Sec. 3.2), registered as ``path_length``.

For ws = mapping(z, c) and images g(ws) = synthesis(ws) [N, C, H, W]: with y ~ N(0, I) / sqrt(H W) of the
images' shape, the length ``l = |J^T y|`` of the Jacobian-vector product ``J^T y = d(sum(g(ws) * y)) / d ws``
[N, num_ws, w_dim] is ``sqrt(mean over ws of the sum over w_dim of (J^T y)^2)``. The penalty is
``weight * mean_n (l_n - a)^2`` with ``a`` the running mean of the lengths (an exponential moving average,
``a <- a + decay (mean_n l_n - a)``), a buffer saved with the regularizer so that a resumed run keeps it.
StyleGAN2 runs it lazily (every 4 iterations, the penalty multiplied by 4 by the phase scheduler) on half
batches. J is taken with ``torch.autograd.grad(create_graph=True)`` in float32 (autocast and the
generator's float16 blocks off), because an autograd penalty bypasses any loss scaling.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor

from lightning_gan.interfaces import PenaltyInputs, Regularizer

__all__ = ["PathLength", "path_lengths"]


def _fp32(x: Tensor) -> Tensor:
    """Half-precision tensors as float32; others (float32, float64) unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def path_lengths(images: Tensor, ws: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``|J^T y|`` per sample, [N], differentiable (create_graph); ``images`` must depend on ``ws``."""
    h, w = images.shape[-2:]
    y = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)  # [N, num_ws, w_dim] or [N, w_dim]
    sq = grad.square()
    return (sq.sum(-1).mean(-1) if grad.dim() == 3 else sq.sum(-1)).sqrt()


class PathLength(Regularizer):
    """``weight * E (|J^T y| - a)^2`` on the generator: StyleGAN2's path-length regularizer."""

    network = "generator"

    def __init__(self, *, weight: float = 2.0, interval: int = 4, batch_shrink: int = 2, decay: float = 0.01) -> None:
        """
        Args:
            weight: penalty weight (2 in StyleGAN2, i.e. gamma_pl = ln 2 / (r^2 (ln r - ln 2)) at 1024 px).
            interval: run every ``interval`` iterations (lazy regularization, 4 in StyleGAN2); 1 = every one.
            batch_shrink: evaluate on ``batch_size // batch_shrink`` latents (2 in StyleGAN2).
            decay: rate of the running mean ``a`` of the lengths (0.01).
        """
        super().__init__(weight=weight, interval=interval)
        if batch_shrink < 1:
            raise ValueError(f"batch_shrink must be >= 1, got {batch_shrink}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must lie in (0, 1], got {decay}")
        self.batch_shrink, self.decay = int(batch_shrink), float(decay)
        self.register_buffer("mean_length", torch.zeros(()))  # a, the running mean of |J^T y|

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        generator = inputs.generator
        for name in ("mapping", "synthesis"):
            if not callable(getattr(generator, name, None)):
                raise TypeError(f"PathLength needs a style-based generator with mapping(z, c) and synthesis(ws); "
                                f"{type(generator).__name__} has no {name}()")
        z, c = inputs.latents(max(1, inputs.batch_size // self.batch_shrink))
        with torch.autocast(device_type=z.device.type, enabled=False):
            ws = generator.mapping(_fp32(z), None if c is None else _fp32(c))
            if not ws.requires_grad:  # a frozen mapping network: differentiate w.r.t. ws themselves
                ws = ws.detach().requires_grad_(True)
            if "force_fp32" in inspect.signature(generator.synthesis).parameters:
                images = generator.synthesis(ws, force_fp32=True)
            else:
                images = generator.synthesis(ws)
            lengths = path_lengths(_fp32(images), ws)  # [n]
        with torch.no_grad():
            mean = self.mean_length.lerp(lengths.detach().mean().to(self.mean_length.dtype), self.decay)
            self.mean_length.copy_(mean)
        return self.weight * (lengths - mean.to(lengths.dtype)).square().mean()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", batch_shrink={self.batch_shrink}, decay={self.decay}"
