"""Editing directions in closed form (SeFa: Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs").

A generator's first affine map of its latent, ``y = A d + b``, moves its output most, for a unit step ``n`` of
the latent, where ``|A n|^2 = n^T A^T A n`` is largest. The directions are therefore the eigenvectors of
``A^T A`` with the largest eigenvalues (the right singular vectors of ``A``, eigenvalue = singular value^2):

    A^T A n_i = lambda_i n_i,   lambda_1 >= lambda_2 >= ...,   |n_i| = 1

and an edit is ``latent + alpha n_i``. Which ``A`` is a property of the architecture, which declares it with a
method (the core never imports a plugin):

* ``factorizable_weights() -> A`` [rows, dim]: the weights of the affine maps that read the edited latent,
  stacked along the output axis. ``dim`` is ``w_dim`` for style-based generators (``mapping`` and ``synthesis``:
  the edit is in W, ``synthesis(ws + alpha n)``), ``z_dim`` otherwise (the edit is in Z, ``G(z + alpha n, c)``).

StyleGAN2 stacks the style affines (w -> styles) of every modulated layer of the synthesis network, the convs'
and the ToRGBs' (the paper's choice for StyleGAN, all layers); BigGAN and DCGAN use the first linear layer of z
(BigGAN: the one that reads the first z chunk; the other chunks' columns are 0). An architecture without the
method is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = ["DirectionSpace", "direction_sweep", "edit_space", "factorizable_weights", "parse_strengths",
           "sefa_directions"]

DirectionSpace = Literal["w", "z"]


def edit_space(generator: nn.Module) -> DirectionSpace:
    """``"w"`` for style-based generators (``mapping`` and ``synthesis``), ``"z"`` otherwise."""
    return "w" if hasattr(generator, "mapping") and hasattr(generator, "synthesis") else "z"


def factorizable_weights(generator: nn.Module) -> Tensor:
    """The generator's ``A`` [rows, dim] (``factorizable_weights()``); a ConfigError when it has none."""
    hook = getattr(generator, "factorizable_weights", None)
    if not callable(hook):
        raise ConfigError(f"{type(generator).__name__} has no closed-form directions: its architecture does not "
                          f"declare the weights of its first affine layers (a factorizable_weights() method)")
    with torch.no_grad():
        a = hook().detach()
    dim = generator.w_dim if edit_space(generator) == "w" else generator.z_dim
    if a.dim() != 2 or a.shape[1] != dim:
        raise ConfigError(f"{type(generator).__name__}.factorizable_weights() must return [rows, {dim}], "
                          f"got {list(a.shape)}")
    return a


def sefa_directions(generator: nn.Module, k: int) -> tuple[Tensor, Tensor]:
    """The top ``k`` eigenvectors of ``A^T A`` and their eigenvalues: ``(directions [k, dim], eigenvalues [k])``.

    Ordered by eigenvalue, largest first; unit norm; the sign of each is fixed so that its component of largest
    magnitude is positive (eigenvectors are defined up to sign). Computed in float64, returned in float32.
    """
    a = factorizable_weights(generator).double()  # [rows, dim]
    dim = a.shape[1]
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the latent size {dim}, got {k}")
    eigenvalues, vectors = torch.linalg.eigh(a.T @ a)  # ascending; vectors [dim, dim] (columns)
    order = torch.argsort(eigenvalues, descending=True)[:k]
    directions = vectors[:, order].T  # [k, dim]
    peak = directions.gather(1, directions.abs().argmax(1, keepdim=True))  # [k, 1]
    directions = directions * torch.sign(peak)
    return directions.float(), eigenvalues[order].clamp(min=0).float()


def parse_strengths(text: str, steps: int = 7) -> list[float]:
    """``"A:B"`` (``steps`` values from A to B), ``"A:B:S"`` (S values) or ``"a,b,c"`` to a list of strengths."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) == 3:
                steps = int(parts[2])
                parts = parts[:2]
            if len(parts) != 2 or steps < 2:
                raise ValueError
            return torch.linspace(parts[0], parts[1], steps, dtype=torch.float64).tolist()
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--strength: cannot read {text!r}; use e.g. -3:3 (7 steps), -3:3:5 or -2,0,2") from None
    if not values:
        raise ValueError("--strength: expected at least one number")
    return values


def direction_sweep(generator: nn.Module, latents: Tensor, direction: Tensor, strengths: Sequence[float],
                    c: Tensor | None = None, *, noise_mode: str = "const") -> Tensor:
    """Images [N, S, C, H, W]: each latent moved by ``strength * direction`` for each of the S strengths.

    Args:
        generator: the generator (eval mode).
        latents: in the generator's ``edit_space``: ws [N, num_ws, w_dim] or w [N, w_dim] for "w" (the edit is
            added to every layer's w), z [N, z_dim] for "z".
        direction: a direction [dim] (e.g. a row of ``sefa_directions``).
        strengths: the multiples of ``direction`` to add.
        c: one-hot classes [N, c_dim] (Z-space conditional generators).
        noise_mode: StyleGAN2's noise inputs ("const": the same fixed maps in every cell).
    """
    space = edit_space(generator)
    direction = direction.to(latents.dtype).to(latents.device)
    shift = direction if latents.dim() == 2 else direction.view(1, 1, -1)
    rows = []
    with torch.no_grad():
        for s in strengths:
            moved = latents + float(s) * shift
            if space == "w":
                rows.append(generator.synthesis(moved, noise_mode=noise_mode))
            else:
                rows.append(generator(moved, c))
    return torch.stack(rows, dim=1)  # [N, S, C, H, W]
