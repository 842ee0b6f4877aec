"""The `lightning-gan` command in a subprocess: recipes, plugins, registry names, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import isolated_env, run_process  # tests/conftest.py
from lightning_gan import registry

pytestmark = pytest.mark.slow

TINY_FIT = ["--data.num_samples=1000", "--data.batch_size=100", "--model.total_kimg=1"]

STRANGER_SOURCE = '''
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import nn
from lightning_gan.interfaces import AdversarialLoss, ArchitectureSpec, Discriminator, Generator, NetworkPair


class LineG(Generator):
    def __init__(self):
        super().__init__(z_dim=2, output_shape=(2,))
        self.lin = nn.Linear(2, 2)

    def forward(self, z, c=None):
        return self.lin(z)


class LineD(Discriminator):
    def __init__(self, width):
        super().__init__(input_shape=(2,))
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x, c=None):
        return self.net(x).squeeze(1)


class StrangerArchitecture(ArchitectureSpec):
    def __init__(self, *, width: int = 8):
        self.width = width

    def build(self):
        return NetworkPair(LineG(), LineD(self.width))


class StrangerPrecision(Precision):
    """fp32 under another name: enough to prove the precision group is wired to --trainer.plugins."""


class StrangerLoss(AdversarialLoss):
    def generator_loss(self, fake_logits):
        return -fake_logits.mean()

    def discriminator_loss(self, real_logits, fake_logits):
        return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
'''


def stranger_site(root: Path, *, broken: bool = False) -> Path:
    """A stranger's installed package: a dist-info with entry points in two groups (plus a broken one)."""
    site = root / "site"
    info = site / "stranger_gan-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stranger-gan\nVersion: 0.3\n")
    eps = textwrap.dedent("""\
        [lightning_gan.architectures]
        stranger = stranger_gan:StrangerArchitecture
        [lightning_gan.losses]
        stranger_hinge = stranger_gan:StrangerLoss
        [lightning_gan.precision]
        stranger_fp32 = stranger_gan:StrangerPrecision
        """)
    if broken:
        eps += "[lightning_gan.regularizers]\nkaput = stranger_gan_missing:Nothing\n"
    (info / "entry_points.txt").write_text(eps)
    (site / "stranger_gan.py").write_text(STRANGER_SOURCE)
    return site


