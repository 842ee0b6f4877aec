"""ProgressiveGrowing's parts: the schedule table (stage and alpha per kimg, per-stage settings, one-line
validation errors), the real images at each stage (box-filtered, faded), the stage batch sampler, the views that
let metrics and grids follow the stage, the refusal of an architecture that cannot grow, and the optimizer-state
choice for blocks that become active."""

from __future__ import annotations

import itertools

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lightning_gan.callbacks import ProgressiveGrowing, SampleGrid
from lightning_gan.callbacks.progressive import GrowthSchedule, GrowthStage
from lightning_gan.data.base import StageBatchSampler
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import ContractError
from lightning_gan.module import GANModule
from lightning_gan.ops.growth import (
    FullResolutionGenerator,
    at_full_resolution,
    downsample_to,
    real_images_at,
    upsample_to,
)
from lightning_gan.phases import lazy_ratio
from lightning_gan.regularizers import R1
from lightning_gan.testing.tiny import TinyArchitecture, TinyGrowableArchitecture
from conftest import make_trainer  # tests/conftest.py

ROWS = [
    {"resolution": 4, "fade_kimg": 0, "stable_kimg": 1.5},
    {"resolution": 8, "fade_kimg": 2.0, "stable_kimg": 0.5, "batch_size": 32, "lr": 0.001},
    {"resolution": 16, "fade_kimg": 0.25, "stable_kimg": 3},
    {"resolution": 32, "fade_kimg": 1, "stable_kimg": 0, "lr": 0.0005},
]


def reference_stage(rows: list[dict], kimg: float) -> tuple[int, float]:
    """The table read by hand: row i spans [start_i, start_i + fade_i + stable_i); alpha ramps over fade_i."""
    starts = [0.0, *itertools.accumulate(r["fade_kimg"] + r["stable_kimg"] for r in rows)]
    i = max(k for k in range(len(rows)) if kimg >= starts[k] - 1e-12)
    fade = rows[i]["fade_kimg"]
    alpha = 1.0 if fade == 0 else min(1.0, (kimg - starts[i]) / fade)
    return rows[i]["resolution"], alpha


# -- the schedule table ------------------------------------------------------------------------------------
def test_stage_at_follows_the_table() -> None:
    schedule = GrowthSchedule(ROWS)
    assert schedule.resolutions == (4, 8, 16, 32)
    assert schedule.total_kimg == pytest.approx(8.25)
    grid = [k / 40 for k in range(0, 400)]  # every 0.025 kimg up to 10 kimg (past the table's end)
    for kimg in grid:
        resolution, alpha = schedule.stage_at(kimg)
        ref_resolution, ref_alpha = reference_stage(ROWS, kimg)
        assert resolution == ref_resolution, kimg
        assert alpha == pytest.approx(ref_alpha, abs=1e-12), kimg
    # the boundaries themselves: a fade starts at alpha 0, the first stage has alpha 1, the end stays full
    assert schedule.stage_at(0) == GrowthStage(4, 1.0)
    assert schedule.stage_at(1.5) == GrowthStage(8, 0.0)
    assert schedule.stage_at(2.5) == GrowthStage(8, 0.5)
    assert schedule.stage_at(3.5) == GrowthStage(8, 1.0)
    assert schedule.stage_at(4.0) == GrowthStage(16, 0.0)
    assert schedule.stage_at(4.125) == GrowthStage(16, 0.5)
    assert schedule.stage_at(1e6) == GrowthStage(32, 1.0)
    # the image count gives the same stage as its kimg
    assert schedule.stage_at_images(2500) == schedule.stage_at(2.5)


def test_batch_size_and_lr_carry_over_from_the_previous_row_or_the_runs_own() -> None:
    schedule = GrowthSchedule(ROWS)
    expected = {0: (None, None), 1499: (None, None), 1500: (32, 0.001), 4000: (32, 0.001), 7250: (32, 0.0005)}
    for images, (batch_size, lr) in expected.items():
        assert schedule.batch_size_at_images(images) == batch_size, images
        assert schedule.lr_at_images(images) == lr, images
    assert schedule.has_batch_sizes and not GrowthSchedule(ROWS[:1]).has_batch_sizes


