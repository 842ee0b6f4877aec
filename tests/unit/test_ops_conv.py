"""``lightning_gan.ops.conv``: convolutions whose backward is written with convolutions, checked against
finite differences (first and second derivatives) and against ``torch.nn.functional`` in an R1-style
double backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_gan.ops import conv2d, conv_transpose2d

CASES = [  # stride, padding, dilation, groups, bias, output_padding (transposed only)
    (1, 1, 1, 1, True, 0),
    (2, 1, 1, 1, False, 1),
    (2, 0, 1, 2, True, 0),
    ((2, 1), (0, 1), 1, 1, True, (1, 0)),
    (1, 2, 2, 1, True, 0),
    ((2, 1), (1, 2), (2, 3), 2, False, (1, 0)),
    (2, 1, 2, 1, True, 1),
]


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups", "bias", "output_padding"), CASES)
@pytest.mark.parametrize("transposed", [False, True])
def test_first_and_second_derivatives_by_finite_differences(stride, padding, dilation, groups, bias, output_padding,
                                                            transposed: bool) -> None:  # noqa: ANN001
    """Positional arguments in torch.nn.functional's order; values equal its, derivatives pass gradcheck and
    gradgradcheck (dilation included)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    shape = (2, 4 // groups, 3, 3) if transposed else (4, 2 // groups, 3, 3)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None

    if transposed:
        def fn(x, w, b):  # noqa: ANN001, ANN202
            return conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)

        ref = F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    else:
        def fn(x, w, b):  # noqa: ANN001, ANN202
            return conv2d(x, w, b, stride, padding, dilation, groups)

        ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(fn(x, w, b), ref, rtol=0, atol=1e-12)
    inputs = (x, w, b) if bias else (x, w)
    wrapped = (lambda x, w, b=None: fn(x, w, b))  # noqa: E731
    assert torch.autograd.gradcheck(wrapped, inputs)
    assert torch.autograd.gradgradcheck(wrapped, inputs)


def _first_and_second_derivatives(conv, x, w, b, **kwargs) -> tuple:  # noqa: ANN001
    """y, dL/dx with a graph (L = sum(y^2 * r)), and the gradients of ||dL/dx||^2 w.r.t. x, w and b."""
    xs, ws, bs = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
    y = conv(xs, ws, bs, **kwargs)
    r = torch.linspace(0.5, 1.5, y.numel(), dtype=y.dtype).reshape(y.shape)
    (dx,) = torch.autograd.grad((y.square() * r).sum(), xs, create_graph=True)
    second = torch.autograd.grad(dx.square().sum(), (xs, ws, bs))
    return (y.detach(), dx.detach(), *second)


@pytest.mark.parametrize("kernel", [(3, 3), (4, 4), (2, 5)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_on_the_fast_path_matches_torch(padding, dilation, kernel) -> None:
    """padding="same" (even and odd totals d (k - 1), where the end gets one more) and "valid": values, the
    first derivative and the double backward equal torch.nn.functional's, keywords as in F.conv2d."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 14, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    ours = _first_and_second_derivatives(conv2d, x, w, b, padding=padding, dilation=dilation)
    ref = _first_and_second_derivatives(F.conv2d, x, w, b, padding=padding, dilation=dilation)
    if padding == "same":
        assert ours[0].shape[2:] == x.shape[2:]
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_same_padding_passes_gradgradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(x, w):  # noqa: ANN001, ANN202
        return conv2d(x, w, None, 1, "same", (2, 1))

    assert fn(x, w).grad_fn is not None and fn(x, w).shape[2:] == x.shape[2:]
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_bad_string_padding_is_one_clear_error(requires_grad: bool) -> None:
    x = torch.randn(1, 2, 5, 5, requires_grad=requires_grad)
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same' or numbers"):
        conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        conv2d(x, w, stride=2, padding="same")


@pytest.mark.parametrize("channels_last", [False, True])
def test_r1_style_double_backward_matches_torch(channels_last: bool) -> None:
    """grad of ||d/dx sum(D(x)^2)||^2 w.r.t. the weights, D = transposed conv -> lrelu -> strided conv, equals
    the same computation through torch.nn.functional (which differentiates its convolutions generically)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 5, 6, 6, generator=g)
    w1, w2 = torch.randn(5, 7, 3, 3, generator=g), torch.randn(8, 7, 3, 3, generator=g)
    if channels_last:
        x0, w1, w2 = (t.contiguous(memory_format=torch.channels_last) for t in (x0, w1, w2))
    grads = []
    for ct, c in ((conv_transpose2d, conv2d), (F.conv_transpose2d, F.conv2d)):
        p1, p2 = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
        x = x0.clone().requires_grad_(True)
        h = F.leaky_relu(ct(x, p1 * 0.3, None, 2), 0.2)
        y = c(h, p2 * 0.2, None, 2, 1)
        (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        dx.square().sum().backward()
        grads.append((dx.detach(), p1.grad, p2.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inner_backward_skips_unneeded_weight_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a graph built (create_graph=True), autograd.grad(..., inputs=x) never runs the weight-gradient kernel;
    the backward of that graph runs it once."""
    from lightning_gan.ops import conv as conv_module

    calls = []
    original = conv_module._weight_grad
    monkeypatch.setattr(conv_module, "_weight_grad", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3))
    (dx,) = torch.autograd.grad(conv2d(x, w, None, 1, 1).square().sum(), x, create_graph=True)
    assert calls == []
    dx.square().sum().backward()  # the outer backward: first order over the recorded transposed conv
    assert w.grad is not None and w.grad.abs().sum() > 0
    calls.clear()
    w.grad = None
    y = conv2d(x, w, None, 1, 1).square().sum()
    torch.autograd.grad(y, w, create_graph=True)
    assert calls == [1]


def test_without_gradients_it_is_the_functional_call() -> None:
    x, w = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3)
    y = conv2d(x, w, None, 1, 1)
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1), rtol=0, atol=0)


def test_under_cpu_autocast_the_casts_stay_in_the_graph() -> None:
    """bf16 autocast: the functional call (recorded casts), so the backward sees matching dtypes."""
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv2d(x, w * 1.0, None, 1, 1)
        ref = F.conv2d(x, w * 1.0, None, 1, 1)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    y.float().square().sum().backward()
    assert w.grad is not None and x.grad is not None and w.grad.dtype == torch.float32
