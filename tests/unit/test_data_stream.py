"""image_stream and `lightning-gan prepare`: the images of image_folder bit for bit, labels and shapes as there,
every image once per epoch, the data order continued exactly by a mid-epoch resume, one line without LitData."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gan.cli import main
from lightning_gan.data.image_folder import ImageFolderDataModule
from lightning_gan.errors import ConfigError

from lightning_gan.data.stream import META_FILE, ImageStreamDataModule
from lightning_gan.prepare import prepare

# CI installs the `stream` extra; without LitData only the test of its absence runs
needs_litdata = pytest.mark.skipif(importlib.util.find_spec("litdata") is None, reason="litdata is not installed")


def make_images(root: Path, n: int = 40, *, labelled: bool = True) -> Path:
    """``n`` random RGB PNGs of varied sizes (crop and resize both happen), half with transparency, in two
    subfolders, with StyleGAN's dataset.json (class = index % 3)."""
    rng = np.random.default_rng(0)
    labels = []
    for i in range(n):
        w, h = int(rng.integers(10, 20)), int(rng.integers(10, 20))
        mode = "RGBA" if i % 2 else "RGB"
        pixels = rng.integers(0, 256, size=(h, w, len(mode)), dtype=np.uint8)
        name = f"{'a' if i % 2 else 'b'}/{i:03d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode).save(root / name)
        labels.append([name, i % 3])
    if labelled:
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("stream")
    images = make_images(tmp / "images")
    prepare(input=str(images), output=str(tmp / "prepared"), resolution=8, channels=3)
    return images, tmp / "prepared"


@needs_litdata
def test_prepared_images_and_labels_equal_image_folders(prepared) -> None:
    images, out = prepared
    folder = ImageFolderDataModule(path=str(images), resolution=8, channels=3)
    folder.setup("fit")
    stream = ImageStreamDataModule(path=str(out))
    stream.setup("fit")
    assert stream.data_shape == folder.data_shape == (3, 8, 8)
    assert stream.num_classes == folder.num_classes == 3
    assert len(stream.train_dataset) == len(folder.train_dataset) == 40
    x_stream, y_stream = stream.train_dataset.__getitems__(list(range(40)))
    x_folder, y_folder = folder.train_dataset.__getitems__(list(range(40)))
    assert torch.equal(x_stream, x_folder)  # decoded, composited, cropped, resized, scaled: bit for bit
    assert torch.equal(y_stream, y_folder)


@needs_litdata
def test_greyscale_and_a_zip_prepare_like_image_folder(tmp_path) -> None:
    import shutil

    images = make_images(tmp_path / "images", n=12, labelled=False)
    archive = Path(shutil.make_archive(str(tmp_path / "images"), "zip", images))
    prepare(input=str(archive), output=str(tmp_path / "out"), resolution=4, channels=1)
    stream = ImageStreamDataModule(path=str(tmp_path / "out"), resolution=4, channels=1)
    folder = ImageFolderDataModule(path=str(archive), resolution=4, channels=1)
    folder.setup("fit")
    stream.setup("fit")
    assert stream.num_classes == 0 and stream.data_shape == (1, 4, 4)
    assert torch.equal(stream.train_dataset.__getitems__(list(range(12)))[0],
                       folder.train_dataset.__getitems__(list(range(12)))[0])
    with pytest.raises(ConfigError, match="prepared with resolution 4, not 8"):
        ImageStreamDataModule(path=str(tmp_path / "out"), resolution=8).setup("fit")


@needs_litdata
def test_an_epoch_serves_every_image_once_in_a_seeded_order(prepared) -> None:
    _, out = prepared
    labels_of_epoch = []
    for _ in range(2):
        loader = ImageStreamDataModule(path=str(out), batch_size=8, seed=3).train_dataloader()
        batches = list(loader)
        assert [tuple(x.shape) for x, _ in batches] == [(8, 3, 8, 8)] * 5
        labels_of_epoch.append(torch.cat([y for _, y in batches]))
        sums = sorted(float(x.double().sum()) for b, _ in batches for x in b)
    stream = ImageStreamDataModule(path=str(out))
    stream.setup("fit")
    everything = sorted(float(x.double().sum()) for x in stream.train_dataset.__getitems__(list(range(40)))[0])
    assert sums == pytest.approx(everything, abs=0)  # every image exactly once
    assert torch.equal(labels_of_epoch[0], labels_of_epoch[1])  # the same seed, the same order


