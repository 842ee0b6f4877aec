"""2-D convolutions whose second derivatives run on the fast convolution kernels (CPU).

R1 and the path-length penalty differentiate a network twice: ``grad(D(x), x, create_graph=True)`` builds
the first backward as a graph, and the penalty's backward differentiates it again. For a convolution
``y = conv2d(x, w)`` the first backward is ``dx = conv_transpose2d(dy, w)``; PyTorch differentiates that
node with a generic formula that computes the weight term as a convolution with batch and channels swapped
(on oneDNN/CPU about 20x slower per FLOP than the weight-gradient kernel). Here the backward is written
with ordinary differentiable operations instead:

* ``conv2d``: ``dx = conv_transpose2d(dy, w)`` (its adjoint), ``dw`` = the convolution's weight-gradient
  kernel, ``db = sum(dy)``;
* ``conv_transpose2d``: ``dx = conv2d(dy, w)``, ``dw`` and ``db`` likewise.

so the second derivative is again a convolution and a weight-gradient kernel, the same primitives as a first
backward. A backward that builds no graph (every first-order backward) is PyTorch's own single
``convolution_backward`` call. Each backward computes only the gradients the running backward pass needs
(``autograd.grad(..., inputs=x)`` skips the weight gradient, as PyTorch's own convolution does). The numbers equal
``torch.nn.functional``'s to float rounding, first and second derivatives alike (tests: gradcheck and
gradgradcheck). Elsewhere than on the CPU, under autocast, or when nothing needs a gradient, these are plain
``torch.nn.functional`` calls.

The signatures are ``torch.nn.functional``'s: ``conv2d(input, weight, bias=None, stride=1, padding=0,
dilation=1, groups=1)`` and ``conv_transpose2d(input, weight, bias=None, stride=1, padding=0,
output_padding=0, groups=1, dilation=1)``, dilation included (the backward's convolutions take the same
dilation). ``conv2d`` also takes ``padding="valid"`` (no padding) and ``padding="same"`` (stride 1 only):
per spatial dimension the total padding is ``d (k - 1)``, ``floor(d (k - 1) / 2)`` before and the rest after,
as PyTorch does; an odd total pads the input's end by one more (a differentiable ``F.pad``) before a
symmetric convolution.

``conv2d``'s input gradient is a transposed convolution of output size, per spatial dimension,
``(H_out - 1) s - 2 p + d (k - 1) + 1 + output_padding``; ``output_padding`` (in ``[0, s - 1]``) makes it
``H_in`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv2d", "conv_transpose2d"]


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def _fast_path(x: Tensor, *tensors: Tensor | None) -> bool:
    """The CPU, something to differentiate, and no autocast (whose casts must stay in the graph)."""
    return (x.device.type == "cpu" and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and any(t is not None and t.requires_grad for t in (x, *tensors)))


def _non_leaf(t: Tensor | None) -> Tensor | None:
    """A leaf that requires grad behind a view, so the backward can ask whether the engine will use its
    gradient (``_will_engine_execute_node`` refuses leaves during ``autograd.grad``)."""
    return t.view_as(t) if t is not None and t.is_leaf and t.requires_grad else t


def _needed(ctx, index: int) -> bool:  # noqa: ANN001 (an autograd context)
    """Whether the running backward pass uses the gradient of input ``index``."""
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except RuntimeError:  # a leaf during autograd.grad: no way to tell, compute it
        return True


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,  # noqa: A002
           padding: str | int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv2d`` (same arguments, ``padding="same"``/``"valid"`` too) with fast second
    derivatives on the CPU."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same' or numbers, got {padding!r}")
        if padding == "same" and _pair(stride) != [1, 1]:
            raise ValueError(f"padding='same' needs stride 1, got stride {stride}; give the padding as numbers "
                             "instead")
    if not _fast_path(input, weight, bias):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    stride, dilation = _pair(stride), _pair(dilation)
    if padding == "valid":
        padding = [0, 0]
    elif padding == "same":  # before = floor(d (k - 1) / 2) per dimension, the rest after
        total = [dilation[i] * (weight.shape[i + 2] - 1) for i in (0, 1)]
        before, after = [t // 2 for t in total], [t - t // 2 for t in total]
        if before != after:  # an odd total: one more at the end, [N, C, H + extra_h, W + extra_w]
            input = F.pad(input, (0, after[1] - before[1], 0, after[0] - before[0]))
        padding = before
    return _Conv2d.apply(_non_leaf(input), _non_leaf(weight), _non_leaf(bias), stride, _pair(padding), dilation,
                         groups)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> Tensor:
    """``torch.nn.functional.conv_transpose2d`` (same arguments) with fast second derivatives on the CPU."""
    if not _fast_path(input, weight, bias):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _ConvTranspose2d.apply(_non_leaf(input), _non_leaf(weight), _non_leaf(bias), _pair(stride),
                                  _pair(padding), _pair(output_padding), groups, _pair(dilation))


def _weight_grad(dy: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int],
                 transposed: bool, output_padding: list[int], groups: int) -> Tensor:
    return torch.ops.aten.convolution_backward(dy, x, weight, None, stride, padding, dilation, transposed,
                                               output_padding, groups, [False, True, False])[1]


def _first_order(ctx, dy: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int],  # noqa: ANN001
                 dilation: list[int], transposed: bool, output_padding: list[int], groups: int,
                 has_bias: bool) -> tuple:
    """All needed gradients in one ``convolution_backward`` call (no graph is being built)."""
    mask = [_needed(ctx, 0), _needed(ctx, 1), has_bias and _needed(ctx, 2)]
    if not any(mask):
        return None, None, None
    bias_sizes = [weight.shape[1] * groups if transposed else weight.shape[0]] if mask[2] else None
    dx, dw, db = torch.ops.aten.convolution_backward(dy, x, weight, bias_sizes, stride, padding, dilation,
                                                     transposed, output_padding, groups, mask)
    return (dx if mask[0] else None), (dw if mask[1] else None), (db if mask[2] else None)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                dilation: list[int], groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.config = (stride, padding, dilation, groups, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, dy: Tensor):  # noqa: ANN205
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.config
        if not torch.is_grad_enabled():
            return (*_first_order(ctx, dy, x, weight, stride, padding, dilation, False, [0, 0], groups, has_bias),
                    None, None, None, None)
        dx = dw = db = None
        if _needed(ctx, 0):
            # the transposed convolution's output size (module docstring), made to match x's exactly
            out = [(dy.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[i + 2] - 1) + 1
                   for i in (0, 1)]
            extra = [x.shape[i + 2] - out[i] for i in (0, 1)]
            dx = conv_transpose2d(dy, weight, None, stride, padding, extra, groups, dilation)
        if _needed(ctx, 1):
            dw = _weight_grad(dy, x, weight, stride, padding, dilation, False, [0, 0], groups)
        if has_bias and _needed(ctx, 2):
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None, None


class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                output_padding: list[int], groups: int, dilation: list[int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.config = (stride, padding, output_padding, groups, dilation, bias is not None)
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def backward(ctx, dy: Tensor):  # noqa: ANN205
        x, weight = ctx.saved_tensors
        stride, padding, output_padding, groups, dilation, has_bias = ctx.config
        if not torch.is_grad_enabled():
            return (*_first_order(ctx, dy, x, weight, stride, padding, dilation, True, output_padding, groups,
                                  has_bias), None, None, None, None, None)
        dx = dw = db = None
        if _needed(ctx, 0):
            dx = conv2d(dy, weight, None, stride, padding, dilation, groups)
        if _needed(ctx, 1):
            dw = _weight_grad(dy, x, weight, stride, padding, dilation, True, output_padding, groups)
        if has_bias and _needed(ctx, 2):
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None, None, None
