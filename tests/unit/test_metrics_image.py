"""FID / KID / IS / precision-recall: against closed forms, a reference computation and hand-counted answers."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from lightning_gan.data.base import GANDataModule, TensorPairDataset
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, generate_images, iter_real, quantize
from lightning_gan.metrics.features import INCEPTION_FILE, InceptionV3Features, MissingWeightsError
from lightning_gan.metrics.image import (
    FID,
    KID,
    InceptionScore,
    PrecisionRecall,
    frechet_distance,
    inception_score,
    kernel_distance,
    precision_recall,
)


# -- feature-level functions ------------------------------------------------------------------------
def test_frechet_distance_matches_the_closed_form_for_gaussians() -> None:
    # Diagonal Gaussians: FID = |mu1 - mu2|^2 + sum_i (s1_i - s2_i)^2 (the covariances commute).
    g = torch.Generator().manual_seed(0)
    n, d = 200_000, 3
    mu1, s1 = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([1.0, 0.5, 2.0])
    mu2, s2 = torch.tensor([0.5, 1.0, 0.0]), torch.tensor([1.0, 1.5, 1.0])
    a = mu1 + s1 * torch.randn(n, d, generator=g, dtype=torch.float64)
    b = mu2 + s2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    expected = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())  # 1.25 + 2.0 = 3.25
    assert expected == pytest.approx(3.25)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def _poly_mmd_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Reference: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018, eq. for KID)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m = x.shape[0]
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())


def test_kid_is_the_unbiased_polynomial_mmd() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 4, generator=g, dtype=torch.float64) + 0.7
    # One subset holding every sample: KID is exactly the reference MMD^2 (std 0).
    mean, std = kernel_distance(x, y, subsets=1, subset_size=50)
    assert mean == pytest.approx(_poly_mmd_unbiased(x, y), rel=1e-9)
    assert std == 0.0
    # Same distribution: the unbiased estimate averages to ~0; a shift makes it clearly positive.
    a, b = torch.randn(2, 400, 4, generator=g, dtype=torch.float64)
    same, same_std = kernel_distance(a, b, subsets=50, subset_size=200)
    shifted, _ = kernel_distance(a, b + 1.0, subsets=50, subset_size=200)
    assert abs(same) < 3 * same_std / math.sqrt(50) + 0.02
    assert shifted > 20 * max(abs(same), 1e-3)


def test_inception_score_of_confident_balanced_and_collapsed_predictions() -> None:
    k, n = 5, 1000
    balanced = 50.0 * nn.functional.one_hot(torch.arange(n) % k, k).double()
    collapsed = 50.0 * nn.functional.one_hot(torch.zeros(n, dtype=torch.long), k).double()
    # exp(E KL(p(y|x) || p(y))) with one-hot p(y|x): exp(log K) = K when balanced, exp(0) = 1 when collapsed.
    assert inception_score(balanced, splits=1)[0] == pytest.approx(k, rel=1e-6)
    assert inception_score(collapsed, splits=1)[0] == pytest.approx(1.0, abs=1e-6)


def test_precision_recall_on_point_clouds_with_a_known_answer() -> None:
    # Real: x = 0..99 on a line. Generated: copies of x = 0..49 plus 50 points far away (x = 1000..1049).
    # k = 3: a generated copy's ball reaches its 3rd nearest generated neighbour: radius 2 inside the run,
    # 3 at its ends (x = 0 and x = 49). Precision: the 50 copies sit on real points, the far ones in no
    # real ball -> 50/100. Recall: real x = 0..49 are copies; x = 50, 51, 52 lie within 3 of x = 49;
    # x = 53 is 4 away -> 53/100.
    line = lambda xs: torch.stack([torch.tensor(xs, dtype=torch.float32), torch.zeros(len(xs))], dim=1)  # noqa: E731
    real = line(list(range(100)))
    fake = line(list(range(50)) + list(range(1000, 1050)))
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(0.50)
    assert recall == pytest.approx(0.53)


def test_feature_functions_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(FloatingPointError):
        frechet_distance(torch.full((5, 2), math.nan), torch.zeros(5, 2))


# -- metrics on generators, with a tiny extractor ------------------------------------------------------
class Images(GANDataModule):
    """2x4x4 'images' drawn from a fixed Gaussian (clamped to [-1, 1])."""

    def __init__(self, n: int = 2000, shift: float = 0.0) -> None:
        super().__init__(batch_size=100)
        g = torch.Generator().manual_seed(5)
        self.data_shape = (2, 4, 4)
        self.train_dataset = TensorPairDataset((0.3 * torch.randn(n, 2, 4, 4, generator=g) + shift).clamp(-1, 1),
                                               torch.zeros(n, dtype=torch.long))


class GaussianImages(Generator):
    """Samples the same distribution as ``Images`` (plus ``shift``); z is the image itself."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__(z_dim=32, output_shape=(2, 4, 4))
        self.shift = shift
        self.anchor = nn.Parameter(torch.zeros(()))  # a device to live on

    def forward(self, z, c=None):
        return (0.3 * z.view(-1, 2, 4, 4) + self.shift + self.anchor).clamp(-1, 1)


