"""evaluate / generate / export on real (tiny) run checkpoints; safe loading; the metrics callback."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from lightning_gan.callbacks import MetricsCallback
from lightning_gan.checkpoint import UnsafeCheckpointError, load_checkpoint, load_generator, load_sampler
from lightning_gan.cli import main
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.base import generate_images
from lightning_gan.metrics.mode_coverage import ModeCoverage
from lightning_gan.module import GANModule
from lightning_gan.testing import TinyArchitecture


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    limit_val_batches=0, default_root_dir=tmp_path)
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny GAN trained for 2 epochs on toy2d, with EMA; its checkpoint and module."""
    tmp = tmp_path_factory.mktemp("run")
    module = GANModule(architecture=TinyArchitecture(hidden=16), metrics=[ModeCoverage(num_samples=300)],
                       ema_kimg=0.2)
    trainer = _trainer(tmp, max_epochs=2)
    trainer.fit(module, Toy2DDataModule(num_samples=400, batch_size=50, sigma=0.5))  # wide modes: non-zero coverage
    path = tmp / "run.ckpt"
    trainer.save_checkpoint(path)
    return path, module


class Evil:
    def __reduce__(self):
        import os

        return (os.mkdir, (self.target,))

    def __init__(self, target):
        self.target = str(target)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path) -> None:
    target = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "payload": Evil(target)}, bad)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)
    assert not target.exists()
    # and through a command: one line, exit status 2, nothing executed
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(bad)])
    assert exit_info.value.code == 2 and not target.exists()
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(ConfigError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_the_checkpoint_records_the_data_and_loads_the_ema_generator(run) -> None:
    path, module = run
    loaded = load_sampler(path)
    assert loaded.ema and loaded.info["kimg"] == pytest.approx(module.kimg)
    assert loaded.data["class_path"] == "lightning_gan.data.toy2d.Toy2DDataModule"
    assert loaded.data["init_args"]["num_samples"] == 400
    for a, b in zip(loaded.generator.state_dict().values(), module.generator_ema.state_dict().values()):
        assert torch.equal(a, b)
    trained = load_sampler(path, ema=False).generator
    assert not all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.generator.state_dict().values()))


def test_export_then_load_reproduces_samples_bit_for_bit(run, tmp_path, capsys) -> None:
    path, module = run
    out = tmp_path / "G.safetensors"
    assert main(["export", "--ckpt", str(path), "--out", str(out)]) == 0
    assert "bit for bit" in capsys.readouterr().out
    config = json.loads(out.with_suffix(".json").read_text())
    assert config["architecture"]["class_path"] == "lightning_gan.testing.tiny.TinyArchitecture"
    assert config["c_dim"] == 0 and config["output_shape"] == [2] and config["info"]["ema"] is True
    generator = load_generator(out)
    expected = generate_images(module.generator_ema, 64, seed=11)
    assert torch.equal(generate_images(generator, 64, seed=11), expected)
    # the config embedded in the safetensors header is enough on its own
    out.with_suffix(".json").unlink()
    assert torch.equal(generate_images(load_generator(out), 64, seed=11), expected)


def test_evaluate_prints_and_writes_the_metrics(run, tmp_path, capsys) -> None:
    path, module = run
    out = tmp_path / "m.json"
    assert main(["evaluate", "--ckpt", str(path), "--metrics", "coverage", "--num-samples", "500",
                 "--seed", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    # The same numbers as the metric computed directly on the module's EMA generator.
    expected = ModeCoverage(num_samples=500, seed=4).compute(module.generator_ema.eval(), Toy2DDataModule(sigma=0.5))
    assert expected["coverage/high_quality"] > 0
    assert {k: float(v) for k, v in record["metrics"].items()} == pytest.approx(expected)
    assert record["ema"] is True and record["kimg"] == pytest.approx(module.kimg)
    printed = capsys.readouterr().out
    assert "coverage/modes" in printed and str(out) in printed
    # default metrics: the run's configured ones (ModeCoverage with 300 samples)
    assert main(["evaluate", "--ckpt", str(path), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metric_configs"][0]["init_args"]["num_samples"] == 300


def test_evaluate_rejects_unknown_metrics_and_bad_data_args_in_one_line(run, capsys) -> None:
    path, _ = run
    for argv, needle in ((["--metrics", "fdi"], "Unknown metric 'fdi'"),
                         (["--data", "nonsense"], "KEY=VALUE")):
        with pytest.raises(SystemExit) as info:
            main(["evaluate", "--ckpt", str(path), *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_evaluate_set_names_only_real_options_of_a_metric(run, capsys) -> None:
    path, _ = run
    for argv, line in (
        (["--metrics", "coverage", "--set", "coverage.foo=1"],
         "--set: Coverage takes no 'foo'; its options are num_samples, seed"),
        (["--metrics", "coverage", "--set", "coverage.num_sample=1"],
         "--set: Coverage takes no 'num_sample'; did you mean 'num_samples'? its options are num_samples, seed"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["evaluate", "--ckpt", str(path), *argv])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"lightning-gan: error: {line}"]


def test_generate_writes_a_scatter_plot_for_points(run, tmp_path) -> None:
    path, _ = run
    assert main(["generate", "--ckpt", str(path), "--out", str(tmp_path / "g")]) == 0
    manifest = json.loads((tmp_path / "g" / "generate.json").read_text())
    assert Image.open(manifest["files"]["samples"]).size == (640, 650)


def test_metrics_callback_logs_history_keeps_the_best_and_resumes(tmp_path) -> None:
    def fit(max_epochs, ckpt_path=None):
        callback = MetricsCallback(metrics=[ModeCoverage(num_samples=200)], every_n_kimg=0.2,
                                   monitor="coverage/high_quality", mode="max", dirpath=tmp_path / "ckpt")
        save = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        trainer = _trainer(tmp_path, max_epochs=max_epochs, callbacks=[callback, save], enable_checkpointing=True)
        module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=0.1)
        trainer.fit(module, Toy2DDataModule(num_samples=200, batch_size=50), ckpt_path=ckpt_path)
        return callback

    first = fit(2)  # 0.4 kimg: evaluations at 0.2 and 0.4
    assert [h["kimg"] for h in first.history] == pytest.approx([0.2, 0.4])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["kimg"] for line in lines] == pytest.approx([0.2, 0.4])
    best = max(first.history, key=lambda h: h["coverage/high_quality"])
    assert first.best_value == best["coverage/high_quality"] and first.best_kimg == pytest.approx(best["kimg"])
    assert (tmp_path / "ckpt" / "best.ckpt").is_file()
    assert load_checkpoint(tmp_path / "ckpt" / "best.ckpt")["state_dict"]["_extra_state"]["images_seen"] == round(best["kimg"] * 1000)
    resumed = fit(3, ckpt_path=tmp_path / "ckpt" / "last.ckpt")  # continues: one more evaluation at 0.6
    assert [h["kimg"] for h in resumed.history] == pytest.approx([0.2, 0.4, 0.6])
