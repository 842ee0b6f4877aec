"""ONNX export: the onnxruntime output equals PyTorch's for dcgan, stylegan2 and biggan; refusals in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator

pytest.importorskip("onnx", reason="ONNX export needs the optional extra: pip install 'lightning-gan[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the optional extra: pip install 'lightning-gan[onnx]'")

from lightning_gan.onnx_export import OnnxSampler, export_onnx, verification_inputs  # noqa: E402

TINY = {
    "dcgan": dict(resolution=16, z_dim=8, c_dim=3, base_channels=4, max_channels=8),
    "stylegan2": dict(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                      channels=3),
    "biggan": dict(resolution=32, z_dim=12, c_dim=3, shared_dim=4, g_widths=[8, 8, 4, 4], d_widths=[4, 4, 4, 4]),
}


def tiny_generator(name: str) -> Generator:
    torch.manual_seed(0)
    spec = registry.resolve("architectures", {"class_path": name, "init_args": TINY[name]})
    g = spec.build().generator
    for p in g.parameters():  # trained-looking weights: the noise strengths and biases start at 0
        if p.dim() <= 1:
            p.data.normal_(0, 0.3)
    if hasattr(g, "w_avg"):
        g.w_avg.normal_()
    for m in g.modules():  # running statistics other than the initial (0, 1)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


@pytest.mark.parametrize("name", ["dcgan", "stylegan2", "biggan"])
def test_onnx_output_equals_pytorch(name: str, tmp_path) -> None:
    g = tiny_generator(name)
    result = export_onnx(g, tmp_path / "G.onnx", architecture=name)
    assert result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == result.inputs
    sampler = OnnxSampler(generator=g).eval()
    for seeds, psi in (([5, 6, 7], 0.6), ([11], 1.0)):  # other batch sizes than the traced one (dynamic axis)
        inputs = verification_inputs(g, seeds, psi)
        got = session.run(None, {n: t.numpy() for n, t in zip(result.inputs, inputs)})[0]
        with torch.no_grad():
            want = sampler(*inputs)
        assert got.shape == (len(seeds), *g.output_shape)
        assert abs(got - want.numpy()).max() <= 1e-4


def test_conditional_stylegan2_takes_z_c_and_psi(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(TINY, "stylegan2", {**TINY["stylegan2"], "c_dim": 3})
    g = tiny_generator("stylegan2")
    result = export_onnx(g, tmp_path / "G.onnx")
    assert result.inputs == ["z", "c", "psi"] and result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    z, c, _ = verification_inputs(g, [4, 5])
    with torch.no_grad():
        want = g.synthesis(g.w_avg + 0.8 * (g.mapping(z, c) - g.w_avg), noise_mode="const")
    got = session.run(None, {"z": z.numpy(), "c": c.numpy(), "psi": torch.tensor(0.8).numpy()})[0]
    assert abs(got - want.numpy()).max() <= 1e-4


def test_export_leaves_the_generator_as_it_was(tmp_path) -> None:
    from torch.nn.utils import parametrize

    g = tiny_generator("biggan")  # spectral norm: the traced copy's is frozen, the generator's must stay
    inputs = verification_inputs(g, [0, 1])
    with torch.no_grad():
        before = g(*inputs)
    export_onnx(g, tmp_path / "G.onnx")
    assert parametrize.is_parametrized(g.linear, "weight") and not g.training
    with torch.no_grad():
        torch.testing.assert_close(g(*inputs), before, atol=0, rtol=0)


def test_stylegan2_graph_truncates_towards_w_avg_with_fixed_noise(tmp_path) -> None:
    g = tiny_generator("stylegan2")
    result = export_onnx(g, tmp_path / "G.onnx")
    assert result.inputs == ["z", "psi"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    z = verification_inputs(g, [3, 4])[0]
    with torch.no_grad():  # psi = 0: every sample is the image of w_avg; psi = 0.5 the hand-truncated ws
        centre = g.synthesis(g.w_avg.expand(2, -1), noise_mode="const")
        ws = g.mapping(z)
        half = g.synthesis(g.w_avg + 0.5 * (ws - g.w_avg), noise_mode="const")
    at0 = session.run(None, {"z": z.numpy(), "psi": torch.tensor(0.0).numpy()})[0]
    at_half = session.run(None, {"z": z.numpy(), "psi": torch.tensor(0.5).numpy()})[0]
    assert abs(at0 - centre.numpy()).max() <= 1e-4
    assert abs(at_half - half.numpy()).max() <= 1e-4


def test_stylegan2_noise_none_leaves_the_noise_out(tmp_path) -> None:
    g = tiny_generator("stylegan2")
    result = export_onnx(g, tmp_path / "G.onnx", noise="none")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    z = verification_inputs(g, [0])[0]
    with torch.no_grad():
        without = g.synthesis(g.mapping(z), noise_mode="none")
        with_const = g.synthesis(g.mapping(z), noise_mode="const")
    got = session.run(None, {"z": z.numpy(), "psi": torch.tensor(1.0).numpy()})[0]
    assert abs(got - without.numpy()).max() <= 1e-4
    assert abs(got - with_const.numpy()).max() > 1e-3  # the noise strengths are not 0: it matters


class _SVDGenerator(Generator):
    """A generator whose forward uses an op ONNX has no symbolic for (an SVD)."""

    def __init__(self) -> None:
        super().__init__(z_dim=4, output_shape=(1, 2, 2))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        s = torch.linalg.svdvals(z.view(-1, 2, 2))  # [N, 2]
        return s.repeat(1, 2).view(-1, 1, 2, 2)


def test_an_op_that_does_not_trace_is_refused_naming_architecture_and_op(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        export_onnx(_SVDGenerator(), tmp_path / "G.onnx", architecture="svd-plugin")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "svd-plugin" in message and "svd" in message.split("svd-plugin", 1)[1]


def test_a_wrong_suffix_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export_onnx(tiny_generator("dcgan"), tmp_path / "G.bin")
