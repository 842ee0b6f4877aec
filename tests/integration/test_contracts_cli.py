"""A stranger's broken plugins and a run whose plugin was uninstalled, through `lightning-gan` in a subprocess:
every mistake ends in one `lightning-gan: error:` line and a non-zero exit status, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import isolated_env, run_process  # tests/conftest.py

pytestmark = pytest.mark.slow

PLUGIN_SOURCE = '''
import torch
from lightning_gan.interfaces import ArchitectureSpec, NetworkPair
from lightning_gan.regularizers import R2
from lightning_gan.testing.tiny import TinyArchitecture, TinyDiscriminator, TinyGenerator


class OkArchitecture(TinyArchitecture):
    """Works: the run whose plugin is later uninstalled."""


class WideGenerator(TinyGenerator):
    def forward(self, z, c=None):
        out = super().forward(z, c)
        return torch.cat([out, out[:, :1]], dim=1)  # declares (2,), makes [N, 3]


class ColumnDiscriminator(TinyDiscriminator):
    def forward(self, x, c=None):
        return super().forward(x, c)[:, None]  # [N, 1] instead of [N]


class NaNGenerator(TinyGenerator):
    def __init__(self, *, after, **kwargs):
        super().__init__(**kwargs)
        self.after, self.calls = after, 0

    def forward(self, z, c=None):
        out = super().forward(z, c)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


class WideArchitecture(TinyArchitecture):
    def build(self):
        return NetworkPair(WideGenerator(z_dim=self.z_dim, data_dim=self.data_dim, hidden=self.hidden),
                           super().build().discriminator)


class ColumnArchitecture(TinyArchitecture):
    def build(self):
        return NetworkPair(super().build().generator, ColumnDiscriminator(data_dim=self.data_dim, hidden=self.hidden))


class NaNArchitecture(TinyArchitecture):
    def __init__(self, *, after: int = 0):
        super().__init__()
        self.after = after

    def build(self):
        return NetworkPair(NaNGenerator(after=self.after, z_dim=self.z_dim, data_dim=self.data_dim, hidden=self.hidden),
                           super().build().discriminator)


class ForgetfulArchitecture(ArchitectureSpec):
    def __init__(self, *, width: int = 8):
        self._width = width  # not kept as `self.width`

    def build(self):
        return TinyArchitecture(hidden=self._width).build()


class Every8(R2):
    """R2 that the plugin runs lazily every 8 iterations."""

    def __init__(self, *, gamma: float = 0.1, interval: int = 8):
        super().__init__(gamma=gamma, interval=interval)
'''

CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: -1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  log_every_n_steps: 50
  default_root_dir: {root}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/checkpoints}}
model:
  architecture: broken_ok
  total_kimg: 1
data:
  class_path: toy2d
  init_args: {{num_samples: 1000, batch_size: 100}}
"""


def plugin_site(root: Path) -> Path:
    """An installed distribution `broken-gan 0.2` (module `broken_gan`) with entry points for each variant."""
    site = root / "site"
    info = site / "broken_gan-0.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gan\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [lightning_gan.architectures]
        broken_ok = broken_gan:OkArchitecture
        broken_wide = broken_gan:WideArchitecture
        broken_column = broken_gan:ColumnArchitecture
        broken_nan = broken_gan:NaNArchitecture
        broken_forgetful = broken_gan:ForgetfulArchitecture
        [lightning_gan.regularizers]
        every8 = broken_gan:Every8
        """))
    (site / "broken_gan.py").write_text(PLUGIN_SOURCE)
    return site


def run(args: list[str], cwd: Path, site: Path | None = None) -> subprocess.CompletedProcess:
    env = isolated_env(cwd)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return run_process([sys.executable, "-m", "lightning_gan.cli", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `lightning-gan: error:` line of a failed command (exit status 2, no traceback)."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("lightning-gan: error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--model.architecture=broken_wide"],
     "WideGenerator (architecture WideArchitecture) declares output_shape (2,) but returned a tensor of shape "
     "[100, 3]; make forward return [N, *output_shape] or declare the shape it makes"),
    (["--model.architecture=broken_column"],
     "ColumnDiscriminator (architecture ColumnArchitecture) returned logits of shape [100, 1] for 100 samples; "
     "a discriminator returns one logit per sample, shape [N] = [100]"),
    (["--model.architecture=broken_nan"],  # 10 iterations, fewer than the log interval (50)
     "NaNGenerator's output is NaN/inf on its first call, before any update; check the network's initialisation"),
    (["--model.architecture=broken_nan", "--model.architecture.after=6"],  # NaN from iteration 3 (2 G calls each)
     "Non-finite loss/Dmain, loss/Gmain, logits/real, logits/fake at an iteration in 1-9 (1.0 kimg): the game "
     "diverged"),
    (["--model.architecture=broken_forgetful"],
     "ForgetfulArchitecture must keep its constructor argument 'width' as an attribute of the same name so that "
     "it can be saved and rebuilt: add `self.width = width` to its __init__"),
    (["--model.regularizers+=every8", "--trainer.callbacks+=lightning_gan.callbacks.LazyR1",
      "--trainer.callbacks.interval=4"],
     "Lazy regularizers of the discriminator must share one interval (one interval per network: one Dreg phase), "
     "got Every8(interval=8), R1(interval=4); give them the same interval"),
])
def test_broken_plugins_end_in_one_line_and_a_failed_run(tmp_path, args, expected) -> None:
    site = plugin_site(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "run"))
    result = run(["fit", "--config", str(config), *args], tmp_path, site)
    assert expected in one_error_line(result)
    run_dir = tmp_path / "run"
    assert not list(run_dir.rglob("*.ckpt")) and not list(run_dir.rglob("metrics.json"))  # no results of a failed run


def test_a_run_whose_plugin_is_not_installed(tmp_path) -> None:
    """Train and export with the plugin installed, then use the files where it is not: each command names the
    class and the distribution to install (recorded in the checkpoint and the export) in one line."""
    site = plugin_site(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "run"))
    fit = run(["fit", "--config", str(config)], tmp_path, site)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("*.ckpt")
    export = run(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "G.safetensors")], tmp_path, site)
    assert export.returncode == 0, export.stderr[-3000:]
    assert json.loads((tmp_path / "G.json").read_text())["plugins"] == {"broken_gan.OkArchitecture": "broken-gan 0.2"}

    needs = ("needs the architecture broken_gan.OkArchitecture from the plugin distribution broken-gan, which is not "
             "installed (the run used 0.2); install it (pip install broken-gan) and run again")
    for command in (["evaluate", "--ckpt", str(ckpt)], ["generate", "--ckpt", str(ckpt)],
                    ["export", "--ckpt", str(ckpt)], ["diagnose", "--ckpt", str(ckpt)],
                    ["evaluate", "--ckpt", str(tmp_path / "G.safetensors")],
                    ["fit", "--config", str(config), "--model.architecture=mlp", f"--ckpt_path={ckpt}"]):
        line = one_error_line(run(command, tmp_path))  # no site: the plugin is not installed
        source = tmp_path / "G.safetensors" if "G.safetensors" in command[-1] else ckpt
        assert line == f"lightning-gan: error: {source} {needs}", command

    # and in Python (this process never imported the plugin)
    from lightning_gan.checkpoint import MissingPluginError, load_generator

    assert "broken_gan" not in sys.modules
    with pytest.raises(MissingPluginError, match="pip install broken-gan"):
        load_generator(tmp_path / "G.safetensors")
