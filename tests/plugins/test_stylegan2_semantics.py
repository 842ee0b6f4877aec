"""StyleGAN2's training semantics, each pinned against its formula (issue 17, part 1).

The path-length running mean with its gradient, the path-length batch made with style mixing, one style-mixing
crossover per batch, ``w_avg`` from the main latents only, one noise strength per layer (and old per-channel
checkpoints), the conditional discriminator's embedding defaults, the unclamped last FromRGB of a skip
discriminator and the demodulation epsilon; then three training iterations against a hand computation.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lightning_gan.interfaces import PenaltyInputs
from lightning_gan_stylegan2.discriminator import StyleGAN2Discriminator
from lightning_gan_stylegan2.layers import (
    LRELU_GAIN,
    EqualConv2d,
    ModulatedConv2d,
    NoiseInjection,
    conv2d_resample,
    normalize_2nd_moment,
    resample_filter,
)
from lightning_gan_stylegan2.networks import StyleGAN2Architecture, StyleGAN2Generator, mix_styles
from lightning_gan_stylegan2.path_length import PathLength
from test_stylegan2 import _LinearStyleGenerator  # the same toy generator (tests/plugins is on sys.path)

SMALL = dict(z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=8)


def _inputs(generator: torch.nn.Module, z: torch.Tensor, batch: int) -> PenaltyInputs:
    """Penalty inputs whose latent sampler returns the first n rows of ``z``; the real batch has ``batch`` rows."""
    return PenaltyInputs(generator=generator, discriminator=None, real=torch.zeros(batch, 1, 4, 4),
                         real_c=None, latent_sampler=lambda n: (z[:n], None))


# -- 1. path length: the running mean a_new = lerp(a, mean(l), decay), with its gradient -------------------
# _LinearStyleGenerator: mapping(z) = z as 2 ws; synthesis(ws) = A mean(ws) [N, 1, 4, 4]: J^T y = A^T y / 2 per w,
# so l = |A^T y| / 2


@pytest.mark.parametrize("detach_mean", [False, True])
def test_path_length_running_mean_and_its_gradient(detach_mean: bool) -> None:
    """Penalty ``w mean (l - a_new)^2``, ``a_new = a + decay (mean l - a)``; StyleGAN2's gradient flows
    through ``mean l`` inside ``a_new`` (``detach_mean=False``), the option treats ``a_new`` as a constant.
    J^T y for each of the 2 ws is ``A^T y / 2`` here, so ``l = |A^T y| / 2`` in closed form."""
    torch.manual_seed(0)
    g = _LinearStyleGenerator()
    z = torch.randn(8, 3, dtype=torch.float64)
    reg = PathLength(weight=2.0, batch_shrink=2, decay=0.25, style_mixing=False, detach_mean=detach_mean).double()
    reg.mean_length.fill_(0.7)
    torch.manual_seed(5)
    penalty = reg(_inputs(g, z, 16))
    (grad,) = torch.autograd.grad(penalty, g.a)

    torch.manual_seed(5)
    y = torch.randn(8, 1, 4, 4, dtype=torch.float64) / 4.0  # / sqrt(H W)
    a_param = g.a.detach().clone().requires_grad_(True)
    lengths = (y.flatten(1) @ a_param / 2).square().sum(1).sqrt()  # [8]
    batch_mean = lengths.mean().detach() if detach_mean else lengths.mean()
    a_new = 0.7 + 0.25 * (batch_mean - 0.7)
    expected = 2.0 * (lengths - a_new).square().mean()
    (expected_grad,) = torch.autograd.grad(expected, a_param)
    torch.testing.assert_close(penalty, expected)
    torch.testing.assert_close(reg.mean_length, a_new.detach())
    torch.testing.assert_close(grad, expected_grad)
    # the two choices differ by the term through mean(l), -2 w decay mean(l - a_new) / N in each d/dl_i, with
    # mean(l - a_new) = (1 - decay)(mean l - a) = 0.75 (mean l - 0.7), nonzero here
    other = PathLength(weight=2.0, batch_shrink=2, decay=0.25, style_mixing=False,
                       detach_mean=not detach_mean).double()
    other.mean_length.fill_(0.7)
    torch.manual_seed(5)
    (other_grad,) = torch.autograd.grad(other(_inputs(g, z, 16)), g.a)
    assert not torch.allclose(grad, other_grad)


# -- 2. the path-length batch is made with style mixing ---------------------------------------------------
class _ProductStyles(StyleGAN2Generator):
    """mapping(z) = z as 2 ws; synthesis = A (ws_0 * ws_1): J^T y is ``ws_1 * A^T y`` for w 0 and ``ws_0 * A^T y``
    for w 1, so the lengths depend on which latent feeds which w."""

    def __init__(self, style_mixing: float) -> None:
        super().__init__(z_dim=3, w_dim=3, resolution=4, channel_base=16, channel_max=1, mapping_layers=1,
                         style_mixing=style_mixing)
        self.a = torch.nn.Parameter(torch.randn(16, 3, dtype=torch.float64))

    def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=True):
        return z[:, None, :].expand(-1, 2, -1) * 1.0

    def synthesis(self, ws, noise_mode=None, force_fp32=False):
        return ((ws[:, 0] * ws[:, 1]) @ self.a.t()).view(-1, 1, 4, 4)


@pytest.mark.parametrize("style_mixing", [True, False])
def test_path_length_batch_is_generated_with_style_mixing(style_mixing: bool) -> None:
    """With mixing probability 1 and 2 ws the crossover is layer 1: ws = (w(z), w(z2)) with z2 the first
    draw from the global RNG, then the crossover and the decision, then y. Without mixing ws = (w(z), w(z))."""
    torch.manual_seed(0)
    g = _ProductStyles(style_mixing=1.0)
    z = torch.randn(8, 3, dtype=torch.float64)
    reg = PathLength(weight=1.0, batch_shrink=2, decay=1.0, style_mixing=style_mixing).double()
    torch.manual_seed(9)
    penalty = reg(_inputs(g, z, 16))

    torch.manual_seed(9)
    if style_mixing:
        z2 = torch.randn(8, 3, dtype=torch.float64)
        torch.randint(1, 2, (1,))  # the crossover (always 1 with 2 ws)
        torch.rand(1)  # the decision (always "mix" at probability 1)
    else:
        z2 = z
    y = torch.randn(8, 1, 4, 4, dtype=torch.float64) / 4.0
    aty = y.flatten(1) @ g.a.detach()  # [N, w_dim]
    jty = torch.stack([z2 * aty, z * aty], dim=1)  # [N, 2, w_dim]
    lengths = jty.square().sum(-1).mean(-1).sqrt()
    torch.testing.assert_close(reg.mean_length, lengths.mean())  # decay 1: a_new = mean l
    torch.testing.assert_close(penalty, (lengths - lengths.mean()).square().mean())


# -- 3. style mixing: one crossover and one decision per batch by default ---------------------------------
def test_mix_styles_batch_mode_draws_one_crossover_and_one_decision() -> None:
    ws, ws2 = torch.zeros(16, 6, 2), torch.ones(16, 6, 2)
    cuts, mixed_batches = set(), 0
    for seed in range(400):
        torch.manual_seed(seed)
        out = mix_styles(ws, ws2, 0.9)[..., 0]  # [N, num_ws]
        torch.manual_seed(seed)
        cut = int(torch.randint(1, 6, (1,)))  # the documented draws: crossover first, then the decision
        mixed = bool(torch.rand(1) < 0.9)
        expected = (torch.arange(6) >= (cut if mixed else 6)).float().expand(16, 6)
        assert torch.equal(out, expected)
        cuts.add(cut)
        mixed_batches += mixed
    assert cuts == {1, 2, 3, 4, 5}
    assert 0.85 < mixed_batches / 400 < 0.95  # 400 batches at p = 0.9 (3 standard deviations: +-0.045)
    # per sample (the option): the crossovers differ within a batch
    torch.manual_seed(0)
    per_sample = mix_styles(ws, ws2, 1.0, "sample")[..., 0]
    assert len(set((per_sample == 0).sum(1).tolist())) > 1
    with pytest.raises(ValueError, match="style mixing mode"):
        mix_styles(ws, ws2, 0.9, "layer")


def test_generator_default_and_option_for_style_mixing_mode() -> None:
    spec = StyleGAN2Architecture(resolution=16, **SMALL)
    assert spec.style_mixing_mode == "batch" and spec.build().generator.style_mixing_mode == "batch"
    option = StyleGAN2Architecture(resolution=16, style_mixing_mode="sample", **SMALL)
    assert option.build().generator.style_mixing_mode == "sample"
    with pytest.raises(ValueError, match="style_mixing_mode"):
        StyleGAN2Architecture(resolution=16, style_mixing_mode="layer", **SMALL)


# -- 4. w_avg tracks the main latents only ----------------------------------------------------------------
def test_w_avg_tracks_only_the_main_latents() -> None:
    torch.manual_seed(0)
    g = StyleGAN2Generator(resolution=8, style_mixing=1.0, w_avg_beta=0.5, noise_mode="const", **SMALL).train()
    g.mapping_network.w_avg.copy_(torch.randn(8))
    before = g.w_avg.clone()
    z = torch.randn(6, 8)
    with torch.no_grad():
        g(z)
        w = g.mapping_network(z, update_w_avg=False)[:, 0]  # [N, w_dim]
    torch.testing.assert_close(g.w_avg, w.mean(0).lerp(before, 0.5))  # lerp(mean w(z), w_avg, beta)


# -- 5. noise strength: one scalar per layer; per-channel as an option and from old checkpoints -----------
def test_noise_strength_is_one_scalar_per_layer_by_default() -> None:
    torch.manual_seed(0)
    layer = NoiseInjection(channels=3, resolution=4)
    assert layer.strength.shape == () and layer.strength_mode == "layer"
    with torch.no_grad():
        layer.strength.fill_(-0.5)
        x = torch.randn(2, 3, 4, 4)
        torch.testing.assert_close(layer(x, "const"), x - 0.5 * layer.noise_const)  # the same for every channel
    g = StyleGAN2Architecture(resolution=8, **SMALL).build().generator
    strengths = [m.strength for m in g.modules() if isinstance(m, NoiseInjection)]
    assert len(strengths) == 3 and all(s.shape == () for s in strengths)  # 4x4: 1 layer, 8x8: 2
    g = StyleGAN2Architecture(resolution=8, noise_strength="channel", **SMALL).build().generator
    assert all(m.strength.shape == (8,) for m in g.modules() if isinstance(m, NoiseInjection))
    with pytest.raises(ValueError, match="noise_strength"):
        StyleGAN2Architecture(resolution=8, noise_strength="pixel", **SMALL)


@pytest.mark.parametrize(("saved", "built"), [("channel", "layer"), ("layer", "channel")])
def test_checkpoint_with_the_other_noise_strength_loads_with_its_own_shape(saved: str, built: str) -> None:
    """An old checkpoint (per-channel strengths) loads into today's default model: the layers adopt the saved
    shape, so the model computes what was trained; an optimizer built afterwards trains the loaded strengths."""
    torch.manual_seed(0)
    old = StyleGAN2Architecture(resolution=8, noise_strength=saved, **SMALL).build().generator.eval()
    with torch.no_grad():
        for m in old.modules():
            if isinstance(m, NoiseInjection):
                m.strength.copy_(torch.randn(m.strength.shape))
    new = StyleGAN2Architecture(resolution=8, noise_strength=built, **SMALL).build().generator.eval()
    new.load_state_dict(old.state_dict())
    z = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(new(z, noise_mode="const"), old(z, noise_mode="const"))
    layers = [m for m in new.modules() if isinstance(m, NoiseInjection)]
    assert all(m.strength_mode == saved for m in layers)
    optimizer = torch.optim.SGD(new.parameters(), lr=1.0)
    assert all(any(p is m.strength for p in optimizer.param_groups[0]["params"]) for m in layers)


# -- 6. conditional discriminator: the class embedding's mapping has 8 layers at lr multiplier 0.01 --------
def test_conditional_discriminator_embedding_defaults_and_formula() -> None:
    torch.manual_seed(0)
    spec = StyleGAN2Architecture(resolution=8, c_dim=3, **SMALL)
    assert (spec.d_mapping_layers, spec.d_mapping_lr_mul) == (8, 0.01)
    d = spec.build().discriminator
    layers = d.mapping.layers
    assert len(layers) == 8 and all(layer.lr_mul == 0.01 for layer in layers) and d.mapping.embed.lr_mul == 1.0
    c = torch.eye(3)
    x = normalize_2nd_moment(c @ d.mapping.embed.weight.t() / math.sqrt(3) + d.mapping.embed.bias)
    for layer in layers:  # lrelu(x W^T * 0.01 / sqrt(I) + b * 0.01) * sqrt(2)
        x = torch.nn.functional.leaky_relu(x @ layer.weight.t() * (0.01 / math.sqrt(x.shape[1]))
                                           + layer.bias * 0.01, 0.2) * LRELU_GAIN
    torch.testing.assert_close(d.mapping(None, c), x)
    # the former values as options
    d2 = StyleGAN2Discriminator(c_dim=3, resolution=8, channel_base=128, channel_max=8, mapping_layers=2,
                                mapping_lr_mul=1.0)
    assert len(d2.mapping.layers) == 2 and d2.mapping.layers[0].lr_mul == 1.0


def test_conditional_discriminator_checkpoint_needs_its_own_lr_multiplier() -> None:
    """The stored embedding weights mean ``lr_mul * W / sqrt(I)``: a checkpoint from before the option (no
    ``cmap_lr_mul`` entry, trained at 1) loads into a model at 1 and computes what it did; into today's default
    (0.01) it fails with one line saying what to set, as does a mismatch between saved and built multipliers."""
    from lightning_gan.errors import ConfigError

    torch.manual_seed(0)
    kwargs = dict(c_dim=3, resolution=8, channel_base=128, channel_max=8, mapping_layers=2)
    old = StyleGAN2Discriminator(mapping_lr_mul=1.0, **kwargs).eval()
    state = {k: v for k, v in old.state_dict().items() if k != "cmap_lr_mul"}  # as written before the option
    same = StyleGAN2Discriminator(mapping_lr_mul=1.0, **kwargs).eval()
    same.load_state_dict(state)
    x, c = torch.randn(4, 3, 8, 8), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        torch.testing.assert_close(same(x, c), old(x, c))
    for saved in (state, StyleGAN2Discriminator(mapping_lr_mul=0.1, **kwargs).state_dict()):
        with pytest.raises(ConfigError, match="d_mapping_lr_mul") as info:
            StyleGAN2Discriminator(**kwargs).load_state_dict(saved)
        assert "\n" not in str(info.value)
    StyleGAN2Discriminator(**kwargs).load_state_dict(StyleGAN2Discriminator(**kwargs).state_dict())  # round trip


# -- 7. the last FromRGB of a skip discriminator is not clamped -------------------------------------------
def test_skip_discriminator_last_fromrgb_is_not_clamped() -> None:
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(resolution=8, channel_base=128, channel_max=8, architecture="skip", conv_clamp=0.05)
    outputs: dict[str, float] = {}

    def record(name: str):
        return lambda module, inputs, output: outputs.__setitem__(name, float(output.abs().max()))

    d.epilogue.fromrgb.register_forward_hook(record("last"))
    d.blocks[0].fromrgb.register_forward_hook(record("block"))
    with torch.no_grad():
        d(10.0 * torch.randn(4, 3, 8, 8))
    assert d.epilogue.fromrgb.conv_clamp is None and outputs["last"] > 0.5  # unclamped
    assert d.blocks[0].fromrgb.conv_clamp == 0.05 and outputs["block"] <= 0.05 + 1e-7  # the others still clamp
    assert isinstance(d.epilogue.conv, EqualConv2d) and d.epilogue.conv.conv_clamp == 0.05


# -- 8. demodulation epsilon where the formula has it ----------------------------------------------------
@pytest.mark.parametrize("style", [1.0, 1e-3, 1e-4])
@pytest.mark.parametrize("up", [1, 2])
def test_demodulation_epsilon_is_on_the_stored_weight_scale(style: float, up: int) -> None:
    """``w' = s W`` with W the stored weight, ``w'' = w' / sqrt(sum w'^2 + 1e-8)``: the 1/sqrt(fan-in) gain
    cancels and does not scale eps. Small styles are where it matters (the former eps * fan-in: 30% at 1e-4)."""
    torch.manual_seed(0)
    layer = ModulatedConv2d(in_channels=8, out_channels=5, kernel_size=3, w_dim=4, up=up).double()
    with torch.no_grad():
        layer.affine.weight.zero_()
        layer.affine.bias.fill_(style)  # s_i = style for every input channel
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    w = torch.randn(2, 4, dtype=torch.float64)
    with torch.no_grad():
        fused, plain = layer(x, w, fused="fused"), layer(x, w, fused="plain")
        w_prime = style * layer.weight  # [O, I, k, k]
        w_demod = w_prime / (w_prime.square().sum([1, 2, 3], keepdim=True) + 1e-8).sqrt()
        ref = conv2d_resample(x, w_demod, f=resample_filter().double(), up=up)
        former_eps = 1e-8 / layer.weight_gain ** 2  # what a gain-scaled weight with eps 1e-8 amounts to
        former = conv2d_resample(x, w_prime / (w_prime.square().sum([1, 2, 3], keepdim=True) + former_eps).sqrt(),
                                 f=resample_filter().double(), up=up)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(plain, ref, rtol=1e-10, atol=1e-12)
    rel = float((former - ref).abs().max() / ref.abs().max())
    if style <= 1e-4:
        assert rel > 0.1  # the placement of eps matters here, so the test above can tell them apart
    elif style >= 1.0:
        assert rel < 1e-6


# -- three training iterations against a hand computation -----------------------------------------------
def test_three_iterations_path_length_and_w_avg_by_hand() -> None:
    """Three iterations of a generator step (training forward with style mixing, a stand-in loss) and a
    path-length step, on fixed latents, by the module and by hand on a copy of the same weights: the
    penalty, the running mean ``a``, ``w_avg`` and the weights after each SGD step agree.

    By hand: 2 ws (4x4 generator), mixing probability 1, so ws = (w(z), w(z2)) with z2 the first draw from
    the global RNG after the seed (then the crossover, then the decision); ``w_avg <- lerp(mean w(z),
    w_avg, beta)`` for the main latents of each forward; ``l = sqrt(mean over ws of |d sum(g * y) / d w|^2)``
    with y ~ N(0, I) / 4; ``a_new = a + decay (mean l - a)``; penalty ``weight * mean (l - a_new)^2``.
    """
    torch.manual_seed(0)
    g = StyleGAN2Generator(z_dim=4, w_dim=4, resolution=4, img_channels=1, channel_base=16, channel_max=4,
                           mapping_layers=2, mapping_lr_mul=1.0, style_mixing=1.0, w_avg_beta=0.8,
                           noise_mode="const").double().train()
    assert g.num_ws == 2
    reg = PathLength(weight=2.0, interval=1, batch_shrink=2, decay=0.25).double()
    ref = copy.deepcopy(g)
    opt, opt_ref = torch.optim.SGD(g.parameters(), lr=0.05), torch.optim.SGD(ref.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    z_main = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    z_pl = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    w_avg, a = torch.zeros(4, dtype=torch.float64), torch.zeros((), dtype=torch.float64)

    def mixed_ws(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z2 = torch.randn_like(z)
        torch.randint(1, 2, (1,))
        torch.rand(1)
        w1 = ref.mapping_network(z, update_w_avg=False)
        w2 = ref.mapping_network(z2, update_w_avg=False)
        return torch.cat([w1[:, :1], w2[:, 1:]], dim=1), w1[:, 0]

    for it in range(3):
        # the module
        torch.manual_seed(100 + it)
        loss = g(z_main[it]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.manual_seed(200 + it)
        penalty = reg(_inputs(g, z_pl[it], 4))  # batch 4 // batch_shrink 2 = 2 latents
        opt.zero_grad()
        penalty.backward()
        opt.step()

        # by hand
        torch.manual_seed(100 + it)
        ws, w = mixed_ws(z_main[it])
        w_avg = torch.lerp(w.detach().mean(0), w_avg, 0.8)
        loss_ref = ref.synthesis(ws, "const").square().mean()
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        torch.manual_seed(200 + it)
        ws, w = mixed_ws(z_pl[it][:2])
        w_avg = torch.lerp(w.detach().mean(0), w_avg, 0.8)
        images = ref.synthesis(ws, "const")
        y = torch.randn(images.shape, dtype=torch.float64) / 4.0
        (jty,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
        lengths = jty.square().sum(-1).mean(-1).sqrt()
        a_new = a + 0.25 * (lengths.mean() - a)
        penalty_ref = 2.0 * (lengths - a_new).square().mean()
        a = a_new.detach()
        opt_ref.zero_grad()
        penalty_ref.backward()
        opt_ref.step()

        torch.testing.assert_close(penalty, penalty_ref)
        torch.testing.assert_close(reg.mean_length, a)
        torch.testing.assert_close(g.w_avg, w_avg)
        for (name, p), p_ref in zip(g.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, p_ref, msg=lambda m, name=name: f"{name} after iteration {it}: {m}")
    assert float(penalty) > 0 and float(w_avg.abs().sum()) > 0
