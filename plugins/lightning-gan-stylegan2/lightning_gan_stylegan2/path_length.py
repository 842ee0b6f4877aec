"""Path-length regularization of a style-based generator (Karras et al. 2020, Sec. 3.2), registered as ``path_length``.

For ws = mapping(z, c) and images g(ws) = synthesis(ws) [N, C, H, W]: with y ~ N(0, I) / sqrt(H W) of the
images' shape, the length ``l = |J^T y|`` of the Jacobian-vector product ``J^T y = d(sum(g(ws) * y)) / d ws``
[N, num_ws, w_dim] is ``sqrt(mean over ws of the sum over w_dim of (J^T y)^2)``. The penalty is
``weight * mean_n (l_n - a_new)^2`` with ``a_new = lerp(a, mean_n l_n, decay)``, the running mean of the
lengths updated with this batch (a buffer saved with the regularizer so that a resumed run keeps it). As in
StyleGAN2 the gradient flows through ``mean_n l_n`` inside ``a_new`` (``detach_mean=True``: ``a_new`` enters
as a constant instead, this package's behaviour before: each ``d penalty / d l_i`` then lacks the term
``-2 weight decay mean_n(l_n - a_new) / N``). The latents ws are made as for the generator's main step: a
generator with ``training_ws(z, c)`` (StyleGAN2's, with style mixing) is asked for them, others map z with
``mapping`` (``style_mixing=False`` always uses ``mapping``, no mixing). StyleGAN2 runs it lazily (every 4
iterations, the penalty multiplied by 4 by the phase scheduler) on half batches. J is taken with
``torch.autograd.grad(create_graph=True)`` in float32 (autocast and the generator's float16 blocks off),
because an autograd penalty bypasses any loss scaling.
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

    def __init__(self, *, weight: float = 2.0, interval: int = 4, batch_shrink: int = 2, decay: float = 0.01,
                 style_mixing: bool = True, detach_mean: bool = False) -> None:
        """
        Args:
            weight: penalty weight (2 in StyleGAN2, i.e. gamma_pl = ln 2 / (r^2 (ln r - ln 2)) at 1024 px).
            interval: run every ``interval`` iterations (lazy regularization, 4 in StyleGAN2); 1 = every one.
            batch_shrink: evaluate on ``batch_size // batch_shrink`` latents (2 in StyleGAN2).
            decay: rate of the running mean ``a`` of the lengths (0.01).
            style_mixing: make the ws as the generator's training step does (its ``training_ws``: style
                mixing, as StyleGAN2); False = ``mapping`` only.
            detach_mean: treat the updated running mean as a constant in the penalty (False = StyleGAN2: the
                gradient flows through this batch's mean length inside it).
        """
        super().__init__(weight=weight, interval=interval)
        if batch_shrink < 1:
            raise ValueError(f"batch_shrink must be >= 1, got {batch_shrink}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must lie in (0, 1], got {decay}")
        self.batch_shrink, self.decay = int(batch_shrink), float(decay)
        self.style_mixing, self.detach_mean = bool(style_mixing), bool(detach_mean)
        self.register_buffer("mean_length", torch.zeros(()))  # a, the running mean of |J^T y|

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        generator = inputs.generator
        for name in ("mapping", "synthesis"):
            if not callable(getattr(generator, name, None)):
                raise TypeError(f"PathLength needs a style-based generator with mapping(z, c) and synthesis(ws); "
                                f"{type(generator).__name__} has no {name}()")
        z, c = inputs.latents(max(1, inputs.batch_size // self.batch_shrink))
        with torch.autocast(device_type=z.device.type, enabled=False):
            z, c = _fp32(z), None if c is None else _fp32(c)
            mixing = getattr(generator, "training_ws", None) if self.style_mixing else None
            ws = mixing(z, c) if callable(mixing) else generator.mapping(z, c)
            if not ws.requires_grad:  # a frozen mapping network: differentiate w.r.t. ws themselves
                ws = ws.detach().requires_grad_(True)
            if "force_fp32" in inspect.signature(generator.synthesis).parameters:
                images = generator.synthesis(ws, force_fp32=True)
            else:
                images = generator.synthesis(ws)
            lengths = path_lengths(_fp32(images), ws)  # [n]
        batch_mean = lengths.mean()
        if self.detach_mean:
            batch_mean = batch_mean.detach()
        mean = self.mean_length.to(lengths.dtype).lerp(batch_mean, self.decay)  # a_new, differentiable
        with torch.no_grad():
            self.mean_length.copy_(mean.detach().to(self.mean_length.dtype))
        return self.weight * (lengths - mean).square().mean()

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", batch_shrink={self.batch_shrink}, decay={self.decay}, "
                f"style_mixing={self.style_mixing}, detach_mean={self.detach_mean}")