class MeanPool(nn.Module):
    """A tiny fixed extractor: per-channel mean and mean square of each image."""

    def forward(self, x):
        return torch.cat([x.mean((2, 3)), (x ** 2).mean((2, 3))], dim=1)


@pytest.mark.parametrize("metric_cls,key", [(FID, "fid/MeanPool"), (KID, "kid/MeanPool")])
def test_fid_and_kid_of_a_distribution_against_itself_and_a_shifted_one(metric_cls, key) -> None:
    data = Images()
    metric = metric_cls(extractor=MeanPool(), num_samples=1500)
    context = EvaluationContext(batch_size=500)
    same = metric.compute(GaussianImages(), data, context)[key]
    context.new_round()
    shifted = metric.compute(GaussianImages(shift=0.3), data, context)[key]
    assert abs(same) < 0.01 * shifted
    assert shifted > 1e-3


def test_real_features_are_cached_and_generated_ones_per_round() -> None:
    data, extractor = Images(), MeanPool()
    context = EvaluationContext(batch_size=500)
    calls = []
    extractor.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    metric, gen = PrecisionRecall(extractor=extractor, num_samples=600), GaussianImages()
    metric.compute(gen, data, context)
    FID(extractor=extractor, num_samples=600).compute(gen, data, context)  # shares both feature sets
    assert sum(calls) == 1200
    context.new_round()
    metric.compute(gen, data, context)  # new round: generated features again, real ones kept
    assert sum(calls) == 1800


def test_samples_do_not_depend_on_the_batch_size_and_leave_the_rng_alone() -> None:
    gen = GaussianImages()
    state = torch.get_rng_state()
    a = generate_images(gen, 50, seed=3, batch_size=7)
    b = generate_images(gen, 50, seed=3, batch_size=50)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    real = torch.cat([x for x, _ in iter_real(Images(), 30, seed=1, batch_size=8)])
    assert real.shape == (30, 2, 4, 4)
    assert torch.equal(quantize(quantize(real)), quantize(real))  # 8-bit values are fixed points


def test_inception_score_needs_logits() -> None:
    with pytest.raises(TypeError, match="logits"):
        InceptionScore(extractor=MeanPool(), num_samples=20, splits=2).compute(GaussianImages(), Images())


# -- Inception weights -----------------------------------------------------------------------------
@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_GAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", raising=False)
    return tmp_path


def test_missing_inception_weights_give_one_line_naming_the_file(no_weights) -> None:
    with pytest.raises(MissingWeightsError) as info:
        FID(num_samples=10).setup(None)
    message = str(info.value)
    assert "\n" not in message
    assert INCEPTION_FILE in message and str(no_weights / "cache" / "weights" / INCEPTION_FILE) in message
    with pytest.raises(MissingWeightsError, match="no file at /nowhere/w.pth"):
        InceptionV3Features("/nowhere/w.pth")


def test_evaluate_command_reports_missing_weights_in_one_line(no_weights, tmp_path, capsys) -> None:
    from lightning_gan.cli import main

    ckpt = _tiny_run_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt", str(ckpt), "--metrics", "fid"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightning-gan: error: Inception-v3 metrics") and INCEPTION_FILE in err[0]


def _random_inception_file(path) -> None:
    """torch-fidelity's Inception-v3 with random weights, saved as a plain state dict (no download)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    original = fe.FeatureExtractorInceptionV3.load_state_dict
    fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, state, *a, **k: None
    try:
        fe.load_state_dict_from_url = lambda *a, **k: {}  # never reached the network
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=None)
    finally:
        fe.FeatureExtractorInceptionV3.load_state_dict = original
    torch.save(net.state_dict(), path)


def test_inception_features_load_a_local_file_and_run_on_small_grey_images(tmp_path, monkeypatch) -> None:
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", fe.load_state_dict_from_url)  # restored after the test
    weights = tmp_path / INCEPTION_FILE
    _random_inception_file(weights)
    monkeypatch.setenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", str(weights))
    extractor = InceptionV3Features()
    assert extractor.path == weights
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    features, logits = extractor.features_and_logits(quantize(images))
    assert features.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.allclose(extractor(quantize(images)), features)
    # A weights file that would run code is refused rather than unpickled: the refusal is torch's weights-only
    # unpickler (a file whose code ran would fail later too, on its state dict, with the same message prefix).
    evil, target = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"x": _Evil(target)}, evil)
    with pytest.raises(ConfigError, match="not a usable Inception-v3 weights file: UnpicklingError") as info:
        InceptionV3Features(evil).load()
    assert isinstance(info.value.__cause__, pickle.UnpicklingError), repr(info.value.__cause__)
    assert "mkdir" in str(info.value)  # the call the unpickler refused
    assert not target.exists()


class _Evil:
    """Unpickling calls ``os.mkdir(target)``: an absolute path, so the check does not depend on the working folder."""

    def __init__(self, target) -> None:
        self.target = str(target)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.target,))


# -- a tiny run checkpoint (shared with the command tests) ------------------------------------------
def _tiny_run_checkpoint(tmp_path):
    import lightning.pytorch as pl

    from lightning_gan.data.toy2d import Toy2DDataModule
    from lightning_gan.module import GANModule
    from lightning_gan.testing import TinyArchitecture

    module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=0.1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, Toy2DDataModule(num_samples=200, batch_size=50))
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    return path
