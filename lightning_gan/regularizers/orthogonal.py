"""BigGAN's orthogonal regularization (Brock et al. 2019, eq. 3) on every weight matrix of one network.

For each weight ``W`` of the chosen network, reshaped to ``m x n`` = out x rest (a conv's ``[out, in, kh,
kw]`` becomes ``out x (in kh kw)``), the penalty uses the Gram matrix of its *smaller* side,

    ``G = W W^T`` (m x m) when m <= n, else ``G = W^T W`` (n x n),

and sums over the matrices

    ``R = beta * sum_W ||G * (1 - I)||_F^2``  (``mode="off_diagonal"``, BigGAN's relaxed form), or
    ``R = beta * sum_W ||G - I||_F^2``        (``mode="full"``, the original orthogonal regularization).

Why the smaller side: an m x n matrix has rank at most min(m, n), so only the smaller Gram matrix can be the
identity (orthonormal rows when m <= n, orthonormal columns otherwise), and only its off-diagonal can be 0
with no zero row or column; the larger one has at least |m - n| zero eigenvalues and the penalty could not
be satisfied. For a square matrix both sides agree (``W W^T = I`` iff ``W^T W = I``). The paper writes
``W^T W`` with the matrix's rows as filters; the smaller side is the same penalty on the usual wide conv
weights (out <= in k k) and the one that can vanish on tall ones.

Gradient (used by the tests): with ``M = 1 - I`` and ``G = W W^T``, ``dR/dW = 4 beta (G * M) W``; for
``G = W^T W``, ``dR/dW = 4 beta W (G * M)``; for the full form replace ``G * M`` by ``G - I``.

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


def orthogonal_penalty(weight: Tensor, *, mode: str = "off_diagonal") -> Tensor:
    """``||G * (1 - I)||_F^2`` (or ``||G - I||_F^2`` for ``mode="full"``) of one weight, unweighted.

    ``weight`` is reshaped to ``out x rest`` and ``G`` is the Gram matrix of its smaller side (module
    docstring). Computed in float32 outside autocast.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.float().reshape(weight.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
        residual = gram - eye if mode == "full" else gram * (1.0 - eye)
        return residual.square().sum()


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
    """BigGAN's orthogonal regularization ``beta * sum_W ||W W^T * (1 - I)||_F^2`` (see the module docstring).

    Registered as ``orthogonal``: ``--model.regularizers='[{class_path: orthogonal, init_args: {beta: 1e-4}}]'``.
    """

    network: NetworkName = "generator"

    def __init__(self, *, beta: float = 1e-4, network: NetworkName = "generator", mode: str = "off_diagonal",
                 exclude: list[str] | None = None, interval: int = 1) -> None:
        """
        Args:
            beta: the penalty weight (1e-4 in BigGAN).
            network: which network's weights to regularize, ``generator`` (BigGAN) or ``discriminator``.
            mode: ``off_diagonal`` (BigGAN's ``||G * (1 - I)||^2``) or ``full`` (``||G - I||^2``).
            exclude: glob patterns of parameter names to leave out, besides embeddings and 1-D parameters.
            interval: run every ``interval`` iterations (lazy, multiplied by the interval); 1 folds it into
                the network's main phase.
        """
        if network not in ("generator", "discriminator"):
            raise ValueError(f"network must be 'generator' or 'discriminator', got {network!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
        super().__init__(weight=beta, interval=interval)
        self.beta = float(beta)
        self.network = network
        self.mode = mode
        self.exclude = list(exclude or [])

    def penalty(self, network: nn.Module) -> Tensor:
        """The weighted penalty of ``network``'s weights (0 when it has none)."""
        terms = [orthogonal_penalty(p, mode=self.mode) for _, p in regularized_weights(network, self.exclude)]
        if not terms:  # nothing to regularize: a 0 that still has a graph (a lazy phase backpropagates it)
            params = list(network.parameters())
            return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=params[0].device)) if params \
                else torch.zeros(())
        return self.beta * torch.stack(terms).sum()

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        return self.penalty(inputs.generator if self.network == "generator" else inputs.discriminator)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}, exclude={self.exclude}"