@pytest.mark.parametrize(("rows", "message"), [
    ([], "needs a schedule"),
    ({"resolution": 4}, "needs a schedule"),
    ([[4, 0, 1]], "row 1 must be a mapping"),
    ([{"resolution": 4, "fade_kimg": 0, "stable": 1}], "unknown key.*stable.*the keys are resolution"),
    ([{"resolution": 4, "fade_kimg": 0}], "row 1 lacks stable_kimg"),
    ([{"resolution": 0, "fade_kimg": 0, "stable_kimg": 1}], "resolution must be a positive integer"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": -1}], r"stable_kimg must be a non-negative number"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": float("nan")}], r"stable_kimg must be a non-negative"),
    ([{"resolution": 4, "fade_kimg": 1, "stable_kimg": 1}], "first stage and has nothing to fade from"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 1}, {"resolution": 16, "fade_kimg": 1, "stable_kimg": 1}],
     "must double the one before .* got 4, 16"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0}, {"resolution": 8, "fade_kimg": 1, "stable_kimg": 1}],
     "row 1 \\(resolution 4\\) lasts 0 kimg"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 1, "batch_size": 0}], "batch_size must be a positive integer"),
    ([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 1, "lr": -0.1}], "lr must be a positive number"),
])
def test_a_bad_table_is_refused_with_one_line(rows, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        ProgressiveGrowing(schedule=rows)
    assert "\n" not in str(info.value)


def test_the_table_must_name_the_architectures_stages_and_split_into_d_steps() -> None:
    schedule = GrowthSchedule(ROWS[:3])
    schedule.check((4, 8, 16), d_steps=2)
    with pytest.raises(ConfigError, match="resolutions 4, 8, 16 must be architecture X's stages in order from its "
                                          "first: 8, 16, 32") as info:
        schedule.check((8, 16, 32), architecture="architecture X")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="resolutions 4, 8, 16 must be .*: 4, 8, 16, 32"):
        schedule.check((4, 8, 16, 32))
    with pytest.raises(ConfigError, match="batch_size 32 cannot be split into --model.d_steps=3"):
        schedule.check((4, 8, 16), d_steps=3)


def _groups_of(k: int):  # noqa: ANN202
    """A discriminator's ``batch_size_problem`` that needs multiples of ``k``."""
    return lambda batch_size: None if batch_size % k == 0 else f"groups of {k} do not divide {batch_size}"


_groups_of_4 = _groups_of(4)


def test_every_stages_batch_is_asked_of_the_discriminator() -> None:
    """Row 1 has no batch_size (the data's), rows 2-3 use row 2's 32; each is split into d_steps, then asked."""
    asked: list[int] = []

    def problem(batch_size: int) -> str | None:
        asked.append(batch_size)
        return _groups_of_4(batch_size)

    schedule = GrowthSchedule(ROWS[:3])
    schedule.check((4, 8, 16), batch_size_problem=problem, data_batch_size=12)
    assert asked == [12, 32, 32]
    asked.clear()
    schedule.check((4, 8, 16), d_steps=2, batch_size_problem=problem, data_batch_size=16)
    assert asked == [8, 16, 16]
    with pytest.raises(ConfigError) as info:
        schedule.check((4, 8, 16), batch_size_problem=_groups_of_4, data_batch_size=14, discriminator="MyD")
    assert str(info.value) == ("ProgressiveGrowing schedule row 1 (resolution 4): batch_size 14 (from the data) does "
                               "not suit MyD: groups of 4 do not divide 14")
    with pytest.raises(ConfigError, match=r"row 2 \(resolution 8\): batch_size 32 \(16 per discriminator step\) "
                                          r"does not suit the discriminator: groups of 32 do not divide 16$"):
        schedule.check((4, 8, 16), d_steps=2, batch_size_problem=_groups_of(32), data_batch_size=64)
    rows = [dict(ROWS[0], batch_size=8), ROWS[1], dict(ROWS[2], batch_size=18)]
    with pytest.raises(ConfigError, match=r"^ProgressiveGrowing schedule row 3 \(resolution 16\): batch_size 18 "
                                          r"does not suit the discriminator: groups of 4 do not divide 18$"):
        GrowthSchedule(rows).check((4, 8, 16), batch_size_problem=_groups_of_4)
    with pytest.raises(ConfigError, match=r"row 1 \(resolution 4\): batch_size 9 \(from the data\) cannot be "
                                          r"split into --model.d_steps=2"):
        GrowthSchedule(ROWS[:1] + [{"resolution": 8, "fade_kimg": 1, "stable_kimg": 1}]).check(
            (4, 8), d_steps=2, data_batch_size=9)
    GrowthSchedule(ROWS[:3]).check((4, 8, 16), batch_size_problem=_groups_of_4)  # no data size known: rows 2-3


