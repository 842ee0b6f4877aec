"""ONNX export of a generator (``lightning-gan export --format onnx``), checked against PyTorch with onnxruntime.

The graph (ONNX opset ``DEFAULT_OPSET`` = 17 unless asked otherwise) has the inputs

* ``z`` [N, z_dim]: the latents (float32), N free (a dynamic batch axis);
* ``c`` [N, c_dim]: one-hot classes, only for conditional generators (``c_dim > 0``);
* ``psi`` []: a scalar, only for style-based generators (``mapping``, ``synthesis`` and ``w_avg``): StyleGAN's
  truncation in W, ``w <- w_avg + psi (w - w_avg)`` on every layer's w (1 = none);

and one output ``images`` [N, C, H, W], the generator's own output (about [-1, 1]). The generator is exported
in eval mode: batch norms use their running statistics (BigGAN's standing statistics, if wanted, must be
estimated first: ``export --standing-stats N``), the mapping network does not update ``w_avg``. Noise inputs
(StyleGAN2) are not graph inputs: ``noise="const"`` (default) bakes the generator's fixed noise maps into the
graph (the images of ``synthesis(ws, noise_mode="const")``), ``noise="none"`` leaves the noise out.

``export_onnx`` writes the file, runs it with onnxruntime (CPU) on ``verify_seeds`` seeds (and both ends of a
few truncation values) next to the PyTorch generator, and reports the largest absolute difference; above
``tolerance`` it raises ``ConfigError``. A generator whose ops do not trace is refused in one line naming the
architecture and the failing op. onnx and onnxruntime are optional (``pip install lightning-gan[onnx]``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = ["DEFAULT_OPSET", "OnnxExport", "OnnxSampler", "export_onnx", "require_onnx", "style_based",
           "verification_inputs"]

DEFAULT_OPSET = 17
OnnxNoise = Literal["const", "none"]
NOISE_CHOICES = ("const", "none")
VERIFY_PSI = (1.0, 0.5)


def require_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules; a ConfigError saying what to install when either is missing."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the packages onnx and onnxruntime ({exc.name} is missing): "
                          f"pip install 'lightning-gan[onnx]'") from None
    return onnx, onnxruntime


def style_based(generator: nn.Module) -> bool:
    """Whether the generator has StyleGAN's W space: ``mapping``, ``synthesis`` and ``w_avg``."""
    return all(hasattr(generator, name) for name in ("mapping", "synthesis", "w_avg"))


