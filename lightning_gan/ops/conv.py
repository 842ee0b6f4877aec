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


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] = 0, groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv2d`` (no dilation) with fast second derivatives on the CPU."""
    if not _fast_path(x, weight, bias):
        return F.conv2d(x, weight, bias, stride, padding, 1, groups)
    return _Conv2d.apply(_non_leaf(x), _non_leaf(weight), _non_leaf(bias), _pair(stride), _pair(padding), groups)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
                     padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0,
                     groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv_transpose2d`` (no dilation) with fast second derivatives on the CPU."""
    if not _fast_path(x, weight, bias):
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups)
    return _ConvTranspose2d.apply(_non_leaf(x), _non_leaf(weight), _non_leaf(bias), _pair(stride), _pair(padding),
                                  _pair(output_padding), groups)


def _weight_grad(dy: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int], transposed: bool,
                 output_padding: list[int], groups: int) -> Tensor:
    return torch.ops.aten.convolution_backward(dy, x, weight, None, stride, padding, [1, 1], transposed,
                                               output_padding, groups, [False, True, False])[1]


def _first_order(ctx, dy: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int],  # noqa: ANN001
                 transposed: bool, output_padding: list[int], groups: int, has_bias: bool) -> tuple:
    """All needed gradients in one ``convolution_backward`` call (no graph is being built)."""
    mask = [_needed(ctx, 0), _needed(ctx, 1), has_bias and _needed(ctx, 2)]
    if not any(mask):
        return None, None, None
    bias_sizes = [weight.shape[1] * groups if transposed else weight.shape[0]] if mask[2] else None
    dx, dw, db = torch.ops.aten.convolution_backward(dy, x, weight, bias_sizes, stride, padding, [1, 1], transposed,
                                                     output_padding, groups, mask)
    return (dx if mask[0] else None), (dw if mask[1] else None), (db if mask[2] else None)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.config = (stride, padding, groups, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, dy: Tensor):  # noqa: ANN205
        x, weight = ctx.saved_tensors
        stride, padding, groups, has_bias = ctx.config
        if not torch.is_grad_enabled():
            return (*_first_order(ctx, dy, x, weight, stride, padding, False, [0, 0], groups, has_bias),
                    None, None, None)
        dx = dw = db = None
        if _needed(ctx, 0):
            # the transposed convolution's output size, made to match x's exactly
            out = [(dy.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + weight.shape[i + 2] for i in (0, 1)]
            extra = [x.shape[i + 2] - out[i] for i in (0, 1)]
            dx = conv_transpose2d(dy, weight, None, stride, padding, extra, groups)
        if _needed(ctx, 1):
            dw = _weight_grad(dy, x, weight, stride, padding, False, [0, 0], groups)
        if has_bias and _needed(ctx, 2):
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None


class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                output_padding: list[int], groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.config = (stride, padding, output_padding, groups, bias is not None)
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups)

    @staticmethod
    def backward(ctx, dy: Tensor):  # noqa: ANN205
        x, weight = ctx.saved_tensors
        stride, padding, output_padding, groups, has_bias = ctx.config
        if not torch.is_grad_enabled():
            return (*_first_order(ctx, dy, x, weight, stride, padding, True, output_padding, groups, has_bias),
                    None, None, None, None)
        dx = dw = db = None
        if _needed(ctx, 0):
            dx = conv2d(dy, weight, None, stride, padding, groups)
        if _needed(ctx, 1):
            dw = _weight_grad(dy, x, weight, stride, padding, True, output_padding, groups)
        if has_bias and _needed(ctx, 2):
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None, None
