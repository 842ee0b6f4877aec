"""`lightning-gan generate` / `export` on a conditional DCGAN trained briefly on shapes (image outputs)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gan.checkpoint import load_generator
from lightning_gan.cli import main
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.metrics.base import generate_images
from lightning_gan.module import GANModule
from lightning_gan_dcgan.dcgan import DCGANArchitecture


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dcgan")
    arch = DCGANArchitecture(resolution=8, channels=3, c_dim=6, z_dim=8, base_channels=4, max_channels=16)
    module = GANModule(architecture=arch, metrics=[], ema_kimg=0.05)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp)
    trainer.fit(module, ShapesDataModule(resolution=8, num_samples=256, batch_size=32))
    path = tmp / "run.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def test_generate_writes_grid_truncation_classes_and_gif(checkpoint, tmp_path) -> None:
    path, _ = checkpoint
    out = tmp_path / "pictures"
    assert main(["generate", "--ckpt", str(path), "--out", str(out), "--seeds", "0-15", "--psi", "1,0.5,0",
                 "--frames", "3", "--keyframes", "2"]) == 0
    files = json.loads((out / "generate.json").read_text())["files"]
    # 8 px images upscaled x8; a grid cell is 8 px plus 2 px padding, plus 2 px border: 4 per row -> 42 px
    assert Image.open(files["samples"]).size == (42 * 8, 42 * 8)
    assert files["seeds"]["seeds"] == list(range(16)) and files["seeds"]["nrow"] == 4
    sweep = np.asarray(Image.open(files["truncation"]["file"]))  # 8 rows x 3 psi columns
    assert sweep.shape == ((2 + 8 * 10) * 8, (2 + 3 * 10) * 8, 3)
    assert files["truncation"]["method"].startswith("latent scaling")
    # psi = 0 scales every latent to 0: with the same class, rows 0 and 6 (seeds 0 and 6, class 0) are equal
    cell = lambda r, c: sweep[(2 + r * 10) * 8:(2 + r * 10 + 8) * 8, (2 + c * 10) * 8:(2 + c * 10 + 8) * 8]  # noqa: E731
    assert np.array_equal(cell(0, 2), cell(6, 2))
    assert not np.array_equal(cell(0, 0), cell(6, 0))
    classes = Image.open(files["classes"]["file"])
    assert classes.size == ((2 + 10 * 10) * 8, (2 + 6 * 10) * 8)  # 10 seeds per row, one row per class
    gif = Image.open(files["interpolation"]["file"])
    assert gif.n_frames == 2 * 3


def test_export_of_an_image_generator_reproduces_its_samples(checkpoint, tmp_path) -> None:
    path, module = checkpoint
    out = tmp_path / "G.safetensors"
    assert main(["export", "--ckpt", str(path), "--out", str(out)]) == 0
    labels = torch.arange(40) % 6
    a = generate_images(module.generator_ema, 40, seed=2, labels=labels)
    b = generate_images(load_generator(out), 40, seed=2, labels=labels)
    assert torch.equal(a, b)  # BatchNorm running statistics travel too (eval mode)
