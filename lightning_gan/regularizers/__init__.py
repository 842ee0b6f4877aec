"""Built-in regularizers (registered in ``lightning_gan.regularizers`` through the core's entry points)."""

from lightning_gan.regularizers.gradient import R1, R2, GradientPenalty, input_gradient_sq_norm
from lightning_gan.regularizers.lecam import LeCam, lecam_penalty
from lightning_gan.regularizers.orthogonal import OrthogonalRegularization, orthogonal_penalty, regularized_weights

__all__ = ["R1", "R2", "GradientPenalty", "LeCam", "OrthogonalRegularization", "input_gradient_sq_norm",
           "lecam_penalty", "orthogonal_penalty", "regularized_weights"]
