"""lightning-gan: advanced GANs as plain Lightning 2.x code, extensible through entry-point plugins.

Importing this package imports no plugin (and neither torch nor lightning until a name below is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"

_LAZY = {
    "GANModule": "lightning_gan.module",
    "ArchitectureSpec": "lightning_gan.interfaces",
    "AdversarialLoss": "lightning_gan.interfaces",
    "Discriminator": "lightning_gan.interfaces",
    "Generator": "lightning_gan.interfaces",
    "GrowableDiscriminator": "lightning_gan.interfaces",
    "GrowableGenerator": "lightning_gan.interfaces",
    "NetworkPair": "lightning_gan.interfaces",
    "PenaltyInputs": "lightning_gan.interfaces",
    "Regularizer": "lightning_gan.interfaces",
    "PhaseSchedule": "lightning_gan.phases",
    "register": "lightning_gan.registry",
    "get_registry": "lightning_gan.registry",
    "list_plugins": "lightning_gan.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lightning_gan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