def test_a_discriminators_refusal_ends_the_fit_at_its_start_in_one_line(tmp_path) -> None:
    """The generic question: any discriminator with batch_size_problem takes part (no architecture is named)."""
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8)), metrics=[])
    module.discriminator.batch_size_problem = _groups_of_4
    rows = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.1}, {"resolution": 8, "fade_kimg": 0.1,
                                                                      "stable_kimg": 0.1, "batch_size": 6}]
    data = ShapesDataModule(resolution=8, channels=1, num_samples=16, batch_size=8)
    with pytest.raises(ConfigError) as info:
        make_trainer(tmp_path, callbacks=[ProgressiveGrowing(schedule=rows)]).fit(module, data)
    assert str(info.value) == ("ProgressiveGrowing schedule row 2 (resolution 8): batch_size 6 does not suit "
                               "TinyGrowableDiscriminator: groups of 4 do not divide 6")
    assert module.iteration == 0


# -- real images at the stage ------------------------------------------------------------------------------
def test_real_images_at_a_stage_are_the_box_filtered_full_images_faded_like_the_generator() -> None:
    x = torch.randn(3, 2, 32, 32, dtype=torch.float64)
    for r in (4, 8, 16, 32):
        k = 32 // r
        box = x.reshape(3, 2, r, k, r, k).mean(dim=(3, 5))  # the mean of every k x k block
        torch.testing.assert_close(downsample_to(x, r), box, rtol=0, atol=1e-12)
        torch.testing.assert_close(real_images_at(x, r), F.avg_pool2d(x, k), rtol=0, atol=1e-12)
    # during the fade of stage 16: lerp(nearest-upsampled 8 px image, 16 px image, alpha)
    alpha = 0.3
    x16, x8 = F.avg_pool2d(x, 2), F.avg_pool2d(x, 4)
    torch.testing.assert_close(real_images_at(x, 16, alpha), (1 - alpha) * x8.repeat_interleave(2, -1)
                               .repeat_interleave(2, -2) + alpha * x16, rtol=0, atol=1e-12)
    assert torch.equal(real_images_at(x, 16, 0.0), upsample_to(downsample_to(x, 8), 16))
    with pytest.raises(ValueError, match="not the side length halved"):
        downsample_to(x, 12)


def test_the_datamodule_serves_training_batches_at_the_stage() -> None:
    data = ShapesDataModule(resolution=16, channels=1, num_samples=8, batch_size=4)
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert data.served_stage is None and data.stage_batch((x, y))[0] is x
    data.serve_stage(8, 0.25)
    staged, labels = data.stage_batch((x, y))
    assert labels is y
    torch.testing.assert_close(staged, torch.lerp(upsample_to(F.avg_pool2d(x, 4), 8), F.avg_pool2d(x, 2), 0.25))
    assert torch.equal(data.stage_batch(x), staged)  # an image tensor alone too

    class FakeTrainer:
        training = False

    data.trainer = FakeTrainer()
    assert data.on_after_batch_transfer((x, y), 0)[0] is x  # validation/test batches stay full
    FakeTrainer.training = True
    assert torch.equal(data.on_after_batch_transfer((x, y), 0)[0], staged)
    data.serve_stage(None)
    assert data.on_after_batch_transfer((x, y), 0)[0] is x


# -- the stage batch sampler -----------------------------------------------------------------------------
class Plan:
    def __init__(self, schedule: GrowthSchedule, images: int, world_size: int) -> None:
        self.schedule, self.images, self.world_size = schedule, images, world_size

    def images_seen(self) -> int:
        return self.images

    def batch_size_at(self, images: int) -> int | None:
        return self.schedule.batch_size_at_images(images)


@pytest.mark.parametrize(("start", "world_size"), [(0, 1), (0, 2), (700, 2), (1490, 1)])
def test_stage_batch_sampler_sizes_follow_the_global_image_count(start: int, world_size: int) -> None:
    schedule = GrowthSchedule([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 1.5, "batch_size": 20},
                               {"resolution": 8, "fade_kimg": 1, "stable_kimg": 1, "batch_size": 6}])
    sampler = StageBatchSampler(range(250), 10, True, plan=Plan(schedule, start, world_size))
    batches = list(sampler)
    assert len(sampler) == len(batches)
    images = start
    for batch in batches:  # each batch has the size the table gives for the images before it, on every process
        assert len(batch) == schedule.batch_size_at_images(images)
        images += len(batch) * world_size
    used = sum(len(b) for b in batches)
    assert 250 - used < schedule.batch_size_at_images(images)  # only an incomplete last batch is dropped
    assert list(itertools.chain(*batches)) == list(range(used))  # the sampler's order, nothing skipped
    with pytest.raises(ConfigError, match="has 10 samples per process, fewer than one batch of 20 .*at 0 kimg"):
        len(StageBatchSampler(range(10), 4, True, plan=Plan(schedule, 0, 1)))
    plain = StageBatchSampler(range(25), 10, True)
    assert [len(b) for b in plain] == [10, 10] and len(plain) == 2


