"""Shapes metrics: class coverage and reverse KL against hand-computed answers, the pinned judges (hash and
held-out figures as recorded, never shadowed), the cached local classifier, the same values from two fresh
environments, and the whole metric on generators whose answer is known (a perfect renderer, a collapsed one)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from conftest import run_process  # tests/conftest.py
from lightning_gan.data.shapes import SHAPES, ShapesDataModule, render_shapes, shape_factors
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.interfaces import Generator
from lightning_gan.metrics import shapes as shapes_module
from lightning_gan.metrics.base import EvaluationContext, iter_real, quantize
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.shapes import (
    PINNED_DIR,
    ShapesClassifier,
    ShapesMetrics,
    class_coverage,
    class_histogram,
    classifier_path,
    clear_loaded_classifiers,
    held_out_accuracy,
    held_out_rejection,
    judge_bytes,
    judge_number,
    pinned_judges,
    pinned_record,
    reverse_kl,
    shapes_classifier_for,
    train_shapes_classifier,
)

K = len(SHAPES)  # 6 classes


# -- the pure functions, by hand ----------------------------------------------------------------------
HISTOGRAM = [50, 30, 15, 4, 1, 0]  # n = 100 recognizable samples over K = 6 classes


def test_class_coverage_by_hand() -> None:
    # fair share n / K = 100 / 6 = 16.67 samples
    assert class_coverage(HISTOGRAM) == 4  # threshold 0.1: n_k >= 1.667 -> 50, 30, 15, 4 (not 1, not 0)
    assert class_coverage(HISTOGRAM, threshold=0.0) == 5  # Stacked MNIST's rule: n_k > 0
    assert class_coverage(HISTOGRAM, threshold=0.3) == 3  # n_k >= 5 -> 50, 30, 15
    assert class_coverage(HISTOGRAM, threshold=1.0) == 2  # n_k >= 16.67 -> 50, 30
    assert class_coverage([0] * K) == 0
    assert class_coverage(torch.tensor([7, 0, 0])) == 1


def test_reverse_kl_by_hand() -> None:
    # p = (0.5, 0.3, 0.15, 0.04, 0.01, 0); against uniform, sum_k p_k log(6 p_k):
    #   0.5 log 3 + 0.3 log 1.8 + 0.15 log 0.9 + 0.04 log 0.24 + 0.01 log 0.06
    #   = 0.549306 + 0.176336 - 0.015804 - 0.057085 - 0.028134 = 0.624619
    assert reverse_kl(HISTOGRAM) == pytest.approx(0.624619, abs=1e-6)
    # against reference counts (3, 3, 2, 2, 1, 1) / 12 = (1/4, 1/4, 1/6, 1/6, 1/12, 1/12):
    #   0.5 log 2 + 0.3 log 1.2 + 0.15 log 0.9 + 0.04 log 0.24 + 0.01 log 0.12
    #   = 0.346574 + 0.054696 - 0.015804 - 0.057085 - 0.021203 = 0.307179
    assert reverse_kl(HISTOGRAM, [3, 3, 2, 2, 1, 1]) == pytest.approx(0.307179, abs=1e-6)
    assert reverse_kl(HISTOGRAM, torch.tensor([3, 3, 2, 2, 1, 1]) / 12) == pytest.approx(0.307179, abs=1e-6)
    assert reverse_kl([10, 0, 0, 0, 0, 0]) == pytest.approx(math.log(6))  # collapsed: log K
    assert reverse_kl([5] * K) == pytest.approx(0.0)  # balanced
    assert math.isinf(reverse_kl([0] * K))  # nothing recognizable
    assert math.isinf(reverse_kl([1, 1], [1, 0]))  # mass where the reference has none
    with pytest.raises(ValueError, match="reference"):
        reverse_kl([1, 1], [1, 1, 1])


def test_class_histogram_counts_confident_predictions() -> None:
    probs = torch.tensor([
        [0.90, 0.05, 0.05],  # class 0, top 0.9
        [0.40, 0.35, 0.25],  # class 0, top 0.4: not recognizable at 0.5
        [0.10, 0.60, 0.30],  # class 1, top 0.6
        [0.20, 0.20, 0.60],  # class 2, top 0.6
    ])
    assert class_histogram(probs, 3).tolist() == [1, 1, 1]  # confidence 0.5
    assert class_histogram(probs, 3, confidence=0.0).tolist() == [2, 1, 1]
    assert class_histogram(probs, 3, confidence=0.65).tolist() == [1, 0, 0]
    assert class_histogram(probs, 3, confidence=0.95).tolist() == [0, 0, 0]
    # the same probabilities given as logits (softmax(log p) = p)
    assert class_histogram(probs.log() + 3.0, confidence=0.65).tolist() == [1, 0, 0]
    assert class_histogram(torch.zeros(0, 3)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="num_classes"):
        class_histogram(probs, 4)


# -- the classifier -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def datamodule() -> ShapesDataModule:
    return ShapesDataModule(resolution=32, num_samples=5000, seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(datamodule: ShapesDataModule, cache: Path) -> Iterator[ShapesClassifier]:
    """The pinned judge of the default 32 px data (shipped with the package: nothing is trained)."""
    clear_loaded_classifiers()
    yield shapes_classifier_for(datamodule, cache)
    clear_loaded_classifiers()


#: Settings without a pinned judge (8 px, and a short training recipe passed as ``steps=LOCAL_STEPS``):
#: a judge trained here in seconds, for the cache's tests.
LOCAL = {"resolution": 8, "channels": 3, "classes": list(SHAPES), "size_range": (0.35, 0.85)}
LOCAL_STEPS = 20


@pytest.fixture(scope="module")
def local(cache: Path) -> Iterator[ShapesClassifier]:
    clear_loaded_classifiers()
    yield shapes_classifier_for(LOCAL, cache, steps=LOCAL_STEPS)
    clear_loaded_classifiers()


def test_pinned_judge_classifies_well(classifier: ShapesClassifier, datamodule: ShapesDataModule,
                                      cache: Path) -> None:
    assert classifier.judge == pinned_record(datamodule)["judge"] and classifier.judge.startswith("pinned-")
    assert classifier.accuracy is not None and classifier.accuracy > 0.98
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())
    # and on the training data itself (another seed than its own), quantized as the metrics do
    datamodule.setup("fit")
    images, labels = datamodule.train_dataset.__getitems__(list(range(1000)))
    features, logits = classifier.features_and_logits(images)
    assert features.shape == (1000, 128) and logits.shape == (1000, K + 1)  # K shapes, then "not a shape"
    assert (logits.argmax(1) == labels).double().mean() > 0.97
    # noise, flat grey and smooth blobs are "not a shape" (a plain K-way classifier calls them shapes)
    g = torch.Generator().manual_seed(0)
    junk = torch.cat([torch.rand(100, 3, 32, 32, generator=g) * 2 - 1, torch.zeros(20, 3, 32, 32),
                      torch.nn.functional.interpolate(torch.rand(100, 3, 4, 4, generator=g) * 2 - 1, size=32, mode="bilinear")])
    assert (classifier.features_and_logits(quantize(junk))[1].argmax(1) == classifier.reject_index).double().mean() > 0.95
    assert classifier.rejection is not None and classifier.rejection > 0.9
    assert not (cache / "shapes_classifier").exists()  # pinned: nothing trained, nothing cached
    with pytest.raises(ValueError, match=r"images \[N, 3, 32, 32\]"):
        classifier(torch.zeros(2, 3, 16, 16))


def test_training_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, acc_a = train_shapes_classifier(resolution=8, steps=3, batch_size=8, seed=5)
    b, acc_b = train_shapes_classifier(resolution=8, steps=3, batch_size=8, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert acc_a == acc_b == a.accuracy
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_training_works_inside_inference_mode() -> None:  # e.g. a metric first set up during validation
    with torch.inference_mode():
        model, _ = train_shapes_classifier(resolution=8, steps=2, batch_size=4)
        features = model(torch.zeros(2, 3, 8, 8))
    assert features.shape == (2, 128) and not model.to_logits.weight.is_inference()


def test_cached_file_is_loaded_without_training(local: ShapesClassifier, cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(**kwargs: object) -> None:
        raise AssertionError("the cached classifier should have been loaded, not retrained")

    path = classifier_path(LOCAL, cache, steps=LOCAL_STEPS)
    assert path.is_file() and pinned_record(LOCAL, steps=LOCAL_STEPS) is None
    # a local judge is named by its file's hash
    assert local.judge == f"local-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    monkeypatch.setattr(shapes_module, "train_shapes_classifier", no_training)
    assert shapes_classifier_for(LOCAL, cache, steps=LOCAL_STEPS) is local  # in-process: the same instance
    clear_loaded_classifiers()
    try:
        loaded = shapes_classifier_for(LOCAL, cache, steps=LOCAL_STEPS)  # from the file
        assert loaded is not local and loaded.accuracy == local.accuracy and loaded.judge == local.judge
        for (name, x), (_, y) in zip(loaded.state_dict().items(), local.state_dict().items()):
            assert torch.equal(x, y), name
        # a datamodule with the same settings names the same classifier
        assert shapes_classifier_for(ShapesDataModule(resolution=8), cache, steps=LOCAL_STEPS) is loaded
    finally:
        clear_loaded_classifiers()  # the next request reads the module's file again


def test_corrupt_cache_file_is_retrained_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = classifier_path(LOCAL, tmp_path, steps=LOCAL_STEPS)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    calls = []

    def quick_training(**kwargs: object) -> tuple[ShapesClassifier, float]:  # stands in for 20 s of training
        calls.append(kwargs)
        model = ShapesClassifier(resolution=8)
        model.accuracy = 0.5
        return model, 0.5

    monkeypatch.setattr(shapes_module, "train_shapes_classifier", quick_training)
    clear_loaded_classifiers()
    try:
        with pytest.warns(UserWarning, match="not usable"):
            retrained = shapes_classifier_for(LOCAL, tmp_path, steps=LOCAL_STEPS)
        assert len(calls) == 1 and retrained.accuracy == 0.5 and retrained.judge.startswith("local-")
        clear_loaded_classifiers()
        assert shapes_classifier_for(LOCAL, tmp_path, steps=LOCAL_STEPS).accuracy == 0.5  # the file was replaced
        assert len(calls) == 1
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    finally:
        clear_loaded_classifiers()  # forget the stand-in; the next request reads the module's file again


def test_data_that_is_not_shapes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="resolution, channels, classes, size_range"):
        ShapesMetrics(cache_dir=str(tmp_path)).setup(Toy2DDataModule())
    with pytest.raises(TypeError, match="no classes, size_range"):
        shapes_classifier_for({"resolution": 32, "channels": 3}, tmp_path)
    with pytest.raises(TypeError, match="Unknown shape"):
        shapes_classifier_for({"resolution": 32, "channels": 3, "classes": ["cat", "dog"], "size_range": (0.3, 0.8)},
                              tmp_path)


# -- the pinned judges ------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [(32, 3), (32, 1), (64, 3), (64, 1)]  # (resolution, channels): what the recipes use, 6 classes


def _data(resolution: int, channels: int) -> dict[str, object]:
    return {"resolution": resolution, "channels": channels, "classes": list(SHAPES), "size_range": (0.35, 0.85)}


def test_every_recipe_setting_has_a_pinned_judge() -> None:
    assert sorted(r["file"] for r in pinned_judges()) == sorted(f"shapes-{r}px-{c}ch-6cls.safetensors" for r, c in SHIPPED)
    for resolution, channels in SHIPPED:
        record = pinned_record(_data(resolution, channels))
        assert record is not None and record["file"] == f"shapes-{resolution}px-{channels}ch-6cls.safetensors"
    # any other setting, or another training recipe, has none (a local judge is trained for it)
    assert pinned_record(_data(8, 3)) is None and pinned_record(_data(32, 3), steps=1000) is None
    assert pinned_record({**_data(32, 3), "classes": list(SHAPES)[:3]}) is None


@pytest.mark.parametrize(("resolution", "channels"), SHIPPED)
def test_pinned_judge_is_what_its_record_says(resolution: int, channels: int, tmp_path: Path) -> None:
    record = pinned_record(_data(resolution, channels))
    data = Path(record["path"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == record["sha256"] and record["judge"] == f"pinned-{digest[:12]}"
    assert 100_000 < len(data) < 1_000_000  # a few hundred kB
    clear_loaded_classifiers()
    try:
        judge = shapes_classifier_for(_data(resolution, channels), tmp_path)
    finally:
        clear_loaded_classifiers()
    assert judge.judge == record["judge"] and judge.accuracy == record["held_out_accuracy"]
    assert judge_bytes(judge, record["settings"]) == data  # the file is exactly this network and its figures
    # recomputed on the held-out sets (seed 0: 2000 shapes, 1000 negatives); exact on the machine that
    # trained it, within a prediction or two elsewhere (other float paths)
    accuracy = held_out_accuracy(judge, size_range=(0.35, 0.85), seed=0)
    rejection = held_out_rejection(judge, size_range=(0.35, 0.85), seed=0)
    assert accuracy == pytest.approx(record["held_out_accuracy"], abs=2 / 2000)
    assert rejection == pytest.approx(record["held_out_rejection"], abs=2 / 1000)
    assert record["held_out_accuracy"] > 0.98 and record["held_out_rejection"] > 0.9


def test_docs_state_every_pinned_judge_and_its_accuracy() -> None:
    text = (ROOT / "docs" / "evaluation.md").read_text()
    for record in pinned_judges():
        rows = [line for line in text.splitlines() if record["judge"] in line]
        assert rows, f"docs/evaluation.md does not name the pinned judge {record['judge']} ({record['file']})"
        figures = (f"{record['held_out_accuracy']:.4f}", f"{record['held_out_rejection']:.4f}")
        assert any(all(f in row for f in figures) for row in rows), \
            f"docs/evaluation.md gives no line with {record['judge']} and its accuracy and rejection {figures}"


def test_the_cache_never_shadows_a_pinned_judge(datamodule: ShapesDataModule, tmp_path: Path) -> None:
    record = pinned_record(datamodule)
    # a judge of the same settings made elsewhere (a GPU, another processor): here an untrained network
    other = ShapesClassifier(resolution=32)
    other.accuracy, other.rejection = 0.99, 0.9
    path = classifier_path(datamodule, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(judge_bytes(other, record["settings"]))
    clear_loaded_classifiers()
    try:
        judge = shapes_classifier_for(datamodule, tmp_path)
    finally:
        clear_loaded_classifiers()
    assert judge.judge == record["judge"]
    assert judge_bytes(judge, record["settings"]) == Path(record["path"]).read_bytes()


def test_a_pinned_file_that_does_not_match_its_hash_is_refused(datamodule: ShapesDataModule, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    record = pinned_record(datamodule)
    source = Path(record["path"])
    data = bytearray(source.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (tmp_path / source.name).write_bytes(bytes(data))
    (tmp_path / source.with_suffix(".json").name).write_text(source.with_suffix(".json").read_text())
    monkeypatch.setattr(shapes_module, "PINNED_DIR", tmp_path)
    clear_loaded_classifiers()
    try:
        with pytest.raises(ConfigError, match=r"SHA-256 .* not the recorded .*reinstall"):
            shapes_classifier_for(datamodule, tmp_path / "cache")  # and no local judge trained instead
    finally:
        clear_loaded_classifiers()
    assert not (tmp_path / "cache").exists()


_FRESH_ENVIRONMENT = r"""
import json
import torch
from torch import nn
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.shapes import ShapesMetrics

