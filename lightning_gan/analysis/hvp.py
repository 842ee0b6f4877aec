"""Online estimates of the linearized game's coupling s_max and damping alpha, by Hessian-vector products.

Theory: docs/theory.md#stability-of-the-linearized-game; the controller that uses these estimates:
docs/diagnostics.md#the-stability-controller.

G (parameters x = theta_G, n_G of them) minimizes its loss L_G, D (y = theta_D) minimizes its loss L_D. Near a
stationary point, simultaneous gradient steps ``z <- z - eta A z`` (z = [x; y]) are governed by the Jacobian of
the gradient field,

    A = [[H_GG, d2 L_G / dx dy], [C, H_DD]],    H_GG = d2 L_G / dx2,  H_DD = d2 L_D / dy2,  C = d2 L_D / dy dx.

For the linear game of :mod:`lightning_gan.analysis.stability` (``L_G = alpha/2 |x|^2 + x^T S y``,
``L_D = alpha/2 |y|^2 - x^T S y``) this is ``H_GG = H_DD = alpha I`` and ``C = -S^T``. Here:

- **s_max** is the largest singular value of the mixed block ``C = d2 L_D / d theta_D d theta_G`` of *D's loss*,
  by power iteration on ``C^T C`` with the products ``C u = d/d theta_D <grad_G L_D, u>`` and
  ``C^T v = d/d theta_G <grad_D L_D, v>`` (double backward; C is never formed). D's loss because every
  adversarial loss defines it in the same form and its real term does not depend on G, so C is the coupling
  through the fake samples that D's updates feel; for a zero-sum loss ``L_G = -L_D`` it is exactly the coupling
  of the value ``V = L_G`` (``d2 V / dx dy = -C^T``, the same singular values). For the non-saturating loss G's
  own mixed block differs from ``-C^T`` away from equilibrium; at ``D = 0`` the first derivatives of both G
  losses w.r.t. the fake logit agree (-1/2), so the two blocks' leading parts coincide there.
- **alpha** is the mean of the Rayleigh quotients of the diagonal blocks along the top singular pair
  ``(u, v)`` of C: ``alpha_G = u^T H_GG u`` (G's loss), ``alpha_D = v^T H_DD v`` (D's loss with its
  regularizers, e.g. R1), ``alpha = (alpha_G + alpha_D) / 2``. Restricted to the plane of ``(u, 0)`` and
  ``(0, v)`` (the slowest 2-D block of the linear model) the Jacobian is ``[[alpha_G, -s], [s, alpha_D]]``
  (zero-sum), with eigenvalues ``alpha +- i sqrt(s^2 - delta^2)``, ``delta = (alpha_G - alpha_D) / 2``, so
  one step multiplies that block's squared norm by ``(1 - eta alpha)^2 + eta^2 (s^2 - delta^2)``: the
  closed form ``r = (1 - eta alpha)^2 + (eta s_max)^2`` is exact when ``alpha_G = alpha_D`` and an upper bound
  otherwise. Not the smallest eigenvalue of the diagonal blocks: a network's Hessian has many flat or negative
  directions that the coupling does not rotate, and they would set alpha <= 0 for every network.

Preconditioned optimizers (Adam): a step ``z <- z - eta P grad`` with a fixed diagonal ``P`` is the plain step
of the game in the coordinates ``z' = P^(-1/2) z``, whose Jacobian is ``P^(1/2) A P^(1/2)``. With
``precondition_g``/``precondition_d`` (the diagonals of P, flat) every product is taken in those coordinates
(``C' = P_D^(1/2) C P_G^(1/2)``, ``H' = P^(1/2) H P^(1/2)``), so s_max and alpha are those of the
preconditioned game and r is evaluated at the optimizer's plain lr.

Cost: two backward passes with ``create_graph`` (the gradients of L_D and L_G), then ``2 k + 3`` double-backward
products for k power iterations (plus one per extra curvature term). Warm-starting from the previous ``u``
makes a few iterations enough while the weights move slowly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["GameEstimate", "estimate_game", "flat_size"]


@dataclass(frozen=True)
class GameEstimate:
    """What :func:`estimate_game` measured.

    Attributes:
        s_max: largest singular value of D's mixed block (preconditioned when P was given).
        alpha_g: ``u^T H_GG u``, G's curvature along the coupling's top right singular vector.
        alpha_d: ``v^T H_DD v`` with every term of ``d_terms`` at its weight, along the top left singular vector.
        terms: each extra D term's unweighted Rayleigh quotient along v, by name.
        u: the top right singular vector (G's parameter space, flat, unit norm), to warm-start the next estimate.
        v: the top left singular vector (D's parameter space, flat, unit norm).
        products: the Hessian-vector products computed.
    """

    s_max: float
    alpha_g: float
    alpha_d: float
    u: Tensor
    v: Tensor
    terms: dict[str, float] = field(default_factory=dict)
    products: int = 0

    @property
    def alpha(self) -> float:
        """The damping of the slowest block, ``(alpha_G + alpha_D) / 2``."""
        return 0.5 * (self.alpha_g + self.alpha_d)


def flat_size(params: Sequence[Tensor]) -> int:
    """Number of scalars in a list of parameters (the length of u or v)."""
    return sum(p.numel() for p in params)


def _flat(tensors: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, params)])


def _split(vector: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    out, offset = [], 0
    for p in params:
        out.append(vector[offset:offset + p.numel()].view_as(p).to(p.dtype))
        offset += p.numel()
    return out


def estimate_game(loss_g: Tensor, loss_d: Tensor, g_params: Sequence[Tensor], d_params: Sequence[Tensor], *,
                  iterations: int = 5, u0: Tensor | None = None, precondition_g: Tensor | None = None,
                  precondition_d: Tensor | None = None, diagonal_g: Tensor | None = None,
                  diagonal_d: Tensor | None = None, d_terms: Mapping[str, tuple[Tensor, float]] | None = None,
                  reduce: Callable[[Tensor], Tensor] | None = None, seed: int = 0) -> GameEstimate:
    """s_max of D's mixed block and the Rayleigh-quotient damping alpha, by power iteration (see the module docstring).

    ``loss_g`` and ``loss_d`` must have graphs through both parameter lists (G's loss through D, D's loss on
    fakes through G). Each iteration: ``w = C' u``, ``s = |w|``, ``v = w / s``, ``u <- C'^T v / |C'^T v|``;
    like any power iteration it approaches s_max from below at the rate ``(s_2 / s_max)^(2k)``.

    Args:
        loss_g: G's loss, a scalar.
        loss_d: D's loss without the terms of ``d_terms``, a scalar.
        g_params: G's parameters (all requiring grad).
        d_params: D's parameters (all requiring grad).
        iterations: power-iteration steps (>= 1).
        u0: start vector in G's parameter space (flat, any norm), e.g. the previous estimate's ``u``; None: random.
        precondition_g: the diagonal of G's preconditioner P_G (flat, positive), or None for P = I.
        precondition_d: the same for D.
        diagonal_g: extra diagonal curvature of G in the (preconditioned) coordinates, flat, e.g. weight decay
            ``wd * P_G`` (L2) or ``wd`` (decoupled); added to alpha_G as ``u^T diag(.) u``.
        diagonal_d: the same for D, added to alpha_D.
        d_terms: further terms of D's loss ``{name: (scalar, weight)}`` (e.g. R1 per unit gamma, weight gamma):
            each one's Rayleigh quotient along v is reported in ``terms`` and added to alpha_D times its weight.
        reduce: applied to every product (flat), e.g. the mean over DDP processes, so that the estimate is the
            global batch's and identical on every process; None: the identity.
        seed: seed of the random start vector when ``u0`` is None.
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    g_params, d_params = list(g_params), list(d_params)
    if not g_params or not d_params:
        raise ValueError("estimate_game needs parameters of both networks")
    if any(not p.requires_grad for p in (*g_params, *d_params)):
        raise ValueError("every parameter passed to estimate_game must require grad")
    reduce = reduce or (lambda t: t)
    ref = g_params[0]
    dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32  # the vectors' precision
    n_g = flat_size(g_params)
    sqrt_pg = None if precondition_g is None else precondition_g.detach().to(ref.device, dtype).sqrt()
    sqrt_pd = None if precondition_d is None else precondition_d.detach().to(ref.device, dtype).sqrt()
    for name, pre, n in (("precondition_g", sqrt_pg, n_g), ("precondition_d", sqrt_pd, flat_size(d_params))):
        if pre is not None and pre.numel() != n:
            raise ValueError(f"{name} has {pre.numel()} entries, the network has {n} parameters")

    with torch.enable_grad():
        grads_d = torch.autograd.grad(loss_d, [*g_params, *d_params], create_graph=True, allow_unused=True)
        gd_of_ld = grads_d[len(g_params):]  # grad_D L_D, differentiable
        gg_of_lg = torch.autograd.grad(loss_g, g_params, create_graph=True, allow_unused=True)  # grad_G L_G
        term_grads = {name: (torch.autograd.grad(t, d_params, create_graph=True, allow_unused=True), float(w))
                      for name, (t, w) in (d_terms or {}).items()}
        products = 0

        def hvp(grads: Sequence[Tensor | None], wrt: list[Tensor], vector: Tensor, src: list[Tensor]) -> Tensor:
            nonlocal products
            products += 1
            pairs = [(g, v) for g, v in zip(grads, _split(vector, src)) if g is not None and g.requires_grad]
            if not pairs:  # still reduced: every process must join each reduction
                return reduce(torch.zeros(flat_size(wrt), device=ref.device, dtype=dtype))
            out = torch.autograd.grad([g for g, _ in pairs], wrt, [v for _, v in pairs], retain_graph=True,
                                      allow_unused=True)
            return reduce(_flat(out, wrt).to(dtype))

        def couple(u: Tensor) -> Tensor:  # C' u: G space -> D space, C u = d/d theta_D <grad_G L_D, u>
            x = u * sqrt_pg if sqrt_pg is not None else u
            w = hvp(grads_d[:len(g_params)], d_params, x, g_params)
            return w * sqrt_pd if sqrt_pd is not None else w

        def couple_t(v: Tensor) -> Tensor:  # C'^T v: D space -> G space, C^T v = d/d theta_G <grad_D L_D, v>
            y = v * sqrt_pd if sqrt_pd is not None else v
            w = hvp(gd_of_ld, g_params, y, d_params)
            return w * sqrt_pg if sqrt_pg is not None else w

        def rayleigh(grads: Sequence[Tensor | None], params: list[Tensor], vec: Tensor,
                     sqrt_p: Tensor | None) -> float:  # x^T H x with x = P^(1/2) vec
            x = vec * sqrt_p if sqrt_p is not None else vec
            return float(torch.dot(x, hvp(grads, params, x, params)))

        if u0 is None:
            gen = torch.Generator().manual_seed(seed)
            u = torch.randn(n_g, generator=gen, dtype=dtype).to(ref.device)
        else:
            if u0.numel() != n_g:
                raise ValueError(f"u0 has {u0.numel()} entries, G has {n_g} parameters")
            u = u0.detach().to(ref.device, dtype).reshape(-1).clone()
        u = u / u.norm()
        v = torch.zeros(flat_size(d_params), device=ref.device, dtype=dtype)
        s = 0.0
        for step in range(iterations + 1):
            w = couple(u)
            s = float(w.norm())
            if s == 0 or not math.isfinite(s):
                break
            v = w / s
            if step == iterations:  # the last C' u gives s and v
                break
            back = couple_t(v)
            norm = back.norm()
            if norm == 0:
                break
            u = back / norm
        alpha_g = rayleigh(gg_of_lg, g_params, u, sqrt_pg) if s > 0 else 0.0
        alpha_d = rayleigh(gd_of_ld, d_params, v, sqrt_pd) if s > 0 else 0.0
        terms = {}
        for name, (grads, weight) in term_grads.items():
            terms[name] = rayleigh(grads, d_params, v, sqrt_pd) if s > 0 else 0.0
            alpha_d += weight * terms[name]
    if diagonal_g is not None:
        alpha_g += float(torch.dot(u, diagonal_g.to(u) * u))
    if diagonal_d is not None:
        alpha_d += float(torch.dot(v, diagonal_d.to(v) * v))
    return GameEstimate(s_max=s, alpha_g=alpha_g, alpha_d=alpha_d, u=u.detach(), v=v.detach(), terms=terms,
                        products=products)