# -- metrics and grids follow the stage ---------------------------------------------------------------------
def test_metrics_and_grids_see_a_growing_generator_at_full_resolution(tmp_path) -> None:
    pl.seed_everything(0)
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8, 16)), metrics=[], ema_kimg=None)
    g = module.generator
    assert at_full_resolution(g) is g  # a fresh pair stands at its last stage
    g.set_stage(8, 0.5)
    view = at_full_resolution(g)
    assert isinstance(view, FullResolutionGenerator) and view.output_shape == (1, 16, 16)
    z = g.sample_latents(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(view(z), g(z).repeat_interleave(2, -1).repeat_interleave(2, -2))

    seen = []

    class ShapeMetric:
        def compute(self, generator, datamodule, context):
            seen.append((tuple(generator.output_shape), tuple(generator(generator.sample_latents(2)).shape)))
            return {"shape_metric": 0.0}

        def notes(self):
            return {}

    module.evaluate_metrics([ShapeMetric()])
    assert seen == [((1, 16, 16), (2, 1, 16, 16))]
    picture = SampleGrid(num_images=4, nrow=2).render(module)
    g.set_stage(16, 1.0)
    assert picture.size == SampleGrid(num_images=4, nrow=2).render(module).size  # the grid keeps its size


# -- fit-time behaviour ------------------------------------------------------------------------------------
def test_an_architecture_that_cannot_grow_is_refused_at_fit_start_with_one_line(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), metrics=[])
    callback = ProgressiveGrowing(schedule=ROWS[:2])
    with pytest.raises(ContractError, match="architecture TinyArchitecture cannot grow progressively: its generator "
                                            "TinyGenerator lacks resolutions, resolution, alpha, set_stage") as info:
        make_trainer(tmp_path, callbacks=[callback]).fit(module, Toy2DDataModule(num_samples=64, batch_size=32))
    assert "\n" not in str(info.value)
    assert module.iteration == 0


def test_a_table_that_is_not_the_architectures_is_refused_at_fit_start(tmp_path) -> None:
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8, 16)), metrics=[])
    data = ShapesDataModule(resolution=16, channels=1, num_samples=16, batch_size=8)
    with pytest.raises(ConfigError, match="schedule resolutions 4, 8 must be architecture TinyGrowableArchitecture's "
                                          "stages in order from its first: 4, 8, 16"):
        make_trainer(tmp_path, callbacks=[ProgressiveGrowing(schedule=ROWS[:2])]).fit(module, data)


