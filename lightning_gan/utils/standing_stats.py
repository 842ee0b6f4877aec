"""Standing statistics (Brock et al. 2019): re-estimate a generator's batch-norm running statistics before sampling.

A generator with batch norm samples in eval mode from running statistics that were averaged while its weights
changed (and, for an EMA generator, that belong to the trained weights, not the averaged ones). Standing
statistics replace them: reset every batch norm's running mean/var, run ``num_batches`` forward passes of random
latents (and classes, below) in training mode with ``momentum = None``, so that each running statistic becomes
the cumulative average of the batch statistics over the passes,

    ``running_mean = (1/B) sum_b mean_b``,   ``running_var = (1/B) sum_b var_b``  (unbiased batch variances),

then restore every module's mode and momentum. Only the batch norms are switched to training mode: spectral
norm power iterations and everything else run in eval mode and change nothing.

**Classes.** Batch statistics depend on the class mix of the batch (class leakage,
``lightning_gan.analysis.leakage``), so the passes should see the mix training saw: ``class_shares`` ``p_k``
(the data's shares; ``GANDataModule.class_shares``), uniform when None. The ``T = B * N`` labels of the passes
are drawn stratified (``standing_class_counts``): every class with ``p_k > 0`` gets one label when ``T`` allows,
the other ``T - K+`` labels go by ``p_k`` with largest remainders,

    ``n_k = 1 + floor(p_k (T - K+)) (+ 1 for the largest remainders)``,   ``K+ = #{k: p_k > 0}``,

shuffled and cut into the B batches of N (each batch a draw without replacement from that pool; its expected
mix is ``n_k / T``, within ``1 / (T - K+)`` of ``p_k``). So class-grouped statistics
(``bn_statistics: class_grouped``) get an estimate for every class. A class that still gets no sample (share 0,
or ``T`` below the number of classes) keeps its previous estimate in any norm with per-class statistics
(``running_mean`` [K, C] and ``num_batches_tracked`` [K]), with a one-line warning naming it.

Which modules count as batch norms: every ``torch.nn.modules.batchnorm._BatchNorm`` with running statistics,
and any module that offers the same interface (``reset_running_stats()``, a ``momentum`` attribute whose None
means a cumulative average, and a ``running_mean`` buffer), e.g. a plugin's conditional batch norm.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import Generator
from lightning_gan.ops.truncation import truncated_normal

__all__ = ["batch_norm_modules", "check_class_shares", "data_class_shares", "standing_class_counts",
           "standing_labels", "standing_statistics"]


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


def check_class_shares(class_shares: Sequence[float] | Tensor | None, num_classes: int) -> Tensor | None:
    """``class_shares`` as float64 shares [K] summing to 1 (None stays None: uniform); a ValueError if unusable."""
    if class_shares is None:
        return None
    shares = torch.as_tensor(class_shares, dtype=torch.float64).detach().cpu().flatten()
    if len(shares) != num_classes:
        raise ValueError(f"class_shares needs one share per class of the generator ({num_classes}), got {len(shares)}")
    if not torch.isfinite(shares).all() or (shares < 0).any() or float(shares.sum()) <= 0:
        raise ValueError(f"class_shares must be finite, non-negative and not all 0, got {shares.tolist()}")
    return shares / shares.sum()


def standing_class_counts(class_shares: Sequence[float] | Tensor, total: int) -> Tensor:
    """How many of ``total`` labels each class gets (module docstring): [K] int64 summing to ``total``.

    ``n_k = 1 + floor(p_k (total - K+))`` for the ``K+`` classes with ``p_k > 0``, 0 for the others, then one more
    for the classes with the largest remainders ``p_k (total - K+) - floor(.)`` (ties: the lower class index)
    until the counts sum to ``total``. When ``total < K+`` no class is guaranteed a label: the counts are the
    largest-remainder apportionment of ``p_k total``.
    """
    shares = torch.as_tensor(class_shares, dtype=torch.float64).flatten()
    shares = check_class_shares(shares, len(shares))
    positive = (shares > 0).long()
    floor = positive if total >= int(positive.sum()) else torch.zeros_like(positive)
    raw = shares * (total - int(floor.sum()))
    counts = floor + raw.floor().long()
    left = total - int(counts.sum())
    order = torch.argsort(raw - raw.floor(), descending=True, stable=True)
    counts[order[:left]] += 1
    return counts


def standing_labels(num_classes: int, num_batches: int, batch_size: int, *,
                    class_shares: Sequence[float] | Tensor | None = None, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> Tensor:
    """The classes of the standing-statistics passes, [num_batches, batch_size] int64 (module docstring).

    ``standing_class_counts(class_shares or uniform, num_batches * batch_size)`` labels of each class, in a
    random order drawn from ``generator`` (one ``randperm``), cut into the batches.
    """
    shares = check_class_shares(class_shares, num_classes)
    if shares is None:
        shares = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    total = num_batches * batch_size
    counts = standing_class_counts(shares, total)
    pool = torch.repeat_interleave(torch.arange(num_classes), counts).to(device)  # [total], sorted by class
    order = torch.randperm(total, generator=generator, device=device)
    return pool[order].view(num_batches, batch_size)


def data_class_shares(datamodule: Any) -> Tensor | None:
    """The class shares a datamodule's training loader serves (``datamodule.class_shares()``), or None if it
    cannot say (no such method, no labels)."""
    method = getattr(datamodule, "class_shares", None)
    if not callable(method):
        return None
    shares = method()
    return None if shares is None else torch.as_tensor(shares, dtype=torch.float64)


def _per_class(m: nn.Module) -> bool:
    """Whether ``m`` keeps per-class running statistics (``running_mean`` [K, C], ``num_batches_tracked`` [K])."""
    tracked = getattr(m, "num_batches_tracked", None)
    return m.running_mean.dim() == 2 and isinstance(tracked, torch.Tensor) and tracked.dim() == 1 \
        and len(tracked) == len(m.running_mean)


@torch.no_grad()
def standing_statistics(generator: Generator, *, num_batches: int = 16, batch_size: int = 64, seed: int = 0,
                        truncation: float | None = None,
                        class_shares: Sequence[float] | Tensor | None = None) -> int:
    """Re-estimate the running statistics of every batch norm of ``generator`` (module docstring); global RNG kept.

    Args:
        generator: the generator (its parameters' device is used).
        num_batches: forward passes B to average over.
        batch_size: latents per pass.
        seed: seed of the latents and classes.
        truncation: draw the latents truncated to [-t, t] (``truncated_normal``), as the samples will be.
        class_shares: each class's share of the labels [c_dim], e.g. the training data's (the mix training
            batches had); None: equal shares.

    Returns:
        How many batch-norm modules were re-estimated (0: the generator has none and nothing changed).
    """
    if num_batches < 1 or batch_size < 2:
        raise ValueError(f"standing statistics need num_batches >= 1 and batch_size >= 2, got {num_batches} and "
                         f"{batch_size}")
    shares = check_class_shares(class_shares, generator.c_dim) if generator.c_dim else None
    norms = batch_norm_modules(generator)
    if not norms:
        return 0
    param = next(generator.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = {m: m.training for m in generator.modules()}
    momenta = {m: m.momentum for m in norms}
    previous = {m: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for m in norms if _per_class(m)}
    rng = torch.Generator(device=device).manual_seed(int(seed))
    try:
        generator.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        labels = None
        if generator.c_dim:
            labels = standing_labels(generator.c_dim, num_batches, batch_size, class_shares=shares, generator=rng,
                                     device=device)  # [B, N]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(seed))  # noise drawn inside the generator, if any
            for b in range(num_batches):
                if truncation is None:
                    z = generator.sample_latents(batch_size, generator=rng, device=device)
                else:
                    z = truncated_normal((batch_size, generator.z_dim), truncation, generator=rng, device=device)
                c = None if labels is None else nn.functional.one_hot(labels[b], generator.c_dim).to(z.dtype)
                generator(z, c)
        missing: set[int] = set()
        for m, (mean, var, tracked) in previous.items():
            unseen = m.num_batches_tracked == 0  # [K]: classes no pass held
            if unseen.any():
                m.running_mean[unseen] = mean[unseen]
                m.running_var[unseen] = var[unseen]
                m.num_batches_tracked[unseen] = tracked[unseen]
                missing.update(torch.nonzero(unseen).flatten().tolist())
        if missing:
            listed = ", ".join(map(str, sorted(missing)[:10])) + (", ..." if len(missing) > 10 else "")
            warnings.warn(f"standing statistics: class(es) {listed} drew no sample (a share of 0, or fewer labels, "
                          f"{num_batches} x {batch_size}, than the {generator.c_dim} classes); their per-class "
                          f"batch-norm statistics keep the previous estimate", stacklevel=2)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return len(norms)