class OnnxSampler(nn.Module):
    """The traced function: ``(z[, c][, psi]) -> images``, the generator in eval mode with fixed noise."""

    def __init__(self, *, generator: nn.Module, noise: OnnxNoise = "const") -> None:
        """
        Args:
            generator: the generator to export (a ``lightning_gan.interfaces.Generator``).
            noise: StyleGAN2's noise inputs: "const" (the generator's fixed maps) or "none".
        """
        super().__init__()
        if noise not in NOISE_CHOICES:
            raise ValueError(f"noise must be one of {NOISE_CHOICES}, got {noise!r}")
        self.generator, self.noise = generator, noise
        self.conditional = bool(getattr(generator, "c_dim", 0))
        self.has_psi = style_based(generator)

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs, in order: z, then c (conditional), then psi (style-based)."""
        return ["z"] + (["c"] if self.conditional else []) + (["psi"] if self.has_psi else [])

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, noise={self.noise!r}"

    def forward(self, z: Tensor, *rest: Tensor) -> Tensor:
        c = rest[0] if self.conditional else None
        g = self.generator
        if not self.has_psi:
            return g(z, c)
        psi = rest[-1]
        ws = g.mapping(z, c, update_w_avg=False)  # [N, num_ws, w_dim]
        w_avg = g.w_avg.to(ws.dtype)
        ws = w_avg + psi.to(ws.dtype) * (ws - w_avg)
        return g.synthesis(ws, noise_mode=self.noise)  # [N, C, H, W]


@dataclass
class OnnxExport:
    """What ``export_onnx`` wrote and how well the file reproduces PyTorch."""

    path: Path
    opset: int
    inputs: list[str]
    noise: str
    max_abs_diff: float  # over the verification seeds (and truncation values)
    seeds: list[int]
    psi: list[float]


@contextlib.contextmanager
def _constant_filters() -> Iterator[None]:
    """Trace the FIR resampling filters as constants.

    ``upfirdn2d`` expands its [kh, kw] filter to a depthwise kernel [C, 1, kh, kw] with ``C`` read from the
    input's shape; the tracer records that shape arithmetic, and ONNX's convolution needs a kernel of known
    shape. The kernel does not depend on the input (C is a fixed channel count), so it is built outside the
    trace and enters the graph as an initializer.
    """
    import importlib

    module = importlib.import_module("lightning_gan.ops.upfirdn2d")
    original = module._depthwise

    def depthwise(w: Tensor, channels: int) -> Tensor:
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return original(w, int(channels)).contiguous()  # [C, 1, kh, kw]
        finally:
            torch._C._set_tracing_state(state)

    module._depthwise = depthwise
    try:
        yield
    finally:
        module._depthwise = original


def _frozen(generator: nn.Module) -> nn.Module:
    """A copy of the (eval-mode) generator with every parametrization (e.g. spectral normalization) replaced by
    the weight it currently gives: in eval mode ``W / sigma(W)`` with the stored singular vectors, no power
    iteration, so the copy computes the same function with plain weights."""
    import copy

    from torch.nn.utils import parametrize

    frozen = copy.deepcopy(generator).eval()
    with torch.no_grad():
        for module in list(frozen.modules()):
            if not parametrize.is_parametrized(module):
                continue
            values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
            # torch's remove_parametrizations edits the Parametrized* class, which the deep copy shares with the
            # original: swap this module's class back to the plain one instead and store plain parameters
            module.__class__ = type(module).__bases__[0]
            del module._modules["parametrizations"]
            for name, value in values.items():
                module._parameters[name] = nn.Parameter(value, requires_grad=False)
    return frozen


@contextlib.contextmanager
def _eval_batch_norm(opset: int) -> Iterator[None]:
    """Trace eval-mode batch norm as ``(x - mean) / sqrt(var + eps) * weight + bias`` on [N, C, ...] inputs.

    torch's own ONNX conversion of ``F.batch_norm`` without an affine weight (a conditional batch norm whose
    gain comes from elsewhere) needs the channel count from the input's traced shape, which a dynamic batch axis
    leaves unknown; the running statistics know it. Training-mode batch norm is refused (the graph is for
    sampling).
    """
    from torch.onnx import symbolic_helper as helper

    @helper.parse_args("v", "v", "v", "v", "v", "i", "f", "f", "i")
    def batch_norm(g: Any, x: Any, weight: Any, bias: Any, mean: Any, var: Any, training: int, momentum: float,
                   eps: float, cudnn: int) -> Any:
        if training or helper._is_none(mean):
            raise ConfigError("aten::batch_norm in training mode (or without running statistics)")
        rank = helper._get_tensor_rank(x) or 4
        axes = g.op("Constant", value_t=torch.arange(1, rank - 1, dtype=torch.int64))  # [C] -> [C, 1, 1] for 4-D

        def per_channel(v: Any) -> Any:
            return g.op("Unsqueeze", v, axes) if rank > 2 else v

        std = g.op("Sqrt", g.op("Add", per_channel(var), g.op("Constant", value_t=torch.tensor(eps))))
        y = g.op("Div", g.op("Sub", x, per_channel(mean)), std)
        if not helper._is_none(weight):
            y = g.op("Mul", y, per_channel(weight))
        if not helper._is_none(bias):
            y = g.op("Add", y, per_channel(bias))
        return y

    torch.onnx.register_custom_op_symbolic("aten::batch_norm", batch_norm, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::batch_norm", opset)


def verification_inputs(generator: nn.Module, seeds: Sequence[int], psi: float | None = None) -> list[Tensor]:
    """The graph's inputs for ``seeds``: z from the generator's prior (one ``torch.Generator`` per seed), classes
    ``seed % c_dim`` one-hot, and ``psi`` where the graph takes it."""
    z = torch.cat([generator.sample_latents(1, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    inputs = [z.float()]  # [N, z_dim]
    c_dim = int(getattr(generator, "c_dim", 0))
    if c_dim:
        inputs.append(nn.functional.one_hot(torch.tensor([s % c_dim for s in seeds]), c_dim).float())  # [N, c_dim]
    if style_based(generator):
        inputs.append(torch.tensor(1.0 if psi is None else float(psi)))  # []
    return inputs


def _failing_op(exc: BaseException) -> str:
    """The op an export error names (``aten::...`` or the operator in quotes), else its first line."""
    text = str(exc)
    for pattern in (r"operator '([^']+)'", r"(aten::\w+)", r"(prim::\w+)", r"(onnx::\w+)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()


def export_onnx(generator: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET, noise: OnnxNoise = "const",
                verify_seeds: int = 4, tolerance: float = 1e-4, architecture: str | None = None) -> OnnxExport:
    """Write ``generator`` as an ONNX graph ``(z[, c][, psi]) -> images`` and check it against PyTorch.

    Args:
        generator: the generator (moved to the CPU and put in eval mode for the export).
        path: the ``.onnx`` file to write.
        opset: the ONNX opset (17 by default).
        noise: StyleGAN2's noise inputs: "const" (fixed maps baked in) or "none".
        verify_seeds: seeds 0..verify_seeds-1 run through both onnxruntime and PyTorch.
        tolerance: the largest absolute difference allowed between the two.
        architecture: the architecture's name, for messages (default: the generator's class name).
    """
    onnx, ort = require_onnx()
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"ONNX export path must end in .onnx, got {path}")
    if verify_seeds < 1:
        raise ValueError(f"verify_seeds must be >= 1, got {verify_seeds}")
    name = architecture or type(generator).__name__
    generator = generator.cpu().eval()
    sampler = OnnxSampler(generator=generator, noise=noise).eval()  # the reference
    traced = OnnxSampler(generator=_frozen(generator), noise=noise).eval()  # what the graph holds
    if len(getattr(generator, "output_shape", ())) != 3:
        raise ConfigError(f"{name}: ONNX export is for image generators [N, C, H, W]; this one makes samples of shape "
                          f"{tuple(getattr(generator, 'output_shape', ()))}")
    example = tuple(verification_inputs(generator, [0, 1], 0.7))
    names = sampler.input_names
    dynamic = {n: {0: "batch"} for n in names if n != "psi"}
    dynamic["images"] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    try:
        with torch.no_grad(), _constant_filters(), _eval_batch_norm(int(opset)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic and constant folding
            torch.onnx.export(traced, example, str(path), opset_version=int(opset), input_names=names,
                              output_names=["images"], dynamic_axes=dynamic, dynamo=False)
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 (whatever the tracer or the converter raise: one line, with the op)
        raise ConfigError(f"the architecture {name} cannot be exported to ONNX (opset {opset}): {_failing_op(exc)} "
                          f"does not trace") from exc

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    seeds = list(range(verify_seeds))
    psis = list(VERIFY_PSI) if sampler.has_psi else [1.0]
    worst = 0.0
    for psi in psis:
        inputs = verification_inputs(generator, seeds, psi)
        with torch.no_grad():
            reference = sampler(*inputs).float().numpy()  # [N, C, H, W]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
        if got.shape != reference.shape:
            raise ConfigError(f"{name}: the ONNX graph makes images of shape {list(got.shape)}, PyTorch "
                              f"{list(reference.shape)}")
        worst = max(worst, float(abs(got - reference).max()))
    if not worst <= tolerance:
        raise ConfigError(f"{path}: the ONNX graph differs from the PyTorch generator by up to {worst:.3g} on seeds "
                          f"0-{verify_seeds - 1} (tolerance {tolerance:g}); the export is not faithful")
    return OnnxExport(path=path, opset=int(opset), inputs=names, noise=noise if sampler.has_psi else "n/a",
                      max_abs_diff=worst, seeds=seeds, psi=psis)