class OptimizerLog(Callback):
    """Per iteration: the stage, and Adam's step count per generator/discriminator parameter (None: no state)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float, dict[str, int | None]]] = []
        self.stage: tuple[int, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stage = (pl_module.generator.resolution, pl_module.generator.alpha)  # the stage this iteration trains

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        steps: dict[str, int | None] = {}
        for optimizer, net in zip(trainer.optimizers, (pl_module.discriminator, pl_module.generator)):
            for name, p in net.named_parameters():
                state = optimizer.state.get(p, {})
                prefix = "D." if net is pl_module.discriminator else "G."
                steps[prefix + name] = int(state["step"]) if "step" in state else None
        self.rows.append((pl_module.iteration, *self.stage, steps))


def test_blocks_start_their_optimizer_state_fresh_when_they_fade_in(tmp_path) -> None:
    """The choice: a block not yet in use gets no gradient (None), so Adam keeps no state for it; from its first
    iteration with alpha > 0 it steps once per iteration, while the blocks trained before keep counting."""
    pl.seed_everything(0)
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8, 16)), metrics=[], ema_kimg=None)
    data = ShapesDataModule(resolution=16, channels=1, num_samples=32, batch_size=8)  # 4 iterations per epoch
    rows = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.024},  # iterations 0-2
            {"resolution": 8, "fade_kimg": 0.032, "stable_kimg": 0.016},  # fade 3-6 (alpha 0 at 3), stable 7-8
            {"resolution": 16, "fade_kimg": 0.016, "stable_kimg": 0}]  # fade 9-10 (alpha 0 at 9), then full
    log = OptimizerLog()
    make_trainer(tmp_path, max_epochs=3, callbacks=[ProgressiveGrowing(schedule=rows), log]).fit(module, data)
    schedule = GrowthSchedule(rows)
    assert [(i, r, a) for i, r, a, _ in log.rows] == [
        (i + 1, *schedule.stage_at_images(8 * i)) for i in range(12)]
    # the iteration from which each resolution's own layers take part: their first with alpha > 0
    active_from = {4: 0, 8: 4, 16: 10}
    for index, (iteration, _, _, steps) in enumerate(log.rows):
        for name, step in steps.items():
            parts = name.split(".")
            if parts[1] in ("blocks", "to_rgb", "from_rgb"):
                r = int(parts[2])
                start = active_from[r]
            else:
                r, start = 4, 0  # stem / head: always in use
            # the old RGB layer of a stage leaves the graph once the next stage is fully faded in (alpha = 1)
            retired = parts[1] in ("to_rgb", "from_rgb") and r < 16 and index >= (7 if r == 4 else 11)
            expected_steps = index + 1 - start
            if retired:
                last_used = 6 if r == 4 else 10
                expected_steps = last_used + 1 - start
            expected = expected_steps if expected_steps > 0 else None
            assert step == expected, (iteration, name, step, expected)


def test_row_learning_rates_are_corrected_for_lazy_regularization(tmp_path) -> None:
    pl.seed_everything(0)
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8)), metrics=[], ema_kimg=None,
                       regularizers=[R1(gamma=1.0, interval=4)])
    data = ShapesDataModule(resolution=8, channels=1, num_samples=32, batch_size=8)
    rows = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.016},
            {"resolution": 8, "fade_kimg": 0.016, "stable_kimg": 0, "lr": 0.01}]
    lrs = []

    class LrLog(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            lrs.append(tuple(opt.param_groups[0]["lr"] for opt in trainer.optimizers))

    make_trainer(tmp_path, callbacks=[ProgressiveGrowing(schedule=rows), LrLog()]).fit(module, data)
    d_run = 0.002 * lazy_ratio(4)  # GANModule's default Adam, corrected for R1 every 4 iterations
    assert lrs[:2] == [pytest.approx((d_run, 0.002))] * 2
    assert lrs[2:] == [pytest.approx((0.01 * lazy_ratio(4), 0.01))] * 2


def test_metrics_records_carry_the_stage_and_only_the_full_stage_competes_for_best(tmp_path) -> None:
    from lightning_gan.callbacks import MetricsCallback
    from lightning_gan.metrics.base import GeneratorMetric

    class Rising(GeneratorMetric):
        """1, 2, 3, ... per evaluation (lower is better): without the stage rule the first evaluation would win."""

        def __init__(self) -> None:
            self.calls = 0

        def compute(self, generator, datamodule, context=None):
            assert tuple(generator.output_shape) == (1, 8, 8)  # seen at full resolution at every stage
            self.calls += 1
            return {"rising": float(self.calls)}

    pl.seed_everything(0)
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8)), metrics=[], ema_kimg=0.01)
    data = ShapesDataModule(resolution=8, channels=1, num_samples=32, batch_size=8)
    rows = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.016}, {"resolution": 8, "fade_kimg": 0.016,
                                                                        "stable_kimg": 0}]
    metrics = MetricsCallback(metrics=[Rising()], every_n_kimg=0.008, monitor="rising", mode="min",
                              dirpath=tmp_path / "ckpt")
    make_trainer(tmp_path, max_epochs=2, callbacks=[ProgressiveGrowing(schedule=rows), metrics]).fit(module, data)
    schedule = GrowthSchedule(rows)
    assert [h["kimg"] for h in metrics.history] == pytest.approx([0.008 * k for k in range(1, 9)])
    for h in metrics.history:  # measured after the callback set the next iteration's stage
        resolution, alpha = schedule.stage_at(h["kimg"])
        assert (h["resolution"], h["alpha"]) == (resolution, pytest.approx(alpha, abs=1e-7))
        assert h["full_stage"] == (resolution == 8 and alpha == 1.0)
    assert metrics.best_kimg == pytest.approx(0.032) and metrics.best_value == 4.0  # the first full-stage one