class Tiny(Generator):  # seeded weights: the same generator in every process
    def __init__(self) -> None:
        super().__init__(z_dim=16, output_shape=(3, 32, 32))
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(16, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)),
                                 nn.Upsample(scale_factor=4, mode="bilinear"), nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())

    def forward(self, z, c=None):
        return self.net(z)

metric = ShapesMetrics(num_samples=500)
datamodule = ShapesDataModule(resolution=32, num_samples=2000, seed=0)
metric.setup(datamodule)
values = metric.compute(Tiny(), datamodule)
print(json.dumps({"values": values, "notes": metric.notes(), "threads": torch.get_num_threads()}))
"""


@pytest.mark.slow
def test_two_fresh_environments_give_the_same_shapes_values(tmp_path: Path) -> None:
    """Fresh processes with their own (empty) cache folders and thread counts: the pinned judge scores the
    same generator identically, and neither trains nor caches a judge."""
    results = []
    for name, threads in (("a", "1"), ("b", "2")):
        env = {**os.environ, "LIGHTNING_GAN_CACHE": str(tmp_path / name), "OMP_NUM_THREADS": threads}
        done = run_process([sys.executable, "-c", _FRESH_ENVIRONMENT], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        assert re.search(r"judge pinned-[0-9a-f]{12}", done.stdout + done.stderr)  # said once, in the log
        assert not (tmp_path / name).exists()  # nothing trained, nothing cached
    a, b = results
    assert (a["threads"], b["threads"]) == (1, 2)
    assert a["notes"] == b["notes"] == {"shapes/judge": pinned_record(_data(32, 3))["judge"]}
    assert a["values"] == b["values"]
    assert a["values"]["shapes/judge_pinned"] == 1.0
    assert a["values"]["shapes/judge_id"] == judge_number(a["notes"]["shapes/judge"])


# -- the metric on generators with a known answer -------------------------------------------------------
class RenderingGenerator(Generator):
    """A 'generator' that renders real shapes: z picks an image of a shapes data seed; the condition c
    (one-hot), or ``only``, sets the class drawn."""

    def __init__(self, dm: ShapesDataModule, *, c_dim: int = 0, only: int | None = None, seed: int = 777) -> None:
        super().__init__(z_dim=2, c_dim=c_dim, output_shape=dm.data_shape)
        self.dm, self.only, self.data_seed = dm, only, seed

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        bits = (z.double().abs() * 2**20).long().cpu()  # [N, 2]
        f = shape_factors((bits[:, 0] * 2**21 + bits[:, 1]).tolist(), seed=self.data_seed, classes=self.dm.classes,
                          channels=self.dm.channels, size_range=self.dm.size_range)
        label = f.label if c is None else c.argmax(1).cpu()
        if self.only is not None:
            label = torch.full_like(label, self.only)
        shape = torch.tensor([SHAPES.index(self.dm.classes[i]) for i in label.tolist()])
        return render_shapes(f._replace(label=label, shape=shape), resolution=self.dm.resolution).to(z.device)


N = 1000


@pytest.fixture(scope="module")
def context() -> EvaluationContext:
    return EvaluationContext()  # shares the real features between the tests below


def test_perfect_generator_against_a_collapsed_one(classifier: ShapesClassifier, datamodule: ShapesDataModule,
                                                   cache: Path, context: EvaluationContext) -> None:
    metric = ShapesMetrics(num_samples=N, cache_dir=str(cache))
    metric.setup(datamodule)
    perfect = metric.compute(RenderingGenerator(datamodule), datamodule, context)
    assert set(perfect) == {"shapes/coverage", "shapes/recognizable", "shapes/reverse_kl", "shapes/fd",
                            "shapes/classifier_accuracy", "shapes/classifier_rejection", "shapes/judge_id",
                            "shapes/judge_pinned"}  # unconditional: no accuracy
    # the judge: its id as text in notes(), as numbers in the results (its hash's first 6 hex digits)
    assert metric.notes() == {"shapes/judge": classifier.judge}
    assert f"{int(perfect['shapes/judge_id']):06x}" == classifier.judge.removeprefix("pinned-")[:6]
    assert perfect["shapes/judge_pinned"] == 1.0
    assert perfect["shapes/coverage"] == K
    assert perfect["shapes/recognizable"] > 0.97
    # real data against real data: only sampling noise, about (K - 1) / N between two sets of N = 1000
    assert perfect["shapes/reverse_kl"] < 0.02
    assert perfect["shapes/classifier_accuracy"] == classifier.accuracy

    collapsed = metric.compute(RenderingGenerator(datamodule, only=0), datamodule, context)
    assert collapsed["shapes/coverage"] == 1
    assert collapsed["shapes/recognizable"] > 0.97
    # every recognizable sample is a circle: KL = 1 * log(1 / q_circle), q the real labels' frequencies,
    # close to log K = log 6 = 1.792 since the data's classes are uniform
    labels = torch.cat([y for _, y in iter_real(datamodule, N, seed=0)])
    q_circle = float((labels == 0).double().mean())
    assert collapsed["shapes/reverse_kl"] == pytest.approx(math.log(1 / q_circle), abs=0.03)
    assert collapsed["shapes/reverse_kl"] == pytest.approx(math.log(K), abs=0.15)
    assert collapsed["shapes/fd"] > 10 * perfect["shapes/fd"]


def test_conditional_accuracy(classifier: ShapesClassifier, datamodule: ShapesDataModule, cache: Path,
                              context: EvaluationContext) -> None:
    metric = ShapesMetrics(num_samples=N, cache_dir=str(cache))
    obeys = metric.compute(RenderingGenerator(datamodule, c_dim=K), datamodule, context)
    assert obeys["shapes/accuracy"] > 0.97 and obeys["shapes/coverage"] == K
    # conditions are balanced (i % K): the classes come out uniform, a bit closer to the real frequencies
    assert obeys["shapes/reverse_kl"] < 0.02
    # a generator that ignores its condition: right by chance only, 1/K
    deaf = RenderingGenerator(datamodule, c_dim=K)
    deaf.forward = lambda z, c=None: RenderingGenerator.forward(deaf, z, None)  # type: ignore[method-assign]
    chance = metric.compute(deaf, datamodule, context)["shapes/accuracy"]
    assert chance == pytest.approx(1 / K, abs=0.05)  # binomial sd sqrt(1/6 * 5/6 / 1000) = 0.012


def test_per_class_accuracy(classifier: ShapesClassifier, datamodule: ShapesDataModule, cache: Path,
                            context: EvaluationContext) -> None:
    """A generator that draws a square when asked for a circle: circle accuracy ~0, the others ~1, and the
    overall accuracy is their mean weighted by the conditions' counts."""
    metric = ShapesMetrics(num_samples=N, cache_dir=str(cache), per_class_accuracy=True)
    wrong = RenderingGenerator(datamodule, c_dim=K)
    wrong.forward = lambda z, c=None: RenderingGenerator.forward(  # type: ignore[method-assign]
        wrong, z, torch.where(c.argmax(1, keepdim=True) == 0, torch.eye(K)[1].expand_as(c), c))
    out = metric.compute(wrong, datamodule, context)
    per_class = [out[f"shapes/accuracy/{name}"] for name in datamodule.classes]
    assert per_class[0] < 0.03 and min(per_class[1:]) > 0.95
    counts = torch.bincount(torch.arange(N) % K, minlength=K).tolist()  # conditions i % K
    assert out["shapes/accuracy"] == pytest.approx(sum(a * n for a, n in zip(per_class, counts)) / N, abs=1e-9)
    assert "shapes/accuracy/circle" not in ShapesMetrics(num_samples=N, cache_dir=str(cache)).compute(
        wrong, datamodule, context)


