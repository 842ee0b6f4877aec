"""MetricsCallback follows the run's metrics (the model's, by default the data's) and their headline."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lightning_gan.callbacks import MetricsCallback
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.image import FID, KID
from lightning_gan.metrics.shapes import ShapesMetrics
from lightning_gan.metrics.swd import SWD


class _Images:
    """Just enough of an image datamodule for the metrics' setup checks."""

    data_shape = (3, 32, 32)

    def default_metrics(self) -> list[Any]:
        return ["swd"]


def _setup(callback: MetricsCallback, tmp_path, *, metrics: list | None) -> SimpleNamespace:
    data = _Images()
    defaults = [SWD()]
    module = SimpleNamespace(evaluate_metrics=None, kimg=0.0, metrics=metrics,
                             configured_metrics=lambda dm: metrics if metrics is not None else defaults)
    trainer = SimpleNamespace(datamodule=data, log_dir=str(tmp_path))
    callback.setup(trainer, module, "fit")
    return SimpleNamespace(defaults=defaults)


def test_follows_the_data_with_its_own_sample_count_and_monitors_the_headline(tmp_path) -> None:
    callback = MetricsCallback(num_samples=300, every_n_kimg=1)
    run = _setup(callback, tmp_path, metrics=None)
    assert [type(m) for m in callback.metrics] == [SWD] and callback.metrics[0].num_samples == 300
    assert run.defaults[0].num_samples == 2048  # the model's own metric keeps its count
    assert (callback._monitor, callback._mode) == ("swd", "min")


def test_a_metric_pinned_by_the_model_keeps_its_count_and_explicit_monitors_win(tmp_path) -> None:
    pinned = SWD(num_samples=64)
    callback = MetricsCallback(num_samples=300, monitor="swd/32", every_n_kimg=1)
    _setup(callback, tmp_path, metrics=[pinned])
    assert callback.metrics == [pinned] and pinned.num_samples == 64
    assert (callback._monitor, callback._mode) == ("swd/32", "min")
    off = MetricsCallback(monitor=None, every_n_kimg=1)
    _setup(off, tmp_path, metrics=None)
    assert off._monitor is None


def test_headlines_of_the_shipped_metrics() -> None:
    from lightning_gan.metrics.selection import headline

    assert headline(ShapesMetrics(num_samples=10)) == ("shapes/fd", "min")
    assert headline(FID()) == ("fid", "min") and headline(KID()) == ("kid", "min")
    callback = MetricsCallback(metrics=[FID(), SWD()], every_n_kimg=1)
    assert (callback._monitor, callback._mode) == ("fid", "min")


@pytest.mark.parametrize(("pinned_in_callback", "hint"), [
    (True, "remove it from the MetricsCallback's metrics in the config"),
    (False, "use --model.metrics=null"),
])
def test_a_pinned_metric_that_cannot_serve_the_data_is_refused_in_one_line(tmp_path, pinned_in_callback, hint) -> None:
    if pinned_in_callback:
        callback, model_metrics = MetricsCallback(metrics=["shapes"], every_n_kimg=1), None
    else:
        callback, model_metrics = MetricsCallback(every_n_kimg=1), [ShapesMetrics(num_samples=10)]
    with pytest.raises(ConfigError) as info:
        _setup(callback, tmp_path, metrics=model_metrics)
    message = str(info.value)
    assert "\n" not in message and "'shapes'" in message and "_Images" in message
    assert hint in message and "(swd)" in message