def run(args: list[str], cwd: Path, site: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = isolated_env(cwd)  # no Inception or other weights from this machine's caches, no cached classifier
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return run_process([sys.executable, "-m", "lightning_gan.cli", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)


def test_recipes_and_plugins_listing(tmp_path) -> None:
    recipes = run(["recipes"], tmp_path)
    assert recipes.returncode == 0, recipes.stderr
    assert "quickstart" in recipes.stdout and "dcgan-shapes32" in recipes.stdout

    site = stranger_site(tmp_path, broken=True)
    plugins = run(["plugins"], tmp_path, site)
    out = plugins.stdout
    for expected in ("architectures", "losses", "regularizers", "mlp", "dcgan", "hinge", "r1",
                     "stranger", "stranger_hinge", "stranger-gan 0.3", "kaput", "broken"):
        assert expected in out, expected
    assert plugins.returncode == 1  # a broken plugin makes the listing fail, after showing everything
    metadata_only = run(["plugins", "--no-load", "--group", "losses"], tmp_path, site)
    assert metadata_only.returncode == 0 and "not loaded" in metadata_only.stdout and "kaput" not in metadata_only.stdout


def test_fit_quickstart_with_registry_names_and_overrides(tmp_path) -> None:
    # the recipe's LazyR1 (every 4) and this R2 share the Dreg phase
    result = run(["fit", "--recipe", "quickstart", "--model.loss=hinge", "--model.regularizers+=r2",
                  "--model.regularizers.gamma=0.05", "--model.regularizers.interval=4",
                  f"--trainer.logger.init_args.save_dir={tmp_path}", *TINY_FIT], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "quickstart" / "version_0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iteration"] == 10 and metrics["kimg"] == pytest.approx(1.0)
    assert 0 <= metrics["coverage/modes"] <= 25 and 0 <= metrics["coverage/high_quality"] <= 1
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["loss"]["class_path"] == "lightning_gan.losses.adversarial.HingeLoss"
    assert config["model"]["regularizers"] == [
        {"class_path": "lightning_gan.regularizers.gradient.R2", "init_args": {"gamma": 0.05, "interval": 4}}]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "samples").glob("*.png"))
    assert "metrics.json" in result.stdout  # the summary says where things are

    # predict from the checkpoint: one sample per seed, from the EMA generator
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    predicted = run(["predict", "--recipe", "quickstart", f"--ckpt_path={ckpt}", "--data.num_predict=7",
                     f"--trainer.logger.init_args.save_dir={tmp_path / 'predict'}"], tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    import torch

    from lightning_gan.module import GANModule

    samples = torch.load(tmp_path / "predict" / "quickstart" / "version_0" / "predictions.pt", weights_only=True)
    module = GANModule.load_from_checkpoint(ckpt)
    expected = module.predict_step(torch.arange(7), 0)
    torch.testing.assert_close(samples, expected)

    # continue the finished run: the checkpoint's hyperparameters come back, but what the command
    # line sets explicitly (a longer total_kimg) wins
    resumed = run(["fit", "--recipe", "quickstart", f"--ckpt_path={ckpt}", "--model.total_kimg=2",
                   f"--trainer.logger.init_args.save_dir={tmp_path / 'resumed'}",
                   "--data.num_samples=1000", "--data.batch_size=100"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((tmp_path / "resumed" / "quickstart" / "version_0" / "metrics.json").read_text())
    assert metrics["iteration"] == 20 and metrics["kimg"] == pytest.approx(2.0)
    config = yaml.safe_load((tmp_path / "resumed" / "quickstart" / "version_0" / "config.yaml").read_text())
    assert config["model"]["loss"]["class_path"].endswith("HingeLoss")  # from the checkpoint


def test_print_config_resolves_names(tmp_path) -> None:
    result = run(["fit", "--recipe", "quickstart", "--model.architecture=mlp", "--model.architecture.g_hidden=32",
                  "--data=toy2d", "--data.kind=ring", "--print_config"], tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["model"]["architecture"]["class_path"] == "lightning_gan_dcgan.mlp.MLPArchitecture"
    assert config["model"]["architecture"]["init_args"]["g_hidden"] == 32
    assert config["data"]["class_path"] == "lightning_gan.data.toy2d.Toy2DDataModule"
    assert config["data"]["init_args"]["kind"] == "ring"


@pytest.mark.parametrize("args, expected", [
    (["--model.loss=hingee"], "Unknown loss 'hingee'. Did you mean 'hinge'? Available losses: hinge, least_squares"),
    (["--model.architecture=mpl"], "Unknown architecture 'mpl'. Did you mean 'mlp'?"),
    (["--data=toy3d"], "Unknown dataset 'toy3d'. Did you mean 'toy2d'?"),
    (["--model.ema_kimg=abc"], "--model.ema_kimg: expected float or None, got 'abc'"),
    (["--model.architecture.g_hiden=3"], "Option 'g_hiden' is not accepted by lightning_gan_dcgan.mlp.MLPArchitecture; did you mean 'g_hidden'"),
    (["--model.architecture.data_dim=3"], "The generator makes samples of shape (3,) but Toy2DDataModule yields (2,); "
                                          "set --model.architecture.data_dim=2."),
    (["--model.architecture.g_hidden=abc"], "--model.architecture.g_hidden: expected int, got 'abc'"),
    (["--trainer.enable_progress_bar=false"], "`enable_progress_bar=False` but found `GANProgressBar`"),
    (["--trainer.callbacks+=EarlyStoping"], "'EarlyStoping' is neither a registered name nor an imported class"),
    (["--ckpt_path=nope.ckpt"], "--ckpt_path: no checkpoint file at nope.ckpt"),
    (["--ckpt_path=evil.ckpt"], "refusing to load evil.ckpt: it holds pickled Python objects that could run code"),
    (["--model.metrics+=fid"], "Inception-v3 metrics (fid, kid, is, pr) need the weights file weights-inception-2015-12-05"),
    (["--model.metrics+=fdi"], "Unknown metric 'fdi'. Did you mean 'fid'"),
])
def test_bad_options_are_one_clear_line(tmp_path, args, expected) -> None:
    import torch

    torch.save({"state_dict": {}, "payload": Payload(str(tmp_path / "pwned"))}, tmp_path / "evil.ckpt")
    result = run(["fit", "--recipe", "quickstart", *args, *TINY_FIT,
                  f"--trainer.logger.init_args.save_dir={tmp_path}"], tmp_path)
    assert result.returncode == 2
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("lightning-gan: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists()


class Payload:
    """Unpickling it would create a folder: a stand-in for code in a malicious checkpoint."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.mark.parametrize("name", sorted(registry.get_registry("recipes").names()))
def test_every_shipped_recipe_builds_a_model_that_fits_its_data(name: str, tmp_path, monkeypatch) -> None:
    """Each recipe's YAML instantiates through the CLI (no typo in a key or a name) and its generator makes
    images of its datamodule's shape, with a condition of the data's class count when it is conditional."""
    from lightning_gan.cli import registry_names_in_jsonargparse
    from lightning_gan.lightning_cli import GANCLI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-gan"])  # the arguments are ours, not pytest's
    with registry_names_in_jsonargparse():
        cli = GANCLI(args=["--recipe", name, "--trainer.logger=false"], run=False)
    data, generator = cli.datamodule, cli.model.generator
    expected = tuple(data.data_shape)
    assert tuple(generator.output_shape) == expected
    c = None
    if generator.c_dim:
        if getattr(data, "path", None) != "REQUIRED":  # a folder recipe's classes come from the user's labels
            assert generator.c_dim == data.num_classes
        c = torch.nn.functional.one_hot(torch.tensor([0, 1]), generator.c_dim).float()
    generator.eval()
    with torch.no_grad():
        out = generator(torch.randn(2, generator.z_dim), c)
    assert out.shape == (2, *expected) and torch.isfinite(out).all()


def test_unknown_recipe(tmp_path) -> None:
    result = run(["fit", "--recipe", "quickstrat"], tmp_path)
    assert result.returncode == 2
    assert "Unknown recipe 'quickstrat'. Did you mean 'quickstart'?" in result.stderr


def test_strangers_plugins_by_name_from_cli_and_recipe(tmp_path) -> None:
    site = stranger_site(tmp_path)
    cli = run(["fit", "--recipe", "quickstart", "--model.architecture=stranger", "--model.architecture.width=4",
               "--model.loss=stranger_hinge", "--trainer.plugins=stranger_fp32",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'cli'}", *TINY_FIT], tmp_path, site)
    assert cli.returncode == 0, cli.stderr[-3000:]
    config = yaml.safe_load((tmp_path / "cli" / "quickstart" / "version_0" / "config.yaml").read_text())
    assert config["model"]["architecture"] == {"class_path": "stranger_gan.StrangerArchitecture", "init_args": {"width": 4}}
    assert config["model"]["loss"]["class_path"] == "stranger_gan.StrangerLoss"
    assert config["trainer"]["plugins"]["class_path"] == "stranger_gan.StrangerPrecision"

    recipe = tmp_path / "stranger.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        trainer:
          max_epochs: 1
          logger: false
          enable_progress_bar: false
          default_root_dir: {tmp_path / 'yaml'}
        model:
          architecture:
            class_path: stranger
            init_args: {{width: 6}}
          loss: stranger_hinge
          regularizers:
            - class_path: r1
              init_args: {{gamma: 0.1, interval: 2}}
        data:
          class_path: toy2d
          init_args: {{num_samples: 500, batch_size: 100}}
        """))
    from_yaml = run(["fit", "--config", str(recipe)], tmp_path, site)
    assert from_yaml.returncode == 0, from_yaml.stderr[-3000:]
    assert (tmp_path / "yaml" / "metrics.json").is_file()
