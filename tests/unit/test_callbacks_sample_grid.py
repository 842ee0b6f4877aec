"""SampleGrid: which files a real tiny fit writes, fixed seeds, grid layouts, logger hand-off, resume state."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from PIL import Image
from torch import Tensor, nn

from lightning_gan import GANModule
from lightning_gan.callbacks import SampleGrid
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.interfaces import ArchitectureSpec, Discriminator, Generator, NetworkPair

TINY_MLP = {"class_path": "mlp", "init_args": {"g_hidden": 16, "g_depth": 1, "d_hidden": 16, "d_depth": 1}}


class RecordingLogger(Logger):
    """A logger with ``log_image`` (like WandbLogger) that records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, Image.Image, int | None, list[str]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        self.images.append((key, images[0], step, kwargs["caption"]))


def _fit(tmp_path: Path, callbacks: list, *, max_epochs: int = 1, ckpt_path: str | None = None,
         loggers: list | None = None) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(max_epochs=max_epochs, logger=loggers or CSVLogger(tmp_path), accelerator="cpu",
                      enable_model_summary=False, enable_progress_bar=False, callbacks=callbacks,
                      enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                      num_sanity_val_steps=0, limit_val_batches=0)
    module = GANModule(architecture=TINY_MLP, metrics=[], ema_kimg=1.0)
    trainer.fit(module, Toy2DDataModule(num_samples=2000, batch_size=200), ckpt_path=ckpt_path)
    return trainer


