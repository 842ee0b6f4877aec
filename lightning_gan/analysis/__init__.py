"""Diagnostics: the mechanisms of docs/theory.md as small documented functions checked against closed forms.

Importing this package imports no plugin.
"""

from lightning_gan.analysis.autocorrelation import ar1_field, ar1_phi, ar1_phi_standard_error
from lightning_gan.analysis.demodulation import (
    LayerVarianceRatio,
    activation_variance_ratios,
    format_variance_ratios,
    plot_variance_ratios,
)
from lightning_gan.analysis.gradient_flow import LayerGradient, discriminator_gradient_flow
from lightning_gan.analysis.hvp import GameEstimate, estimate_game
from lightning_gan.analysis.leakage import (
    ClassLeakage,
    batch_statistics,
    confusion,
    measure_leakage,
    normalized_shift,
    pure_mixed_difference,
)
from lightning_gan.analysis.orthogonality import (
    conv_frequency_singular_values,
    conv_operator_norm,
    orthogonality_deviation,
)
from lightning_gan.analysis.plots import heatmap, line_plot
from lightning_gan.analysis.spectra import (
    DEFAULT_CUTOFF,
    energy_split,
    plot_spectra,
    power_spectrum_2d,
    radial_power_spectrum,
    ring_index,
    spectral_gap,
)
from lightning_gan.analysis.stability import (
    LayerSpectralNorm,
    LinearGameSimulation,
    convergence_factor,
    jacobian_spectral_norm,
    layer_spectral_norms,
    lr_scale_for_target,
    lr_window,
    max_stable_lr,
    min_damping_for_target,
    noise_floor,
    power_iteration_norm,
    simulate_linear_game,
)

__all__ = [
    "DEFAULT_CUTOFF",
    "LayerVarianceRatio",
    "activation_variance_ratios",
    "energy_split",
    "format_variance_ratios",
    "heatmap",
    "line_plot",
    "plot_spectra",
    "plot_variance_ratios",
    "power_spectrum_2d",
    "radial_power_spectrum",
    "ring_index",
    "spectral_gap",
    "ClassLeakage",
    "GameEstimate",
    "LayerGradient",
    "LayerSpectralNorm",
    "LinearGameSimulation",
    "ar1_field",
    "ar1_phi",
    "ar1_phi_standard_error",
    "batch_statistics",
    "confusion",
    "conv_frequency_singular_values",
    "conv_operator_norm",
    "convergence_factor",
    "discriminator_gradient_flow",
    "estimate_game",
    "jacobian_spectral_norm",
    "layer_spectral_norms",
    "lr_scale_for_target",
    "lr_window",
    "max_stable_lr",
    "min_damping_for_target",
    "measure_leakage",
    "noise_floor",
    "normalized_shift",
    "orthogonality_deviation",
    "power_iteration_norm",
    "pure_mixed_difference",
    "simulate_linear_game",
]
