"""StabilityMonitor: the linearized game's convergence factor for the current learning rates, during training.

Every ``every_n_kimg`` thousand images it measures, on the current batch and fresh latents, the quantities of
:func:`lightning_gan.analysis.report.stability_summary` (``|J_D|``, ``|J_G|``, ``s_max ~ |J_D| |J_G|``, the
damping ``alpha``, ``r`` at each network's current learning rate and the largest stable rate ``eta*``) and
the largest per-layer singular value of each network (:func:`~lightning_gan.analysis.layer_spectral_norms`,
exact: SVD for linear layers, per-frequency for convs), and logs them under ``stability/``. When ``r >= 1``
for a network it warns once, with the numbers. ``alpha`` defaults to the gamma of the model's R1 (the
damping R1 adds to D), 0 without R1: the undamped linear game never contracts, and the warning says so.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_gan.analysis.stability import layer_spectral_norms
from lightning_gan.callbacks._periodic import log_measurement, next_multiple, reached

__all__ = ["StabilityMonitor"]


class StabilityMonitor(Callback):
    """Logs per-network spectral norms and the convergence factor ``r`` every ``every_n_kimg``; warns when r >= 1.

    Args:
        every_n_kimg: measure each time this many thousand images have been shown (and at the start).
        alpha: the damping of the linear model; None takes the gamma of the model's R1 regularizer (0 without).
        num_samples: real samples and latents the Jacobian norms are measured at.
        iterations: power-iteration steps for the Jacobian norms.
        layer_norms: also measure every layer's largest singular value (exact; slower on big models).
    """

    def __init__(self, *, every_n_kimg: float = 10.0, alpha: float | None = None, num_samples: int = 8,
                 iterations: int = 10, layer_norms: bool = True) -> None:
        super().__init__()
        if every_n_kimg <= 0:
            raise ValueError(f"every_n_kimg must be > 0, got {every_n_kimg}")
        if alpha is not None and alpha < 0:
            raise ValueError(f"alpha must be >= 0 or None, got {alpha}")
        if num_samples < 1 or iterations < 1:
            raise ValueError(f"num_samples and iterations must be >= 1, got {num_samples}, {iterations}")
        self.every_n_kimg, self.alpha, self.num_samples = float(every_n_kimg), alpha, int(num_samples)
        self.iterations, self.layer_norms = int(iterations), bool(layer_norms)
        self.next_kimg = 0.0
        self.warned: list[str] = []
        self.last: dict[str, float] = {}

    def damping(self, pl_module: LightningModule) -> float:
        if self.alpha is not None:
            return self.alpha
        from lightning_gan.regularizers import R1

        gammas = [r.gamma for r in getattr(pl_module, "regularizers", []) if isinstance(r, R1)]
        return float(gammas[0]) if gammas else 0.0

    def measure(self, trainer: Trainer, pl_module: Any, real: torch.Tensor, real_c: torch.Tensor | None) -> dict[str, float]:
        from lightning_gan.analysis.report import stability_summary

        G, D = pl_module.generator, pl_module.discriminator
        n = min(self.num_samples, real.shape[0])
        z, c = pl_module._sample_latents(n, real_c)
        d_opt, g_opt = trainer.optimizers[:2]
        lrs = {"discriminator": float(d_opt.param_groups[0]["lr"]), "generator": float(g_opt.param_groups[0]["lr"])}
        values = stability_summary(G, D, real[:n].detach().float(), None if real_c is None else real_c[:n], z, c, lrs,
                                   self.damping(pl_module), iterations=self.iterations)
        if self.layer_norms:
            extra = () if c is None else (c[:2],)
            for name, net, shape in (("G", G, (2, G.z_dim)), ("D", D, (2, *real.shape[1:]))):
                records = layer_spectral_norms(net, shape, extra_inputs=extra)
                if records:
                    values[f"sigma_max_layer/{name}"] = max(r.sigma_max for r in records)
        return values

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        kimg = float(getattr(pl_module, "kimg", 0.0))
        if not reached(kimg, self.next_kimg):
            return
        self.next_kimg = next_multiple(kimg, self.every_n_kimg)
        real, real_c = pl_module._split_batch(batch)
        with torch.enable_grad():
            values = self.measure(trainer, pl_module, real, real_c)
        self.last = values
        log_measurement(trainer, pl_module, {f"stability/{k}": v for k, v in values.items()})
        for net in ("D", "G"):
            r = values.get(f"r/{net}")
            if r is not None and r >= 1 and net not in self.warned:
                self.warned.append(net)
                rank_zero_warn(
                    f"StabilityMonitor: at {kimg:.1f} kimg the linearized game does not contract at {net}'s learning "
                    f"rate {values[f'lr/{net}']:.3g}: r = (1 - eta alpha)^2 + (eta s_max)^2 = {r:.6f} >= 1 with alpha = "
                    f"{values['alpha']:.3g} and s_max ~ |J_D| |J_G| = {values['s_max']:.3g}. "
                    + ("The undamped linear game never contracts: add R1 (--model.regularizers+=r1)."
                       if values["alpha"] == 0 else f"The largest stable learning rate is eta* = {values['eta_star']:.3g}."))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"next_kimg": self.next_kimg, "warned": list(self.warned)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_kimg = float(state_dict["next_kimg"])
        self.warned = list(state_dict["warned"])
