"""The mapping network z (+ class c) -> w of StyleGAN, with the running average ``w_avg`` for truncation.

``w = MLP([normalize(z), normalize(embed(c))])``: z and the class embedding are each scaled to unit second
moment and concatenated; ``num_layers`` fully connected layers (leaky ReLU, gain sqrt(2)) with a
learning-rate multiplier of 0.01 follow. In training mode ``w_avg <- lerp(mean_n(w_n), w_avg, beta)``
(beta 0.995). Truncation: ``w <- w_avg + psi (w - w_avg)`` on the first ``truncation_cutoff`` of the
``num_ws`` copies of w (all of them when the cutoff is None).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import require_condition
from lightning_gan_stylegan2.layers import EqualLinear, normalize_2nd_moment

__all__ = ["MappingNetwork", "truncate"]


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """``w_avg + psi (w - w_avg)`` for ws [N, w_dim] or on the first ``cutoff`` layers of ws [N, num_ws, w_dim]."""
    if psi == 1:
        return ws
    w_avg = w_avg.to(ws.dtype)
    if cutoff is None or ws.dim() == 2:
        return w_avg.lerp(ws, psi)
    return torch.cat([w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)


class MappingNetwork(nn.Module):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> w [N, num_ws, w_dim] (or [N, w_dim] when ``num_ws`` is None)."""

    def __init__(self, *, z_dim: int, c_dim: int = 0, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 lr_mul: float = 0.01, embed_dim: int | None = None, w_avg_beta: float | None = 0.995) -> None:
        """
        Args:
            z_dim: latent size (0: a condition-only mapping, e.g. the discriminator's class embedding).
            c_dim: number of classes (0 = unconditional).
            w_dim: size of w.
            num_ws: copies of w to broadcast to (one per synthesis layer); None returns [N, w_dim].
            num_layers: fully connected layers (8 in the paper; 2 suffices for small models).
            lr_mul: learning-rate multiplier of those layers.
            embed_dim: size of the class embedding (default ``w_dim``).
            w_avg_beta: decay of the running average of w (tracked in training mode); None = no ``w_avg``.
        """
        super().__init__()
        if z_dim < 0 or c_dim < 0 or z_dim + c_dim == 0:
            raise ValueError(f"the mapping network needs z_dim > 0 or c_dim > 0, got z_dim={z_dim}, c_dim={c_dim}")
        if num_layers < 1:
            raise ValueError(f"the mapping network needs num_layers >= 1, got {num_layers}")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = int(z_dim), int(c_dim), int(w_dim), num_ws
        self.num_layers, self.lr_mul, self.w_avg_beta = int(num_layers), float(lr_mul), w_avg_beta
        self.embed_dim = int(embed_dim or w_dim) if c_dim else 0
        self.embed = EqualLinear(in_features=c_dim, out_features=self.embed_dim) if c_dim else None
        dims = [self.z_dim + self.embed_dim] + [self.w_dim] * self.num_layers
        self.layers = nn.ModuleList([
            EqualLinear(in_features=a, out_features=b, lr_mul=lr_mul, activation="lrelu") for a, b in zip(dims, dims[1:])
        ])
        self.register_buffer("w_avg", torch.zeros(w_dim) if w_avg_beta is not None else None)

    def forward(self, z: Tensor | None, c: Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = True) -> Tensor:
        """w for latents ``z`` and conditions ``c``; ``w_avg`` is updated in training mode when ``update_w_avg``."""
        parts = []
        if self.z_dim:
            if z is None:
                raise ValueError(f"the mapping network needs latents z [N, {self.z_dim}]")
            parts.append(normalize_2nd_moment(z))
        if self.c_dim:
            n = z.shape[0] if z is not None else (c.shape[0] if c is not None else 0)
            c = require_condition(c, self.c_dim, n, "mapping network")
            dtype = z.dtype if z is not None else self.layers[0].weight.dtype
            parts.append(normalize_2nd_moment(self.embed(c.to(dtype))))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [N, z_dim + embed_dim]
        for layer in self.layers:
            x = layer(x)  # [N, w_dim]
        if self.w_avg is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).expand(-1, self.num_ws, -1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if self.w_avg is None:
                raise ValueError("truncation needs w_avg; this mapping network was built with w_avg_beta=None")
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"num_layers={self.num_layers}, lr_mul={self.lr_mul}, w_avg_beta={self.w_avg_beta}")
