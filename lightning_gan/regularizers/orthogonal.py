"""BigGAN's orthogonal regularization (Brock et al. 2019, eq. 3) on every weight matrix of one network.

Each weight ``W`` of the chosen network is seen as an ``m x n`` = out x rest matrix (a conv's ``[out, in, kh,
kw]`` becomes ``out x (in kh kw)``, a linear's ``[out, in]`` stays), ``G = W W^T`` (m x m, the Gram matrix of
its rows, i.e. of the filters) and ``M = 1 - I``. The penalty sums over the matrices

    ``R = (beta / 2) * sum_W ||G * M||_F^2``  (``mode="off_diagonal"``, BigGAN's relaxed form), or
    ``R = (beta / 2) * sum_W ||G - I||_F^2``  (``mode="full"``, the original orthogonal regularization),

with gradient

    ``dR/dW = 2 beta (W W^T * M) W``  (off-diagonal),  ``dR/dW = 2 beta (W W^T - I) W``  (full),

which is what BigGAN's reference implementation adds to each weight's gradient (``beta`` 1e-4 there): the same
``beta`` means the same strength here. ``G`` is symmetric, so ``d ||G * M||^2 / dW = 4 (G * M) W``, and the
factor 1/2 makes it ``2 beta``.

A tall matrix (m > n: more filters than inputs, e.g. a linear layer from a small z to a large feature map)
never forms the m x m matrix: ``||W W^T||_F^2 = ||W^T W||_F^2`` (both are ``tr(W W^T W W^T)``) and the
diagonal of ``W W^T`` is the rows' squared norms ``r_i = ||w_i||^2``, so

    ``||W W^T * M||_F^2 = ||W^T W||_F^2 - sum_i r_i^2``,   ``||W W^T - I||_F^2 = ||W^T W||_F^2 - 2 sum_i r_i + m``,

the same value and gradient at n x n cost.

Departure, off by default: ``gram="smaller"`` uses the Gram matrix of the smaller side instead, ``W^T W`` (n x n)
on a tall matrix (``W W^T`` otherwise, so wide and square matrices are unchanged). An m x n matrix has rank at
most min(m, n), so ``W W^T`` of a tall matrix has at least m - n zero eigenvalues: its full form cannot reach 0,
and its off-diagonal form is 0 only when at most n rows are non-zero (it pushes the extra filters towards 0).
``W^T W`` asks for orthogonal columns instead, which a tall matrix can have. Same ``(beta / 2)`` scale; gradient
``2 beta W (W^T W * M)`` (or ``W^T W - I``).

Which parameters: every parameter of the network with two or more dimensions, except

* those of ``nn.Embedding`` modules and of any module that sets the attribute ``is_embedding = True`` (the
  rule an architecture uses to mark a linear class embedding, e.g. BigGAN's shared embedding of one-hot
  classes, as an embedding), and
* those whose qualified name matches one of the ``exclude`` glob patterns (``fnmatch``, e.g.
  ``"mapping.*"``).

1-D parameters (biases, gains) and scalars are never regularized. Under a spectral-norm parametrization
(``torch.nn.utils.parametrizations.spectral_norm``) the regularized tensor is the parameter the optimizer
updates, ``<module>.parametrizations.weight.original`` (the old ``spectral_norm`` hook's ``weight_orig``),
not the normalized ``W / sigma`` that the forward uses: the penalty acts on the free parameter, and
``original``'s Gram matrix is ``sigma^2`` times the normalized one, so the penalty's minimizers (an
off-diagonal Gram equal to 0) are the same. Equalized-learning-rate layers likewise regularize their
stored weight (the runtime gain is a scalar that changes the penalty's scale only).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import NetworkName, PenaltyInputs, Regularizer

__all__ = ["OrthogonalRegularization", "orthogonal_penalty", "regularized_weights"]

_MODES = ("off_diagonal", "full")
_GRAMS = ("rows", "smaller")


def _check(mode: str, gram: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    if gram not in _GRAMS:
        raise ValueError(f"gram must be one of {list(_GRAMS)}, got {gram!r}")


def orthogonal_penalty(weight: Tensor, *, mode: str = "off_diagonal", gram: str = "rows") -> Tensor:
    """``||W W^T * (1 - I)||_F^2`` (or ``||W W^T - I||_F^2`` for ``mode="full"``) of one weight, unweighted.

    ``weight`` is seen as ``out x rest``; ``gram="smaller"`` uses ``W^T W`` when out > rest (module
    docstring). Without the ``beta / 2`` the regularizer multiplies by. Computed in float32 (float64 stays
    float64) outside autocast.
    """
    _check(mode, gram)
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.to(dtype).reshape(weight.shape[0], -1)  # [m, n]
        m, n = w.shape
        if m <= n or gram == "smaller":
            g = w @ w.T if m <= n else w.T @ w  # [min(m, n), min(m, n)]
            eye = torch.eye(g.shape[0], device=g.device, dtype=g.dtype)
            residual = g - eye if mode == "full" else g * (1.0 - eye)
            return residual.square().sum()
        # tall, W W^T without the m x m matrix: ||W W^T||^2 = ||W^T W||^2, diag(W W^T) = row norms^2
        total = (w.T @ w).square().sum()
        row_sq = w.square().sum(dim=1)  # [m]
        if mode == "full":
            return total - 2.0 * row_sq.sum() + m
        return total - row_sq.square().sum()


def _embedding_modules(network: nn.Module) -> list[str]:
    return [name for name, m in network.named_modules()
            if isinstance(m, nn.Embedding) or getattr(m, "is_embedding", False) is True]


def regularized_weights(network: nn.Module, exclude: Sequence[str] = ()) -> Iterator[tuple[str, Tensor]]:
    """``(qualified name, parameter)`` of every weight the penalty covers (module docstring's rule)."""
    skipped = _embedding_modules(network)
    for name, param in network.named_parameters():
        if param.dim() < 2:
            continue
        if any(name.startswith(f"{m}.") if m else True for m in skipped):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            continue
        yield name, param


class OrthogonalRegularization(Regularizer):
    """BigGAN's orthogonal regularization ``(beta / 2) * sum_W ||W W^T * (1 - I)||_F^2`` (module docstring).

    Registered as ``orthogonal``: ``--model.regularizers='[{class_path: orthogonal, init_args: {beta: 1e-4}}]'``.
    Its gradient ``2 beta (W W^T * (1 - I)) W`` is BigGAN's reference update at the same ``beta``.
    """

    network: NetworkName = "generator"

    def __init__(self, *, beta: float = 1e-4, network: NetworkName = "generator", mode: str = "off_diagonal",
                 gram: str = "rows", exclude: list[str] | None = None, interval: int = 1) -> None:
        """
        Args:
            beta: the strength: penalty ``(beta / 2) ||.||_F^2``, gradient ``2 beta (.) W`` (1e-4 in BigGAN).
            network: which network's weights to regularize, ``generator`` (BigGAN) or ``discriminator``.
            mode: ``off_diagonal`` (BigGAN's ``||G * (1 - I)||^2``) or ``full`` (``||G - I||^2``).
            gram: ``rows`` (``G = W W^T`` of ``[out, in k k]``, BigGAN) or ``smaller`` (``W^T W`` on tall
                matrices, a departure: module docstring).
            exclude: glob patterns of parameter names to leave out, besides embeddings and 1-D parameters.
            interval: run every ``interval`` iterations (lazy, multiplied by the interval); 1 folds it into
                the network's main phase.
        """
        if network not in ("generator", "discriminator"):
            raise ValueError(f"network must be 'generator' or 'discriminator', got {network!r}")
        _check(mode, gram)
        super().__init__(weight=beta, interval=interval)
        self.beta = float(beta)
        self.network = network
        self.mode = mode
        self.gram = gram
        self.exclude = list(exclude or [])

    def penalty(self, network: nn.Module) -> Tensor:
        """The weighted penalty ``(beta / 2) * sum_W ||.||_F^2`` of ``network``'s weights (0 when it has none)."""
        terms = [orthogonal_penalty(p, mode=self.mode, gram=self.gram)
                 for _, p in regularized_weights(network, self.exclude)]
        if not terms:  # nothing to regularize: a 0 that still has a graph (a lazy phase backpropagates it)
            params = list(network.parameters())
            return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=params[0].device)) if params \
                else torch.zeros(())
        return 0.5 * self.beta * torch.stack(terms).sum()

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        return self.penalty(inputs.generator if self.network == "generator" else inputs.discriminator)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}, gram={self.gram}, exclude={self.exclude}"
