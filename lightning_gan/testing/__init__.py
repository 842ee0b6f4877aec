"""Testing kit for plugin authors: conformance checks and a tiny architecture for fast tests.

``check_architecture``, ``check_loss`` and ``check_regularizer`` exercise a plugin the way
``GANModule`` uses it and raise ``ConformanceError`` (an ``AssertionError``) naming the broken
promise; ``TinyArchitecture`` is a few-parameter MLP pair on vectors to test losses, regularizers,
callbacks and the training loop against.
"""

from lightning_gan.testing.conformance import ConformanceError, check_architecture, check_loss, check_regularizer
from lightning_gan.testing.tiny import TinyArchitecture, TinyDiscriminator, TinyGenerator

__all__ = [
    "ConformanceError",
    "TinyArchitecture",
    "TinyDiscriminator",
    "TinyGenerator",
    "check_architecture",
    "check_loss",
    "check_regularizer",
]
