"""Quiet first runs: drop the dependency messages that are noise to a user of the ``lightning-gan`` command.

The ``lightning-gan`` entry point calls :func:`silence_dependency_noise` once, before it imports Lightning.
It removes exactly these, each matched by its text and where it comes from, so that every other warning and
log line still reaches the user:

* Lightning's advertisements, logged at INFO level through its rank-zero loggers when a Trainer is built:
  ``💡 Tip: For seamless cloud logging ... litlogger ...`` and ``💡 Tip: For seamless cloud uploads ...
  litmodels ...``. A logging filter on those loggers drops records whose message starts with ``💡 Tip:``.
* torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised from Lightning's own
  ``lightning.pytorch.utilities._pytree`` (Lightning builds a ``LeafSpec``; nothing a user can change).
  The warnings filter matches that message, that category and that module only.

Nothing here imports torch or Lightning, so the cheap commands (``plugins``, ``recipes``) stay cheap.
Library use (``import lightning_gan``) changes no filter: only the command line calls this.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["LIGHTNING_TIP_PREFIX", "LightningTipFilter", "silence_dependency_noise"]

LIGHTNING_TIP_PREFIX = "\N{ELECTRIC LIGHT BULB} Tip:"

# The loggers Lightning's rank_zero_info writes through (lightning_utilities' function logs to whichever of
# these the last imported Lightning package installed), for both the unified and the standalone package.
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)

_PYTREE_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_PYTREE_MODULE = r"(lightning\.pytorch|pytorch_lightning)\.utilities\._pytree"


class LightningTipFilter(logging.Filter):
    """A logging filter that drops Lightning's ``💡 Tip: ...`` advertisements and passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for a record whose message starts with :data:`LIGHTNING_TIP_PREFIX`."""
        return not str(record.getMessage()).startswith(LIGHTNING_TIP_PREFIX)


_TIP_FILTER = LightningTipFilter()


def silence_dependency_noise() -> None:
    """Install the filters described in the module docstring (idempotent: calling it twice adds nothing)."""
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)
    warnings.filterwarnings("ignore", message=_PYTREE_MESSAGE, category=FutureWarning, module=_PYTREE_MODULE)
