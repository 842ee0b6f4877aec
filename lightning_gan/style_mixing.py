"""Style mixing of a style-based generator (Karras et al. 2019, section 3.1): one image's w in some layers, another's in the rest.

A style-based generator draws ``ws = mapping(z)`` [N, num_ws, w_dim], one w per synthesis layer. A mixed image
takes a "row" latent's ws and replaces those of a set of layers with a "column" latent's:

    ws_mix[l] = ws_col[l] if l in layers else ws_row[l]

StyleGAN2's layout (``num_ws = 2 log2(R) - 2`` for resolution R): ws index ``l`` drives the layers at
resolution ``2^(2 + l // 2)`` (0, 1: 4x4; 2, 3: 8x8; ...; the last: R). The paper's groups are coarse (4-8 px:
pose, general shape), middle (16-32 px: features) and fine (64 px and up: colours, micro-structure). A
generator below 64 px has no "fine" resolutions in that sense; the groups shrink with it:

===========  ==============  ==============  ==============
resolution   coarse          middle          fine
===========  ==============  ==============  ==============
>= 64        4-8             16-32           64-R
32           4-8             16              32
16           4               8               16
8            4               (none)          8
===========  ==============  ==============  ==============

``A-B`` instead names ws indices A to B (inclusive) directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = ["LAYER_GROUPS", "group_resolutions", "mix_layers", "mix_ws", "require_style_based", "style_mixing_grid",
           "ws_resolution"]

LAYER_GROUPS = ("coarse", "middle", "fine")


def require_style_based(generator: nn.Module) -> None:
    """A ConfigError in one line unless the generator has ``mapping`` and ``synthesis`` (and ``num_ws``)."""
    if not all(hasattr(generator, a) for a in ("mapping", "synthesis", "num_ws")):
        raise ConfigError(f"style mixing needs a style-based generator (mapping, synthesis and num_ws); "
                          f"{type(generator).__name__} has none")


def ws_resolution(index: int) -> int:
    """The resolution whose layers ws index ``index`` drives (StyleGAN2's layout): ``2^(2 + index // 2)``."""
    return 2 ** (2 + index // 2)


def group_resolutions(resolution: int) -> dict[str, tuple[int, int]]:
    """``{group: (lowest, highest)}`` resolutions of coarse / middle / fine at ``resolution`` (module table)."""
    if resolution >= 64:
        return {"coarse": (4, 8), "middle": (16, 32), "fine": (64, resolution)}
    if resolution == 32:
        return {"coarse": (4, 8), "middle": (16, 16), "fine": (32, 32)}
    if resolution == 16:
        return {"coarse": (4, 4), "middle": (8, 8), "fine": (16, 16)}
    if resolution == 8:
        return {"coarse": (4, 4), "fine": (8, 8)}
    return {"coarse": (4, 4)}


def mix_layers(spec: str, *, num_ws: int, resolution: int) -> list[int]:
    """The ws indices of ``spec``: ``coarse``, ``middle``, ``fine`` (see the module table) or ``A-B``."""
    spec = str(spec).strip()
    if num_ws != 2 * int(math.log2(resolution)) - 2:
        raise ConfigError(f"style mixing groups assume StyleGAN2's layout (num_ws = 2 log2(R) - 2 = "
                          f"{2 * int(math.log2(resolution)) - 2} at {resolution} px); this generator has {num_ws} ws: "
                          f"give the layers as A-B")
    groups = group_resolutions(resolution)
    if spec in LAYER_GROUPS:
        if spec not in groups:
            raise ValueError(f"--mix-layers {spec}: a {resolution} px generator has no {spec} layers (groups: "
                             f"{', '.join(f'{g} {lo}-{hi} px' for g, (lo, hi) in groups.items())}); give A-B instead")
        lo, hi = groups[spec]
        return [i for i in range(num_ws) if lo <= ws_resolution(i) <= hi]
    try:
        a, b = (int(v) for v in spec.split("-", 1))
    except ValueError:
        raise ValueError(f"--mix-layers: expected coarse, middle, fine or A-B (ws indices), got {spec!r}") from None
    if not 0 <= a <= b < num_ws:
        raise ValueError(f"--mix-layers {spec}: ws indices must satisfy 0 <= A <= B <= {num_ws - 1}")
    return list(range(a, b + 1))


def mix_ws(row_ws: Tensor, col_ws: Tensor, layers: Sequence[int]) -> Tensor:
    """``row_ws`` [N, num_ws, w_dim] with the ws of ``layers`` taken from ``col_ws`` (same shape)."""
    mixed = row_ws.clone()
    index = torch.as_tensor(list(layers), dtype=torch.long, device=row_ws.device)
    mixed[:, index] = col_ws[:, index]
    return mixed


def style_mixing_grid(generator: nn.Module, row_ws: Tensor, col_ws: Tensor, layers: Sequence[int], *,
                      noise_mode: str = "const") -> Tensor:
    """The classic grid, images [R + 1, C + 1, channels, H, W]: the top row the column latents' images, the left
    column the row latents', cell (i, j) the row latent i's ws with column latent j's in ``layers``; the
    top-left cell is black (-1).

    Args:
        generator: a style-based generator (eval mode).
        row_ws: ws [R, num_ws, w_dim] of the rows.
        col_ws: ws [C, num_ws, w_dim] of the columns.
        layers: the ws indices taken from the columns (``mix_layers``).
        noise_mode: StyleGAN2's noise inputs ("const": the same fixed maps in every cell).
    """
    require_style_based(generator)
    r, c = row_ws.shape[0], col_ws.shape[0]
    with torch.no_grad():
        rows = generator.synthesis(row_ws, noise_mode=noise_mode)  # [R, ch, H, W]
        cols = generator.synthesis(col_ws, noise_mode=noise_mode)  # [C, ch, H, W]
        pairs = mix_ws(row_ws.repeat_interleave(c, 0), col_ws.repeat(r, 1, 1), layers)  # [R * C, num_ws, w_dim]
        cells = generator.synthesis(pairs, noise_mode=noise_mode).view(r, c, *rows.shape[1:])
    corner = torch.full_like(rows[:1], -1.0)
    top = torch.cat([corner, cols]).unsqueeze(0)  # [1, C + 1, ...]
    body = torch.cat([rows.unsqueeze(1), cells], dim=1)  # [R, C + 1, ...]
    return torch.cat([top, body])  # [R + 1, C + 1, ch, H, W]
