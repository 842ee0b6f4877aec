"""Class leakage of conditional batch norm: a closed form for two Gaussian classes and a trained-model measurement.

Batch norm with batch statistics normalizes every sample with the mean and variance of its whole batch, so
in a mixed-class batch each sample's output depends on the other classes in the batch
(docs/theory.md#class-leakage-of-conditional-batch-norm). Two ways to see how much:

**Closed form** (one feature channel; BN normalizes each channel on its own). Class A (the majority) has
features ``x ~ N(mu_A, sigma^2)``, class B (the minority) ``x ~ N(mu_B, sigma^2)``, ``Delta = mu_B - mu_A``;
a batch holds a share ``p`` of B. Everything below is the *infinite-batch limit* (the batch statistics equal
the mixture's; with a batch of n they fluctuate around it by O(1/sqrt(n)), and BN's eps is neglected,
sigma^2 >> eps):

* batch statistics ``m_p = mu_A + p Delta`` and ``s_p^2 = sigma^2 + p (1 - p) Delta^2``;
* the **shift** of each class's normalized mean relative to normalizing with its own class statistics
  (class-grouped statistics, where every class's normalized feature is N(0, 1)): ``d_A = -p Delta / s_p``
  and ``d_B = (1 - p) Delta / s_p``, with the normalized standard deviation ``sigma / s_p`` instead of 1.
  The minority moves ``(1 - p) / p`` times as far as the majority (19 times at p = 5%).
* **confusion**: what the shift does to generated samples. The layers after the BN are fitted to the
  normalized features of training batches; the affine map that gives back the features of any class
  from them, ``y = s_p x_hat + m_p`` (the least-squares fit of a class-conditional gain and bias on any
  class: x_hat is an affine function of x), is the same for every class, so the class signal passes
  through the batch statistics. Sampling a class in a batch of another mix ``q`` (a pure-class batch: q = 1
  for B, q = 0 for A) normalizes with ``(m_q, s_q)`` and gives ``y = s_p (x - m_q) / s_q + m_p``:
  ``y_B ~ N(s_p (mu_B - m_q) / s_q + m_p, (s_p sigma / s_q)^2)``. A sample *lands on the majority's side*
  when it falls on A's side of the midpoint ``h = (mu_A + mu_B) / 2`` of the two class means (the
  Bayes boundary of the class features): for Delta > 0,
  ``P(y_B < h) = Phi((h - E y_B) / sd y_B)``. At q = p (sampled as trained) this is ``Phi(-|Delta| / (2 sigma))``,
  the classes' own overlap; in a pure minority batch (q = 1) it is ``Phi((1/2 - p) |Delta| / s_p)``,
  which rises towards ``Phi(|Delta| / (2 sigma))`` as p -> 0: a minority sample generated away from the
  majority is pulled onto the majority's mean ``m_p``. The majority in a pure batch moves only by
  ``p Delta``. With class-grouped statistics (or per-sample statistics) nothing depends on the mix.

``python -m lightning_gan.analysis.leakage`` prints the closed form next to a Monte Carlo estimate over
a grid of p (finite batches of 1024, the statistics and the fitted affine measured, not assumed).

**Measurement on a trained model** (:func:`measure_leakage`): for a conditional generator, the same
latents and class are generated once in a pure-class batch and once inside a mixed-class batch, with
batch statistics (train mode, on a copy, so the running statistics are untouched); the RMS difference of
the outputs, per class, is the leakage. It is 0 for any per-sample or class-grouped normalization and in
eval mode (running statistics), and positive for shared batch statistics. Works on any ``Generator``
(``z``, one-hot ``c``); generators with other randomness in train mode (dropout, noise inputs drawn per
call) show that randomness too, which the function cancels only where it is seeded by the global RNG.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ClassLeakage",
    "batch_statistics",
    "confusion",
    "has_batch_norm",
    "leakage_table",
    "measure_leakage",
    "mixed_counts",
    "monte_carlo",
    "normalized_shift",
    "pure_mixed_difference",
]


def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _check(p: float, sigma: float, name: str = "p") -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} (the minority's share of the batch) must be in [0, 1], got {p}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def batch_statistics(p: float, mu_a: float, mu_b: float, sigma: float) -> tuple[float, float]:
    """``(m_p, s_p)``: mean and standard deviation of a batch with minority share ``p`` (infinite batch)."""
    _check(p, sigma)
    delta = mu_b - mu_a
    return mu_a + p * delta, math.sqrt(sigma**2 + p * (1.0 - p) * delta**2)


def normalized_shift(p: float, mu_a: float, mu_b: float, sigma: float) -> tuple[float, float, float]:
    """``(d_A, d_B, sigma / s_p)``: each class's normalized mean under shared batch statistics (0 under its
    own class statistics) and the normalized standard deviation (1 under its own)."""
    m, s = batch_statistics(p, mu_a, mu_b, sigma)
    return (mu_a - m) / s, (mu_b - m) / s, sigma / s


def pure_mixed_difference(p: float, mu_a: float, mu_b: float, sigma: float, *, which: str = "minority") -> float:
    """RMS difference of a class's normalized features between a pure-class batch and a batch of minority
    share ``p`` (infinite batches): ``sqrt((1 - sigma / s_p)^2 + d^2)`` with d the class's shift.

    With ``x = mu + sigma u``, the pure batch gives ``u`` and the mixed one ``d + (sigma / s_p) u``; the mean
    square of the difference over ``u ~ N(0, 1)`` is ``d^2 + (1 - sigma / s_p)^2``. It is what
    :func:`measure_leakage` measures on a generator whose output is this BN (no affine).
    """
    if which not in ("minority", "majority"):
        raise ValueError(f"which must be 'minority' or 'majority', got {which!r}")
    d_a, d_b, scale = normalized_shift(p, mu_a, mu_b, sigma)
    return math.sqrt((1.0 - scale) ** 2 + (d_b if which == "minority" else d_a) ** 2)


def confusion(p: float, mu_a: float, mu_b: float, sigma: float, *, which: str = "minority",
              sampled_share: float | None = None) -> float:
    """Probability that a class's sample lands on the other class's side of ``h = (mu_A + mu_B) / 2``.

    The layers after the BN are fitted at minority share ``p``; the sample is generated in a batch of
    minority share ``sampled_share`` (default: a pure batch of its own class, 1 for the minority, 0 for the
    majority). See the module docstring.

    Args:
        p: the minority's share of the training batches.
        mu_a, mu_b, sigma: the class features (A the majority, B the minority).
        which: ``minority`` (B, on A's side) or ``majority`` (A, on B's side).
        sampled_share: the minority's share of the batch the sample is generated in.
    """
    if which not in ("minority", "majority"):
        raise ValueError(f"which must be 'minority' or 'majority', got {which!r}")
    q = (1.0 if which == "minority" else 0.0) if sampled_share is None else float(sampled_share)
    _check(q, sigma, "sampled_share")
    m_p, s_p = batch_statistics(p, mu_a, mu_b, sigma)
    m_q, s_q = batch_statistics(q, mu_a, mu_b, sigma)
    mu_own, mu_other = (mu_b, mu_a) if which == "minority" else (mu_a, mu_b)
    mean = s_p * (mu_own - m_q) / s_q + m_p
    sd = s_p * sigma / s_q
    h = 0.5 * (mu_a + mu_b)
    if mu_own == mu_other:
        return 0.5
    towards_other = 1.0 if mu_other > mu_own else -1.0  # the other's side is beyond h in this direction
    return _phi(towards_other * (mean - h) / sd)


def monte_carlo(p: float, mu_a: float, mu_b: float, sigma: float, *, batch_size: int = 1024,
                num_batches: int = 2000, seed: int = 0) -> dict[str, float]:
    """The closed form's quantities measured on simulated finite batches.

    Training batches hold ``round(p n)`` minority samples of ``n = batch_size``; each is normalized with
    its own mean and (biased) variance, as BN does in training; the shifts are the classes' average
    normalized values. The fitted affine is ``(mean batch std, mean batch mean)`` over those batches; pure
    batches of each class are then normalized with their own statistics, mapped through it, and the share
    of samples beyond the midpoint counted. Returns ``shift_majority``, ``shift_minority``, ``scale``,
    ``confusion_minority``, ``confusion_majority``.
    """
    _check(p, sigma)
    g = torch.Generator().manual_seed(seed)
    n_b = int(round(p * batch_size))
    n_a = batch_size - n_b
    x = torch.randn(num_batches, batch_size, generator=g, dtype=torch.float64) * sigma
    x[:, :n_a] += mu_a
    x[:, n_a:] += mu_b
    mean = x.mean(1, keepdim=True)
    std = x.var(1, unbiased=False, keepdim=True).sqrt()
    x_hat = (x - mean) / std
    out = {
        "shift_majority": float(x_hat[:, :n_a].mean()) if n_a else math.nan,
        "shift_minority": float(x_hat[:, n_a:].mean()) if n_b else math.nan,
        "scale": float(torch.cat([x_hat[:, :n_a] - x_hat[:, :n_a].mean(1, keepdim=True),
                                  x_hat[:, n_a:] - x_hat[:, n_a:].mean(1, keepdim=True)], 1).square().mean().sqrt()),
    }
    gain, bias = float(std.mean()), float(mean.mean())
    h = 0.5 * (mu_a + mu_b)
    for which, mu_own, mu_other in (("minority", mu_b, mu_a), ("majority", mu_a, mu_b)):
        pure = torch.randn(num_batches, batch_size, generator=g, dtype=torch.float64) * sigma + mu_own
        y = gain * (pure - pure.mean(1, keepdim=True)) / pure.var(1, unbiased=False, keepdim=True).sqrt() + bias
        other_side = (y > h) if mu_other > mu_own else (y < h)
        out[f"confusion_{which}"] = float(other_side.double().mean())
    return out


def leakage_table(ps: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5), *, mu_a: float = -1.0,
                  mu_b: float = 1.0, sigma: float = 1.0, batch_size: int = 1024, num_batches: int = 2000,
                  seed: int = 0) -> list[dict[str, float]]:
    """Closed form and Monte Carlo side by side for each minority share p (rows of plain numbers)."""
    rows = []
    for p in ps:
        d_a, d_b, scale = normalized_shift(p, mu_a, mu_b, sigma)
        mc = monte_carlo(p, mu_a, mu_b, sigma, batch_size=batch_size, num_batches=num_batches, seed=seed)
        rows.append({
            "p": p, "shift_majority": d_a, "shift_majority_mc": mc["shift_majority"],
            "shift_minority": d_b, "shift_minority_mc": mc["shift_minority"], "scale": scale, "scale_mc": mc["scale"],
            "confusion_minority": confusion(p, mu_a, mu_b, sigma),
            "confusion_minority_mc": mc["confusion_minority"],
            "confusion_majority": confusion(p, mu_a, mu_b, sigma, which="majority"),
            "confusion_majority_mc": mc["confusion_majority"],
        })
    return rows


# -- trained models -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassLeakage:
    """One class's pure-vs-mixed difference (see :func:`measure_leakage`).

    Attributes:
        label: the class index.
        count: how many of the mixed batch's samples are of this class (the pure batch's size).
        rms_difference: ``sqrt(mean (G_pure - G_mixed)^2)`` over those samples and every output value.
        relative: ``rms_difference`` divided by the RMS of the mixed batch's outputs for this class.
    """

    label: int
    count: int
    rms_difference: float
    relative: float


def has_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` contains a batch-norm layer (``nn.modules.batchnorm._BatchNorm``) or a module that
    declares ``bn_statistics`` (a conditional BN of a plugin), i.e. whether batch statistics can leak."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) or hasattr(m, "bn_statistics")
               for m in module.modules())


def mixed_counts(proportions: Sequence[float], batch_size: int) -> list[int]:
    """Class counts of a batch of ``batch_size`` with these class shares: largest remainders, each class >= 1."""
    shares = torch.as_tensor([float(v) for v in proportions], dtype=torch.float64)
    k = len(shares)
    if k < 2 or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"proportions must be >= 2 non-negative shares with a positive sum, got {list(proportions)}")
    if batch_size < k:
        raise ValueError(f"batch_size ({batch_size}) must hold at least one sample of each of the {k} classes")
    shares = shares / shares.sum()
    rest = batch_size - k  # one per class first, the rest by largest remainders
    raw = shares * rest
    counts = raw.floor().long() + 1
    left = batch_size - int(counts.sum())
    order = torch.argsort(raw - raw.floor(), descending=True, stable=True)
    counts[order[:left]] += 1
    return counts.tolist()


@torch.no_grad()
def measure_leakage(generator: nn.Module, *, batch_size: int = 256, proportions: Sequence[float] | None = None,
                    seed: int = 0, train_mode: bool = True) -> list[ClassLeakage]:
    """Per class, how much a sample changes between a pure-class batch and a mixed-class batch.

    One mixed batch of ``batch_size`` latents, with class counts from ``proportions`` (default: equal
    shares; :func:`mixed_counts`), is generated; then, for each class, the same latents of that class are
    generated alone (a pure-class batch). With ``train_mode`` the networks run in training mode (batch
    statistics) on a deep copy, so the caller's running statistics and mode are untouched; every forward
    starts from the same state (buffers such as spectral norm's power-iteration vectors, which train mode
    updates, are restored) and the global RNG is reseeded identically before each and restored afterwards.

    Args:
        generator: a conditional generator (``z_dim``, ``c_dim`` > 1, ``forward(z, c)`` with one-hot ``c``).
        batch_size: the mixed batch's size.
        proportions: class shares of the mixed batch (e.g. the data's class proportions).
        seed: seed of the latents.
        train_mode: batch statistics (True) or the generator's eval mode (running statistics: 0 leakage).
    """
    c_dim = int(getattr(generator, "c_dim", 0) or 0)
    if c_dim < 2:
        raise ValueError(f"class leakage needs a conditional generator with c_dim >= 2, got c_dim={c_dim}")
    counts = mixed_counts(proportions if proportions is not None else [1.0] * c_dim, batch_size)
    if len(counts) != c_dim:
        raise ValueError(f"proportions has {len(counts)} classes but the generator has c_dim={c_dim}")
    net = copy.deepcopy(generator)
    net.train(train_mode)
    param = next(iter(net.parameters()), None)
    device = torch.device("cpu") if param is None else param.device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch_size, int(net.z_dim), generator=gen).to(device)
    labels = torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(counts)])
    labels = labels[torch.randperm(batch_size, generator=gen)].to(device)  # the classes interleaved
    c = torch.nn.functional.one_hot(labels, c_dim).float()

    state = copy.deepcopy(net.state_dict())

    def run(z_: Tensor, c_: Tensor) -> Tensor:
        net.load_state_dict(state)  # every forward from the same state (train mode updates running statistics
        # and spectral norm's power-iteration vectors)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return net(z_, c_).float()

    mixed = run(z, c)
    rows = []
    for k in range(c_dim):
        idx = torch.nonzero(labels == k).flatten()
        pure = run(z[idx], c[idx])
        diff = (pure - mixed[idx]).square().mean().sqrt().item()
        scale = mixed[idx].square().mean().sqrt().item()
        rows.append(ClassLeakage(label=k, count=len(idx), rms_difference=diff,
                                 relative=diff / scale if scale > 0 else math.nan))
    return rows


def _main() -> None:
    """Print the closed form vs Monte Carlo table (``python -m lightning_gan.analysis.leakage``)."""
    mu_a, mu_b, sigma = -1.0, 1.0, 1.0
    print(f"two-class Gaussian features: mu_A={mu_a:g} (majority), mu_B={mu_b:g} (minority share p), sigma={sigma:g}; "
          f"closed form (infinite batch) vs Monte Carlo (batches of 1024, 2000 batches)")
    print(f"{'p':>5} | {'shift A':>15} | {'shift B':>15} | {'scale':>15} | {'P(B on A side)':>15} | {'P(A on B side)':>15}")
    print(f"{'':>5} | {'closed    MC':>15} | {'closed    MC':>15} | {'closed    MC':>15} | {'closed    MC':>15} | "
          f"{'closed    MC':>15}")
    for r in leakage_table(mu_a=mu_a, mu_b=mu_b, sigma=sigma):
        cells = [f"{r[k]:+.3f} {r[k + '_mc']:+.3f}" for k in ("shift_majority", "shift_minority")]
        cells += [f"{r[k]:.3f}  {r[k + '_mc']:.3f}" for k in ("scale", "confusion_minority", "confusion_majority")]
        print(f"{r['p']:5.2f} | " + " | ".join(f"{c:>15}" for c in cells))
    print("pure-class batches after training at share p; with class-grouped statistics every shift is 0, every "
          "scale 1 and both confusions Phi(-|mu_B - mu_A| / (2 sigma)) = "
          f"{_phi(-abs(mu_b - mu_a) / (2 * sigma)):.3f}")


if __name__ == "__main__":
    _main()
