"""OverfittingMonitor: its figures against their definitions, the warning for a discriminator that memorizes its
training images (and none for one that does not), the held-out splits of the datamodules, and a real fit."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from conftest import make_trainer  # tests/conftest.py
from lightning_gan.callbacks.overfitting import OverfittingMonitor, overfitting_figures, separation
from lightning_gan.data.image_folder import ImageFolderDataModule
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Discriminator
from lightning_gan.module import GANModule
from lightning_gan.testing import TinyGrowableArchitecture


def test_figures_follow_their_definitions() -> None:
    train, heldout, fake = torch.tensor([2.0, 4.0, -1.0]), torch.tensor([1.0, -2.0]), torch.tensor([-3.0, 1.0, -4.0])
    f = overfitting_figures(train, heldout, fake)
    assert f["d_train"] == pytest.approx(5 / 3) and f["d_heldout"] == pytest.approx(-0.5)
    assert f["d_fake"] == pytest.approx(-2.0)
    assert f["acc_train"] == pytest.approx(2 / 3) and f["acc_heldout"] == pytest.approx(0.5)
    assert f["acc_fake"] == pytest.approx(2 / 3)
    assert f["gap"] == pytest.approx(5 / 3 + 0.5)
    assert f["relative_gap"] == pytest.approx((5 / 3 + 0.5) / (5 / 3 + 2.0))
    assert math.isnan(overfitting_figures(torch.ones(2), torch.ones(2), torch.ones(2))["relative_gap"])
    # pairs (train, fake) with train > fake: 2 beats all 3, 4 all 3, -1 two of them (-3, -4): 8 of 9
    assert f["separation"] == pytest.approx(8 / 9)
    assert separation(torch.ones(2), torch.ones(3)) == 0.5  # ties count one half
    assert separation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, -1.0])) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_a_ratio_of_noise_is_not_called_memorizing() -> None:
    """D's outputs on training reals and fakes a hair apart (0.044 vs 0.042 over a spread of +-1): relative_gap
    reads 900% but D separates nothing (separation about 0.5), so the monitor does not warn; the same gap with
    the sets 4 apart does."""
    spread = torch.linspace(-1.0, 1.0, 201)
    noise = overfitting_figures(spread + 0.0443, spread + 0.0443 - 0.018, spread + 0.0424)
    assert noise["relative_gap"] == pytest.approx(0.018 / 0.0019, rel=1e-3) and abs(noise["separation"] - 0.5) < 0.01
    real = overfitting_figures(spread + 2.0, spread + 2.0 - 3.0, spread - 2.0)
    assert real["relative_gap"] == pytest.approx(0.75) and real["separation"] == 1.0
    for figures, warns in ((noise, False), (real, True)):
        monitor = OverfittingMonitor(every_n_kimg=1.0)
        monitor.measure = lambda trainer, module, figures=figures: figures  # noqa: ARG005
        module = SimpleNamespace(kimg=3.0, log_dict=lambda values, **kw: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monitor.on_train_batch_end(SimpleNamespace(), module, None, None, 0)
        assert monitor.warned is warns
        assert any("D is memorizing" in str(w.message) for w in caught) is warns


class Memorizer(Discriminator):
    """+1 on the images it was given (within 1e-4), -1 on anything else: a discriminator that memorized them."""

    def __init__(self, images: Tensor) -> None:
        super().__init__(input_shape=tuple(images.shape[1:]))
        self.register_buffer("images", images.flatten(1))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        distance = torch.cdist(x.flatten(1).double(), self.images.double()).min(1).values
        return torch.where(distance < 1e-4, 1.0, -1.0)


class Brightness(Discriminator):
    """The mean pixel: the same on training and held-out images of one distribution."""

    def __init__(self) -> None:
        super().__init__(input_shape=(3, 8, 8))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return x.mean((1, 2, 3)) + 1.0


def _stubs(datamodule, discriminator):  # noqa: ANN001, ANN202
    torch.manual_seed(0)  # the generator's initial weights, whatever tests ran before in this process
    generator = TinyGrowableArchitecture(resolutions=(4, 8), width=4, channels=3).build().generator
    logged: dict[str, float] = {}
    module = SimpleNamespace(generator=generator, discriminator=discriminator, device=torch.device("cpu"), kimg=0.0,
                             log_dict=lambda values, **kw: logged.update(values))
    trainer = SimpleNamespace(datamodule=datamodule, log_dir=None, is_global_zero=True)
    return trainer, module, logged


def test_a_memorizing_discriminator_is_flagged_once_and_an_honest_one_is_not() -> None:
    data = ShapesDataModule(resolution=8, num_samples=64, holdout=32, batch_size=16)
    data.setup("fit")
    monitor = OverfittingMonitor(num_images=32, every_n_kimg=1.0)
    trainer, module, logged = _stubs(data, None)
    monitor.setup(trainer, module, "fit")
    training_images = data.train_dataset.__getitems__(list(range(64)))[0]
    module.discriminator = Memorizer(training_images)
    with pytest.warns(UserWarning, match=r"D is memorizing the training images: at 0.0 kimg .* 100% .*--model.augment=ada"):
        monitor.on_train_batch_end(trainer, module, None, None, 0)
    assert logged["overfit/d_train"] == 1.0 and logged["overfit/d_heldout"] == -1.0
    assert logged["overfit/relative_gap"] == 1.0 and logged["overfit/acc_heldout"] == 0.0
    module.kimg = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per run
        monitor.on_train_batch_end(trainer, module, None, None, 1)
    assert [h["kimg"] for h in monitor.history] == [0.0, 1.0]

    class Inverted(Memorizer):  # ranks fakes above reals: the ratio is 1 but says nothing about memorizing
        def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
            return -super().forward(x, c)

    inverted = OverfittingMonitor(num_images=32)
    module.discriminator, module.kimg = Inverted(training_images), 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inverted.on_train_batch_end(trainer, module, None, None, 0)
    assert inverted.history[0]["relative_gap"] == 1.0 and not inverted.warned

    honest = OverfittingMonitor(num_images=32)
    module.discriminator = Brightness()
    figures = honest.measure(trainer, module)
    assert abs(figures["gap"]) < 0.1 * abs(figures["d_train"] - figures["d_fake"])
    assert honest.state_dict()["warned"] is False


def test_the_monitor_needs_held_out_images() -> None:
    trainer, module, _ = _stubs(ShapesDataModule(resolution=8, num_samples=64, batch_size=16), Brightness())
    with pytest.raises(ConfigError, match=r"--data.init_args.holdout=N"):
        OverfittingMonitor().setup(trainer, module, "fit")
    with pytest.raises(TypeError):
        Toy2DDataModule(holdout=3)  # data without a held-out split does not take the option


def test_held_out_images_are_never_training_images(tmp_path) -> None:
    shapes = ShapesDataModule(resolution=8, num_samples=50, holdout=20, batch_size=10)
    shapes.setup("fit")
    train = shapes.train_dataset.__getitems__(list(range(50)))[0].flatten(1)
    held = shapes.heldout_dataset.__getitems__(list(range(20)))[0].flatten(1)
    assert len(shapes.train_dataset) == 50 and torch.cdist(held, train).min() > 0.1  # fresh draws, same classes
    assert set(shapes.heldout_dataset.labels.tolist()) <= set(range(6))

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    folder = ImageFolderDataModule(path=str(tmp_path), resolution=8, holdout=4, mirror=True, batch_size=2)
    folder.setup("fit")
    assert len(folder.heldout_dataset.files) == 4 and len(folder.train_dataset.files) == 8
    assert not set(folder.heldout_dataset.files) & set(folder.train_dataset.files)
    assert len(folder.train_dataset) == 16 and len(folder.heldout_dataset) == 4  # held-out images not mirrored
    with pytest.raises(ConfigError, match="holdout=12 would keep every one of the 12 images"):
        ImageFolderDataModule(path=str(tmp_path), resolution=8, holdout=12).setup("fit")


def test_a_fit_logs_the_figures_and_draws_the_curves(tmp_path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8), width=4, channels=3), metrics=[],
                       total_kimg=0.3)
    monitor = OverfittingMonitor(every_n_kimg=0.1, num_images=16)
    trainer = make_trainer(tmp_path, max_epochs=-1, callbacks=[monitor], logger=CSVLogger(tmp_path))
    trainer.fit(module, ShapesDataModule(resolution=8, num_samples=200, holdout=16, batch_size=20))
    assert [round(h["kimg"], 2) for h in monitor.history] == [0.02, 0.1, 0.2, 0.3]
    assert {"overfit/d_train", "overfit/relative_gap"} <= set(trainer.callback_metrics)
    # every measurement reaches the logger at its own step (iterations 0, 4, 9, 14; the Trainer logs every 50th)
    import csv

    rows = [r for r in csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")) if r.get("overfit/d_train")]
    assert [float(r["overfit/d_train"]) for r in rows] == pytest.approx([h["d_train"] for h in monitor.history])
    assert [int(r["step"]) for r in rows] == sorted({int(r["step"]) for r in rows})
    assert monitor.plot_path is not None and monitor.plot_path.is_file()
    assert Image.open(monitor.plot_path).size[0] > 100