def test_conditional_generator_with_other_classes_warns(classifier: ShapesClassifier, datamodule: ShapesDataModule,
                                                        cache: Path, context: EvaluationContext) -> None:
    metric = ShapesMetrics(num_samples=200, cache_dir=str(cache))
    with pytest.warns(UserWarning, match="c_dim=3"):
        out = metric.compute(RenderingGenerator(datamodule, c_dim=3), datamodule, context)
    assert "shapes/accuracy" not in out


def test_config_round_trip(tmp_path: Path) -> None:
    metric = ShapesMetrics(num_samples=500, num_real=300, seed=3, confidence=0.7, coverage_threshold=0.2,
                           cache_dir=str(tmp_path), per_class_accuracy=True)
    config = metric.config()
    assert config["init_args"] == {"num_samples": 500, "num_real": 300, "seed": 3, "confidence": 0.7,
                                   "coverage_threshold": 0.2, "cache_dir": str(tmp_path), "per_class_accuracy": True}
    assert ShapesMetrics(**config["init_args"]).config() == config
    with pytest.raises(ValueError, match="confidence"):
        ShapesMetrics(confidence=1.5)


def test_fid_with_the_shapes_extractor_is_shapes_fd(classifier: ShapesClassifier, datamodule: ShapesDataModule,
                                                    cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_gan.metrics.image import FID

    monkeypatch.setenv("LIGHTNING_GAN_CACHE", str(cache))  # FID asks for the classifier without a cache_dir
    context, generator = EvaluationContext(), RenderingGenerator(datamodule, only=2)
    fid = FID(extractor="shapes", num_samples=500)
    fid.setup(datamodule)
    assert fid.feature_extractor(datamodule) is shapes_classifier_for(datamodule, cache)  # one shared instance
    fd = ShapesMetrics(num_samples=500, cache_dir=str(cache)).compute(generator, datamodule, context)["shapes/fd"]
    assert fid.compute(generator, datamodule, context) == {"fid/shapes_classifier": pytest.approx(fd)}
