"""Latent files: a generator's latent (w, w+ or z, with its class) saved as safetensors by ``project``.

Keys: ``"w"`` [N, num_ws, w_dim] (W or W+: a style-based generator's per-layer ws, what ``synthesis`` takes)
or ``"z"`` [N, z_dim] (any other generator), and ``"c"`` [N, c_dim] (one-hot classes) for conditional
generators. The metadata records ``"space"`` ("w", "w+" or "z") and anything else the writer adds.
``lightning-gan generate --latent FILE`` reads them (e.g. to edit a projected image along a direction).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from lightning_gan.errors import ConfigError

__all__ = ["load_latent", "save_latent"]

SPACES = ("w", "w+", "z")


def save_latent(path: str | os.PathLike[str], *, space: str, latent: Tensor, c: Tensor | None = None,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``latent`` (ws [N, num_ws, w_dim] for "w"/"w+", z [N, z_dim] for "z") and ``c`` to ``path``."""
    from safetensors.torch import save_file

    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    path = Path(path)
    tensors = {("z" if space == "z" else "w"): latent.detach().float().cpu().contiguous()}
    if c is not None:
        tensors["c"] = c.detach().float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"space": space, **{k: str(v) for k, v in (metadata or {}).items()}})
    return path


def load_latent(path: str | os.PathLike[str]) -> tuple[str, Tensor, Tensor | None]:
    """``(space, latent, c)`` from a file ``save_latent`` wrote; a ConfigError for a missing or foreign file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--latent: no latent file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            space = (f.metadata() or {}).get("space") or ("z" if "z" in keys else "w")
            latent = f.get_tensor("z" if space == "z" else "w") if ({"w", "z"} & keys) else None
            c = f.get_tensor("c") if "c" in keys else None
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"--latent: {path} is not a readable safetensors file ({exc})") from None
    if latent is None or space not in SPACES:
        raise ConfigError(f"--latent: {path} holds no latent (expected a 'w' or 'z' tensor, as `lightning-gan "
                          f"project` writes)")
    return space, latent, c
