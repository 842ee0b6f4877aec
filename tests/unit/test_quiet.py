"""lightning_gan.quiet: exactly Lightning's advertisements and its LeafSpec deprecation are silenced, nothing else."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

from lightning_gan.quiet import _RANK_ZERO_LOGGERS, _TIP_FILTER, silence_dependency_noise

PYTREE = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead."


@pytest.fixture
def silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        silence_dependency_noise()
        silence_dependency_noise()  # idempotent
        yield
    for name in _RANK_ZERO_LOGGERS:
        logging.getLogger(name).removeFilter(_TIP_FILTER)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_lightning_tips_are_dropped_and_other_info_passes(silenced: None) -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        assert logger.filters.count(_TIP_FILTER) == 1
        records = _Records()
        logger.addHandler(records)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
            logger.info("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]")
            logger.info("GPU available: False, used: False")
            logger.info("A Tip: in the middle is not an advertisement")
        finally:
            logger.removeHandler(records)
            logger.setLevel(level)
        assert records.messages == ["GPU available: False, used: False", "A Tip: in the middle is not an advertisement"]


def test_only_lightnings_leafspec_future_warning_is_ignored(silenced: None) -> None:
    def warn(message: str, category: type[Warning], module: str) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn_explicit(message, category, filename=f"{module.replace('.', '/')}.py", lineno=21,
                                   module=module)
        return [str(w.message) for w in caught]

    assert warn(PYTREE, FutureWarning, "lightning.pytorch.utilities._pytree") == []
    assert warn(PYTREE, FutureWarning, "pytorch_lightning.utilities._pytree") == []
    # the same text from anywhere else, another category, or another deprecation from Lightning: still shown
    assert warn(PYTREE, FutureWarning, "my_package.trees") == [PYTREE]
    assert warn(PYTREE, DeprecationWarning, "lightning.pytorch.utilities._pytree") == [PYTREE]
    assert warn("`foo` is deprecated", FutureWarning, "lightning.pytorch.utilities._pytree") == ["`foo` is deprecated"]
    assert warn("something useful", UserWarning, "lightning.pytorch.trainer") == ["something useful"]
