"""Testing kit for plugin authors: conformance checks and a tiny architecture for fast tests.

``check_architecture``, ``check_growable``, ``check_loss``, ``check_regularizer``, ``check_augmentation``,
``check_precision``,
``check_datamodule``, ``check_metric`` and ``check_recipe`` exercise a plugin (or a recipe) the way
lightning-gan uses it and raise ``ConformanceError`` (an ``AssertionError``) naming the broken
promise; ``TinyArchitecture`` is a few-parameter MLP pair on vectors to test losses, regularizers,
callbacks and the training loop against, ``TinyGrowableArchitecture`` a small convolutional pair on
images that grows progressively (4 -> 8 -> 16 px by default).
"""

from lightning_gan.testing.conformance import (
    ConformanceError,
    check_architecture,
    check_augmentation,
    check_datamodule,
    check_growable,
    check_loss,
    check_metric,
    check_precision,
    check_recipe,
    check_regularizer,
)
from lightning_gan.testing.tiny import (
    TinyArchitecture,
    TinyDiscriminator,
    TinyGenerator,
    TinyGrowableArchitecture,
    TinyGrowableDiscriminator,
    TinyGrowableGenerator,
)

__all__ = [
    "ConformanceError",
    "TinyArchitecture",
    "TinyDiscriminator",
    "TinyGenerator",
    "TinyGrowableArchitecture",
    "TinyGrowableDiscriminator",
    "TinyGrowableGenerator",
    "check_architecture",
    "check_augmentation",
    "check_datamodule",
    "check_growable",
    "check_loss",
    "check_metric",
    "check_precision",
    "check_recipe",
    "check_regularizer",
]