def test_fit_writes_the_predicted_files_and_logs_them(tmp_path):
    # 2000 points in batches of 200: kimg 0.2, 0.4, ..., 2.0. Thresholds every 0.5 kimg are reached at
    # 0.6 (>= 0.5), 1.0, 1.6 (>= 1.5) and 2.0; the end of fit adds final.png (2.0 is already written).
    grid = SampleGrid(every_n_kimg=0.5, num_points=500, num_real_points=300)
    recorder = RecordingLogger()
    trainer = _fit(tmp_path, [grid], loggers=[CSVLogger(tmp_path), recorder])
    out = Path(trainer.log_dir) / "samples"
    expected = ["kimg00000.6.png", "kimg00001.0.png", "kimg00001.6.png", "kimg00002.0.png", "final.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert [p.name for p in grid.paths] == expected and grid.last_path == out / "final.png"
    assert grid.last_kimg == pytest.approx(2.0)
    with Image.open(grid.last_path) as img:
        assert img.size == (640, 650) and img.mode == "RGB"
    # The final picture is the one written at 2.0 kimg, unchanged (same EMA generator, same seed).
    assert np.array_equal(np.asarray(Image.open(out / "final.png")), np.asarray(Image.open(out / "kimg00002.0.png")))
    # Loggers that take images get every picture, stepped like their scalars (2 optimizer steps per iteration).
    assert [step for _, _, step, _ in recorder.images] == [6, 10, 16, 20, 20]
    assert [cap for *_, cap in recorder.images][0] == ["kimg 0.6"]


def test_resume_continues_after_the_last_picture(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = SampleGrid(every_n_kimg=0.8, num_points=200, num_real_points=100)
    _fit(tmp_path, [first, ckpt])
    assert [p.name for p in first.paths] == ["kimg00000.8.png", "kimg00001.6.png", "kimg00002.0.png", "final.png"]

    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)  # plain data only
    assert saved["callbacks"][first.state_key] == {"last_kimg": pytest.approx(1.6)}  # saved at the end of epoch 0

    second = SampleGrid(every_n_kimg=0.8, num_points=200, num_real_points=100)
    assert second.state_key == first.state_key
    trainer = _fit(tmp_path, [second], max_epochs=2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # The run goes on from 2.0 kimg to 4.0: the next threshold after the last picture (1.6) is 2.4.
    assert [p.name for p in second.paths] == ["kimg00002.4.png", "kimg00003.2.png", "kimg00004.0.png", "final.png"]
    assert Path(trainer.log_dir).name == "version_1"


def test_state_dict_round_trip_and_thresholds():
    grid = SampleGrid(every_n_kimg=0.5)
    assert grid.state_dict() == {"last_kimg": None}
    grid.load_state_dict({"last_kimg": 1.0})
    assert grid.last_kimg == 1.0
    module = SimpleNamespace(kimg=1.2)
    grid.on_train_start(None, module)  # type: ignore[arg-type]
    assert grid._next_kimg == pytest.approx(1.5)
    # A callback reused on a fresh run (its last picture lies ahead of the module) starts over.
    grid.on_train_start(None, SimpleNamespace(kimg=0.0))  # type: ignore[arg-type]
    assert grid._next_kimg == pytest.approx(0.5)
    assert math.isinf(SampleGrid(every_n_kimg=None)._threshold_after(3.0))
    assert SampleGrid(every_n_kimg=0.1)._threshold_after(0.1 * 3) == pytest.approx(0.4)  # float-safe
    assert SampleGrid(seed=1).state_key != SampleGrid(seed=2).state_key


def test_fixed_seed_gives_the_same_picture_without_touching_global_rng():
    dm = Toy2DDataModule(num_samples=500)
    dm.setup("fit")
    module = GANModule(architecture=TINY_MLP, metrics=[])
    grid = SampleGrid(num_points=300, num_real_points=200)
    state = torch.get_rng_state()
    first = np.asarray(grid.render(module, datamodule=dm, kimg=1.0))
    second = np.asarray(grid.render(module, datamodule=dm, kimg=1.0))
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(first, second)
    other = np.asarray(SampleGrid(num_points=300, num_real_points=200, seed=5).render(module, datamodule=dm, kimg=1.0))
    assert not np.array_equal(first, other)


# -- image generators ----------------------------------------------------------------------------
class _ImageGenerator(Generator):
    def __init__(self, *, c_dim: int, channels: int, resolution: int) -> None:
        super().__init__(z_dim=4, c_dim=c_dim, output_shape=(channels, resolution, resolution))
        self.fc = nn.Linear(4, channels * resolution * resolution)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return torch.tanh(self.fc(z)).view(-1, *self.output_shape)  # ignores c on purpose


class _ImageDiscriminator(Discriminator):
    def __init__(self, *, c_dim: int, shape: tuple[int, ...]) -> None:
        super().__init__(c_dim=c_dim, input_shape=shape)
        self.fc = nn.Linear(math.prod(shape), 1)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.fc(x.flatten(1)).squeeze(1)


class TinyImages(ArchitectureSpec):
    def __init__(self, *, c_dim: int = 0, channels: int = 3, resolution: int = 8) -> None:
        self.c_dim, self.channels, self.resolution = c_dim, channels, resolution

    def build(self) -> NetworkPair:
        g = _ImageGenerator(c_dim=self.c_dim, channels=self.channels, resolution=self.resolution)
        return NetworkPair(g, _ImageDiscriminator(c_dim=self.c_dim, shape=g.output_shape))


def test_image_grid_layout_unconditional():
    module = GANModule(architecture=TinyImages(channels=1), metrics=[])
    img = SampleGrid(num_images=6, nrow=3).render(module)
    assert img.mode == "L" and img.size == (2 + 3 * (8 + 2), 2 + 2 * (8 + 2))


def test_conditional_grid_has_one_row_per_class_with_shared_latents():
    module = GANModule(architecture=TinyImages(c_dim=3), metrics=[])
    img = np.asarray(SampleGrid(samples_per_class=4).render(module))
    assert img.shape == (2 + 3 * 10, 2 + 4 * 10, 3)
    rows = [img[2 + r * 10: 2 + r * 10 + 8] for r in range(3)]
    # The generator ignores c, so rows are equal exactly when each column keeps its latent across classes.
    assert np.array_equal(rows[0], rows[1]) and np.array_equal(rows[0], rows[2])
    assert not np.array_equal(rows[0][:, 2:10], rows[0][:, 12:20])  # columns differ


def test_unsupported_output_shape_fails_fast():
    module = GANModule(architecture={"class_path": "mlp", "init_args": {"data_dim": 5, "g_hidden": 8, "d_hidden": 8}})
    with pytest.raises(ValueError, match="images \\[C, H, W\\] with C = 1 or 3, or 2-D points"):
        SampleGrid().on_fit_start(SimpleNamespace(), module)  # type: ignore[arg-type]


def test_tensorboard_logger_gets_an_hwc_image():
    calls = []

    class FakeTensorBoard(TensorBoardLogger):
        @property
        def experiment(self) -> Any:
            return SimpleNamespace(add_image=lambda *a, **k: calls.append((a, k)))

    logger = object.__new__(FakeTensorBoard)  # tensorboard itself need not be installed
    trainer = SimpleNamespace(loggers=[logger], global_step=14)
    image = Image.new("RGB", (5, 4), (1, 2, 3))
    SampleGrid()._log_image(trainer, image, 1.5)  # type: ignore[arg-type]
    (args, kwargs), = calls
    assert args[0] == "samples" and args[1].shape == (4, 5, 3)
    assert kwargs == {"global_step": 14, "dataformats": "HWC"}
