"""`lightning-gan diagnose` on real (tiny) run checkpoints, and the StabilityMonitor callback."""

from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from lightning_gan.analysis import convergence_factor, orthogonality_deviation
from lightning_gan.callbacks import StabilityMonitor
from lightning_gan.cli import main
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1
from lightning_gan.testing import TinyArchitecture

pytestmark = pytest.mark.slow


def _fit(tmp_path, module, data, **kwargs) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path, **kwargs)
    trainer.fit(module, data)
    return trainer


def test_diagnose_a_toy_run_matches_closed_forms(tmp_path, capsys) -> None:
    pl.seed_everything(0)
    module = GANModule(architecture=TinyArchitecture(hidden=16), regularizers=[R1(gamma=2.0, interval=4)], metrics=[])
    trainer = _fit(tmp_path, module, Toy2DDataModule(num_samples=200, batch_size=50))
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["diagnose", "--ckpt", str(ckpt), "--out", str(tmp_path / "d"), "--num-samples", "64"]) == 0
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    # every linear layer's sigma_max is its exact spectral norm (the EMA generator's weights)
    for net_name, net in (("generator", module.generator_ema), ("discriminator", module.discriminator)):
        modules = dict(net.named_modules())
        rows = report["layers"][net_name]["rows"]
        assert rows and all(r["kind"] == "linear" for r in rows)
        for r in rows:
            exact = torch.linalg.matrix_norm(modules[r["name"]].weight.detach().double(), ord=2).item()
            assert r["sigma_max"] == pytest.approx(exact, rel=1e-6)  # float32 weights, float64 reference
        assert report["layers"][net_name]["lipschitz_bound"] == pytest.approx(math.prod(r["sigma_max"] for r in rows))
    st = report["stability"]
    lr_d = 0.002 * 4 / 5  # the lazy-corrected learning rate the checkpoint's optimizer holds
    assert st["lr/D"] == pytest.approx(lr_d) and st["alpha"] == 2.0
    assert st["r/D"] == pytest.approx(convergence_factor(lr_d, 2.0, st["s_max"]))
    assert st["s_max"] == pytest.approx(st["jacobian_norm/D"] * st["jacobian_norm/G"])
    assert "spectra" not in report and any("not images" in n for n in report["notes"])
    assert set(report["gradient_flow"]) == {"non_saturating", "non_saturating + R1(2)", "hinge", "hinge + R1(2)"}
    for name in ("singular_values", "gradient_flow"):
        assert Image.open(report["plots"][name]).size[0] >= 600
    out = capsys.readouterr().out
    assert "linearized game" in out and "report.json" in out


def test_diagnose_an_image_run_reports_spectra_orthogonality_and_plots(tmp_path) -> None:
    pl.seed_everything(0)
    arch = {"class_path": "dcgan", "init_args": {"resolution": 16, "channels": 3, "z_dim": 16, "base_channels": 8,
                                                 "max_channels": 32}}
    module = GANModule(architecture=arch, metrics=[], ema_kimg=None)
    data = ShapesDataModule(resolution=16, channels=3, batch_size=32, num_samples=256)
    trainer = _fit(tmp_path, module, data, max_steps=8)
    ckpt = tmp_path / "dcgan.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["diagnose", "--ckpt", str(ckpt), "--num-samples", "64"]) == 0
    folder = tmp_path / "dcgan-diagnose"
    report = json.loads((folder / "report.json").read_text())
    sp = report["spectra"]
    for k in ("real", "generated"):
        assert sp[k]["low"] + sp[k]["high"] == pytest.approx(1.0)
    assert sp["real"]["low"] > 0.8  # shapes are structure-heavy
    assert sp["gap_decades"] > 0
    convs = [r for r in report["layers"]["discriminator"]["rows"] if r["kind"] == "conv2d"]
    assert convs and all(r["input_size"] for r in convs)
    modules = dict(module.discriminator.named_modules())
    first = convs[0]
    expected = orthogonality_deviation(modules[first["name"]].weight.detach().double(), tuple(first["input_size"]))
    assert first["orthogonality_deviation"] == pytest.approx(float(expected))
    assert set(report["autocorrelation"]) >= {"real", "generated"}
    assert -1 < report["autocorrelation"]["real"]["rows"] < 1
    for name in ("singular_values", "conv_frequency_sigma", "spectra", "gradient_flow"):
        assert (folder / f"{name}.png").is_file()
    assert report["stability"]["alpha"] == 0.0 and report["stability"]["r/D"] > 1  # undamped: never contracts


def test_diagnose_a_fresh_model_from_a_recipe_and_errors(tmp_path, capsys) -> None:
    assert main(["diagnose", "--config", "quickstart", "--out", str(tmp_path / "q"), "--num-samples", "32",
                 "--no-plots"]) == 0
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["r1_gamma"] == 0.1 and report["stability"]["alpha"] == 0.1  # the recipe's LazyR1
    assert report["plots"] == {}
    with pytest.raises(SystemExit) as info:
        main(["diagnose", "--ckpt", str(tmp_path / "missing.ckpt")])
    assert info.value.code == 2 and "no checkpoint file" in capsys.readouterr().err


def test_stability_monitor_logs_the_closed_form_and_warns_without_damping(tmp_path) -> None:
    pl.seed_everything(0)
    monitor = StabilityMonitor(every_n_kimg=0.1)
    module = GANModule(architecture=TinyArchitecture(hidden=8), regularizers=[R1(gamma=3.0)], metrics=[])
    trainer = _fit(tmp_path, module, Toy2DDataModule(num_samples=200, batch_size=50), callbacks=[monitor])
    v = monitor.last
    assert v["alpha"] == 3.0 and v["lr/D"] == pytest.approx(0.002)
    assert v["r/D"] == pytest.approx(convergence_factor(0.002, 3.0, v["s_max"]))
    assert v["sigma_max_layer/D"] == pytest.approx(max(
        torch.linalg.matrix_norm(m.weight.detach().double(), ord=2).item()
        for m in module.discriminator.modules() if isinstance(m, torch.nn.Linear)))
    assert trainer.callback_metrics["stability/r/D"].item() == pytest.approx(v["r/D"], rel=1e-5)
    assert monitor.state_dict()["next_kimg"] == pytest.approx(0.3)  # 0.2 kimg trained: measured at 0.05, 0.1, 0.2

    pl.seed_everything(0)
    module = GANModule(architecture=TinyArchitecture(hidden=8), metrics=[])
    with pytest.warns(UserWarning, match="undamped linear game never contracts"):
        _fit(tmp_path, module, Toy2DDataModule(num_samples=100, batch_size=50),
             callbacks=[StabilityMonitor(every_n_kimg=0.05)])