class Recorder(pl.LightningModule):
    """Records the labels and the pixel sum of every image of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[list[int], list[float]]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((y.tolist(), x.double().sum(dim=(1, 2, 3)).tolist()))
        return (self.weight * x.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, default_root_dir=tmp_path, **kwargs)


@needs_litdata
def test_a_mid_epoch_checkpoint_continues_the_data_order_exactly(prepared, tmp_path) -> None:
    """Lightning saves the StreamingDataLoader's state in the checkpoint: saved after 2 of the second epoch's 5
    batches and resumed, the run sees the batches an uninterrupted run sees."""
    _, out = prepared
    full = Recorder()
    _trainer(tmp_path / "a", max_epochs=2).fit(full, ImageStreamDataModule(path=str(out), batch_size=8, seed=1))
    assert len(full.seen) == 10

    class SaveAt7(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 7:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    first = Recorder()
    _trainer(tmp_path / "b", max_epochs=2, callbacks=[SaveAt7()]).fit(
        first, ImageStreamDataModule(path=str(out), batch_size=8, seed=1))
    assert first.seen == full.seen
    second = Recorder()
    _trainer(tmp_path / "c", max_epochs=2).fit(second, ImageStreamDataModule(path=str(out), batch_size=8, seed=1),
                                               ckpt_path=tmp_path / "mid.ckpt")
    assert second.seen == full.seen[7:]  # the epoch's last 3 batches, not its first 3 again


def test_without_litdata_image_stream_and_prepare_end_in_one_line(monkeypatch, capsys, tmp_path) -> None:
    images = make_images(tmp_path / "images", n=4)
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / META_FILE).write_text(json.dumps({"resolution": 8, "channels": 3, "num_classes": 3,
                                                                "count": 4}))
    monkeypatch.setitem(sys.modules, "litdata", None)  # import litdata raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'lightning-gan\[stream\]'"):
        ImageStreamDataModule(path=str(tmp_path / "prepared"), batch_size=2).train_dataloader()
    status = main(["prepare", "--input", str(images), "--output", str(tmp_path / "x"), "--resolution", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "pip install 'lightning-gan[stream]'" in err[0]


@needs_litdata
def test_prepare_refuses_a_folder_that_holds_files_and_a_missing_input(prepared, capsys, tmp_path) -> None:
    images, out = prepared
    assert main(["prepare", "--input", str(images), "--output", str(out), "--resolution", "8"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["prepare", "--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "o"),
                 "--resolution", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightning-gan: error:")
    with pytest.raises(ConfigError, match="lightning-gan prepare"):
        ImageStreamDataModule(path=str(tmp_path / "nothing")).setup("fit")


SHARDS_SCRIPT = """
import sys, json, torch, lightning.pytorch as pl
sys.path.insert(0, {tests!r})
from test_data_stream import Recorder
from lightning_gan.data.stream import ImageStreamDataModule

class Dump(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        with open(f"{out}/rank{{trainer.global_rank}}.json", "w") as f:
            json.dump(pl_module.seen, f)

if __name__ == "__main__":
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Dump()])
    trainer.fit(Recorder(), ImageStreamDataModule(path={data!r}, batch_size=4, seed=2))
"""


@needs_litdata
@pytest.mark.slow
def test_two_processes_read_disjoint_shares_that_cover_the_data(prepared, tmp_path) -> None:
    """Under DDP every process streams its own images: 2 processes, one epoch of 40 images in batches of 4."""
    from conftest import run_process  # tests/conftest.py: the process group dies with the call

    _, out = prepared
    script = tmp_path / "shards.py"
    script.write_text(SHARDS_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path), data=str(out)))
    result = run_process([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shares = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 5  # 20 images per process, in batches of 4
    images = [sorted(v for _, sums in share for v in sums) for share in shares]
    stream = ImageStreamDataModule(path=str(out))
    stream.setup("fit")
    every = stream.train_dataset.__getitems__(list(range(40)))[0].double().sum(dim=(1, 2, 3)).tolist()
    assert sorted(images[0] + images[1]) == sorted(every)  # each image once, on one process
