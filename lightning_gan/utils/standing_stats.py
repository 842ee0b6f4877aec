"""Standing statistics (Brock et al. 2019): re-estimate a generator's batch-norm running statistics before sampling.

A generator with batch norm samples in eval mode from running statistics that were averaged while its weights
changed (and, for an EMA generator, that belong to the trained weights, not the averaged ones). Standing
statistics replace them: reset every batch norm's running mean/var, run ``num_batches`` forward passes of random
latents (and uniformly random classes) in training mode with ``momentum = None``, so that each running statistic
becomes the cumulative average of the batch statistics over the passes,

    ``running_mean = (1/B) sum_b mean_b``,   ``running_var = (1/B) sum_b var_b``  (unbiased batch variances),

then restore every module's mode and momentum. Only the batch norms are switched to training mode: spectral
norm power iterations and everything else run in eval mode and change nothing.

Which modules count as batch norms: every ``torch.nn.modules.batchnorm._BatchNorm`` with running statistics,
and any module that offers the same interface (``reset_running_stats()``, a ``momentum`` attribute whose None
means a cumulative average, and a ``running_mean`` buffer), e.g. a plugin's conditional batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_gan.interfaces import Generator
from lightning_gan.ops.truncation import truncated_normal

__all__ = ["batch_norm_modules", "standing_statistics"]


def batch_norm_modules(module: nn.Module) -> list[nn.Module]:
    """The modules of ``module`` whose running statistics standing statistics re-estimate (module docstring)."""
    found = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.track_running_stats:
                found.append(m)
        elif callable(getattr(m, "reset_running_stats", None)) and hasattr(m, "momentum") \
                and isinstance(getattr(m, "running_mean", None), torch.Tensor):
            found.append(m)
    return found


@torch.no_grad()
def standing_statistics(generator: Generator, *, num_batches: int = 16, batch_size: int = 64, seed: int = 0,
                        truncation: float | None = None) -> int:
    """Re-estimate the running statistics of every batch norm of ``generator`` (module docstring); global RNG kept.

    Args:
        generator: the generator (its parameters' device is used).
        num_batches: forward passes B to average over.
        batch_size: latents per pass.
        seed: seed of the latents and classes.
        truncation: draw the latents truncated to [-t, t] (``truncated_normal``), as the samples will be.

    Returns:
        How many batch-norm modules were re-estimated (0: the generator has none and nothing changed).
    """
    if num_batches < 1 or batch_size < 2:
        raise ValueError(f"standing statistics need num_batches >= 1 and batch_size >= 2, got {num_batches} and "
                         f"{batch_size}")
    norms = batch_norm_modules(generator)
    if not norms:
        return 0
    param = next(generator.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = {m: m.training for m in generator.modules()}
    momenta = {m: m.momentum for m in norms}
    rng = torch.Generator(device=device).manual_seed(int(seed))
    try:
        generator.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(seed))  # noise drawn inside the generator, if any
            for _ in range(num_batches):
                if truncation is None:
                    z = generator.sample_latents(batch_size, generator=rng, device=device)
                else:
                    z = truncated_normal((batch_size, generator.z_dim), truncation, generator=rng, device=device)
                c = None
                if generator.c_dim:
                    labels = torch.randint(generator.c_dim, (batch_size,), generator=rng, device=device)
                    c = nn.functional.one_hot(labels, generator.c_dim).to(z.dtype)
                generator(z, c)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return len(norms)
