"""Feature-level distances and scores (FD, KID, IS, precision/recall), torch-fidelity's implementations.

These take features (``[N, D]`` tensors) or logits, not images, so every metric that compares feature sets
(FID and friends in ``lightning_gan.metrics.image``, the shapes metrics' Frechet distance) uses one
implementation. The formulas are in ``lightning_gan.metrics.image``'s module docstring.
"""

from __future__ import annotations

import torch

__all__ = ["check_pair", "frechet_distance", "inception_score", "kernel_distance", "precision_recall"]


# -- feature-level functions (torch-fidelity's implementations) -----------------------------------
def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    check_pair(real, fake, minimum=2)
    stats = [fid_features_to_statistics(f.detach().double().cpu()) for f in (real, fake)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"])


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 2020) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased polynomial-kernel MMD^2; ``subset_size`` is capped at the set sizes."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    check_pair(real, fake, minimum=2)
    size = min(subset_size, real.shape[0], fake.shape[0])
    out = kid_features_to_metric(real.detach().double().cpu(), fake.detach().double().cpu(), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


def inception_score(logits: torch.Tensor, *, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """Inception Score (mean, std over splits) of class logits [N, K]."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    if logits.dim() != 2 or logits.shape[0] < splits:
        raise ValueError(f"inception_score needs logits [N, K] with N >= splits ({splits}), got {tuple(logits.shape)}")
    out = isc_features_to_metric(logits.detach().cpu(), splits=splits, shuffle=True, rng_seed=seed)
    return float(out["inception_score_mean"]), float(out["inception_score_std"])


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features ``fake`` against ``real`` with k-NN manifolds."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    check_pair(real, fake, minimum=k + 1)
    precision, recall = calculate_precision_recall_part(fake.detach().float().cpu(), real.detach().float().cpu(),
                                                        neighborhood=k, batch_size=10000)
    return float(precision), float(recall)


def check_pair(real: torch.Tensor, fake: torch.Tensor, minimum: int) -> None:
    """Raise unless ``real`` and ``fake`` are finite ``[N, D]`` and ``[M, D]`` sets of at least ``minimum`` rows."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be [N, D] and [M, D] with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if min(real.shape[0], fake.shape[0]) < minimum:
        raise ValueError(f"need at least {minimum} feature vectors per set, got {real.shape[0]} and {fake.shape[0]}")
    if not (torch.isfinite(real).all() and torch.isfinite(fake).all()):
        raise FloatingPointError("feature sets contain NaN or inf")
