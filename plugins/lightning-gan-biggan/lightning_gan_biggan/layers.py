"""BigGAN's layers: conditional batch norm, SAGAN self-attention, residual G and D blocks, SN and initialization.

Written from the papers: Brock et al. 2019 (BigGAN: conditional BN fed by a shared class embedding and a chunk
of z, orthogonal initialization, self-attention, residual blocks), Miyato et al. 2018 (spectral normalization,
the projection discriminator), Zhang et al. 2019 (SAGAN: self-attention with a learnable gate that starts at 0).
One class per layer concept; the maths in the functions the layers call.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = [
    "BN_STATISTICS",
    "ConditionalBatchNorm2d",
    "DBlock",
    "GBlock",
    "INITS",
    "SelfAttention2d",
    "all_reduced_moments",
    "apply_spectral_norm",
    "class_grouped_moments",
    "init_weights_",
    "orthogonal_",
]

BNStatistics = Literal["batch", "class_grouped"]
BN_STATISTICS = ("batch", "class_grouped")
Init = Literal["orthogonal", "normal", "xavier"]
INITS = ("orthogonal", "normal", "xavier")


def class_grouped_moments(x: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class mean and biased variance of every channel over the samples of that class and all pixels.

    ``mu_k = mean_{i: y_i = k, h, w} x[i, :, h, w]``, ``var_k = mean_{i: y_i = k, h, w} (x[i, :, h, w] - mu_k)^2``.

    Args:
        x: activations [N, C, H, W].
        labels: class of every sample [N] (int64).
        num_classes: K.

    Returns:
        ``(mean [K, C], var [K, C], count [K])``; ``count`` is the number of samples of each class in the batch
        (mean and var of an absent class are 0).
    """
    onehot = F.one_hot(labels, num_classes).to(x.dtype)  # [N, K]
    count = onehot.sum(0)  # [K]
    share = onehot / count.clamp(min=1)  # [N, K]: 1 / N_k for the samples of class k
    mean = share.t() @ x.mean((2, 3))  # [K, C]
    centered = x - mean[labels][:, :, None, None]  # [N, C, H, W]
    var = share.t() @ centered.pow(2).mean((2, 3))  # [K, C]
    return mean, var, count


class _AllReduceSum(torch.autograd.Function):
    """``sum_r t_r`` over the processes of a group, differentiable: every process gets the sum, and the gradient
    of each ``t_r`` is the sum over processes of the gradients that reached the sum (``d sum_r' L_r' / d t_r``)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total, None


def all_reduced_moments(mean: Tensor, var: Tensor, count: Tensor, group: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and biased variance over the samples of every process, from each process's own moments; one
    all-reduce, differentiable (the gradient flows through the global statistics as in one process with all the
    samples).

    With process r's mean ``mu_r``, biased variance ``v_r`` and count ``n_r`` (values per channel),
    ``n = sum_r n_r``, ``mu = (1/n) sum_r n_r mu_r``, ``var = (1/n) sum_r n_r (v_r + mu_r^2) - mu^2``: the sums
    travel packed in one float64 tensor [..., 2C + 1] (float64 so that the last subtraction does not cancel).
    Groups (classes) that no process holds get mean 0 and variance 0.

    Args:
        mean: this process's means [..., C] (``...``: no dims for batch statistics, [K] per class).
        var: this process's biased variances [..., C].
        count: this process's number of values behind each mean [...] (0 for an absent group).
        group: the process group (None: all processes).

    Returns:
        ``(mean [..., C], var [..., C])`` in ``mean``'s dtype and the global count [...] (float64).
    """
    n_r = count.to(torch.float64).detach()
    mu_r = mean.to(torch.float64)
    local = torch.cat([mu_r * n_r[..., None], (var.to(torch.float64) + mu_r.square()) * n_r[..., None],
                       n_r[..., None]], dim=-1)  # [..., 2C + 1]: sum, sum of squares, count
    total = _AllReduceSum.apply(local, group)
    channels = mean.shape[-1]
    n = total[..., -1].detach()  # [...]
    scale = 1.0 / n.clamp(min=1)[..., None]
    mu = total[..., :channels] * scale  # [..., C]
    sigma2 = (total[..., channels:2 * channels] * scale - mu.square()).clamp(min=0)
    return mu.to(mean.dtype), sigma2.to(mean.dtype), n


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are linear maps of a conditioning vector (BigGAN's conditional BN).

    ``y = (1 + W_gamma e) * (x - mu) / sqrt(var + eps) + W_beta e``, with ``e`` [N, cond_dim] the concatenation of
    the shared class embedding and this block's chunk of z (the embedding alone without hierarchical z).
    ``cond_dim = 0`` is plain batch norm with a learned affine ``y = weight * x_hat + bias``.

    ``statistics`` chooses what ``mu`` and ``var`` are while training:

    * ``"batch"``: over the whole batch (standard BN). Running statistics [C] are exponential averages of the
      batch statistics (``momentum``), or cumulative averages when ``momentum`` is None; evaluation uses them.
    * ``"class_grouped"``: over the samples of each class in the batch separately, so a sample's output does not
      depend on the samples of other classes (no class leakage through the batch statistics). Running
      statistics are kept per class ([K, C]); a class's running mean/var is updated only from batches that contain
      it, and evaluation normalizes each sample with its own class's running statistics, which is what training
      did. ``num_batches_tracked`` is per class too ([K]: the batches that contained the class).

    Running variances are unbiased (``n / (n - 1)`` with n the number of values averaged), as in ``nn.BatchNorm2d``.

    **Several processes** (``set_sync_batchnorm``, or ``sync=True``): while training under an initialized process
    group of two or more processes, ``mu`` and ``var`` are taken over the samples of every process
    (``all_reduced_moments``: one all-reduce per forward pass), per class for ``"class_grouped"``; the output and
    the gradients are those of one process holding the whole batch, and the running statistics, updated from the
    global statistics (unbiased with the global n), stay the same on every process. Without a process group, or
    with one process, it is the plain layer. Every process must then run the layer's training-mode forward (and
    backward) passes in the same order.
    """

    def __init__(self, num_features: int, *, cond_dim: int = 0, statistics: BNStatistics = "batch",
                 num_classes: int = 0, eps: float = 1e-5, momentum: float | None = 0.1, sync: bool = False) -> None:
        """
        Args:
            num_features: channels C.
            cond_dim: size of the conditioning vector ``e``; 0 = plain BN with a learned affine.
            statistics: ``"batch"`` or ``"class_grouped"`` (needs ``num_classes`` > 0 and the labels in forward).
            num_classes: K, the number of classes (only for ``"class_grouped"``).
            eps: added to the variance.
            momentum: weight of a new batch in the running statistics; None = cumulative average.
            sync: batch statistics over all processes of the default group (see ``set_sync_batchnorm``).
        """
        super().__init__()
        if statistics not in BN_STATISTICS:
            raise ValueError(f"bn statistics must be one of {BN_STATISTICS}, got {statistics!r}")
        if statistics == "class_grouped" and num_classes < 1:
            raise ValueError("class_grouped batch statistics need classes: use it with a conditional model (c_dim > 0)")
        self.num_features, self.cond_dim, self.statistics = num_features, cond_dim, statistics
        self.num_classes, self.eps, self.momentum = num_classes, eps, momentum
        self.sync, self.process_group = bool(sync), None
        if cond_dim:
            self.gain_map = nn.Linear(cond_dim, num_features, bias=False)  # gamma(e)
            self.bias_map = nn.Linear(cond_dim, num_features, bias=False)  # beta(e)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.offset = nn.Parameter(torch.zeros(num_features))
        groups = (num_classes,) if statistics == "class_grouped" else ()
        self.register_buffer("running_mean", torch.zeros(*groups, num_features))
        self.register_buffer("running_var", torch.ones(*groups, num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(groups, dtype=torch.long))

    def set_sync_batchnorm(self, process_group: Any = None) -> None:
        """Take the training batch statistics over every process of ``process_group`` (None: all processes), as
        ``--trainer.sync_batchnorm=true`` asks of torch's batch norms (class docstring, "Several processes")."""
        self.sync, self.process_group = True, process_group

    def _synchronized(self) -> bool:
        """Whether this training forward pass all-reduces its statistics (synced, and two or more processes)."""
        return (self.sync and self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batches tracked (what standing statistics start from)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _factor(self, tracked: Tensor) -> Tensor:
        """Weight of the new batch: ``momentum``, or ``1 / batches tracked`` (cumulative average) when None."""
        if self.momentum is None:
            return 1.0 / tracked.clamp(min=1).to(self.running_mean.dtype)
        return torch.full_like(tracked, self.momentum, dtype=self.running_mean.dtype)

    def normalize(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(x - mu) / sqrt(var + eps)`` with the statistics of the mode (and the running ones in eval)."""
        synchronized = self._synchronized()
        if self.statistics == "batch" and synchronized:
            xf = x if x.dtype == torch.float64 else x.float()  # statistics in at least float32
            var_r, mean_r = torch.var_mean(xf, dim=(0, 2, 3), correction=0)  # [C]: this process's moments
            n_r = torch.full((), float(x.numel() // x.shape[1]), dtype=torch.float64, device=x.device)  # values
            mean, var, n = all_reduced_moments(mean_r, var_r, n_r, self.process_group)  # [C], [C], []
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self._factor(self.num_batches_tracked)  # [] (the same on every process)
                unbiased = var * (n / (n - 1).clamp(min=1)).to(var.dtype)
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(factor.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(factor.dtype))
            x_hat = (xf - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + self.eps)
            return x_hat.to(x.dtype)
        if self.statistics == "batch":
            factor = 0.0
            if self.training:
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, self.training, factor, self.eps)
        if labels is None:
            raise ValueError("class_grouped batch norm needs the class of every sample")
        if not self.training:
            mean, var = self.running_mean[labels], self.running_var[labels]  # [N, C]
        else:
            xf = x if x.dtype == torch.float64 else x.float()  # statistics in at least float32
            mean_k, var_k, count = class_grouped_moments(xf, labels, self.num_classes)
            n = count * x.shape[2] * x.shape[3]  # values per class and channel
            if synchronized:  # every process's samples of each class; counts [K] summed over processes
                mean_k, var_k, n = all_reduced_moments(mean_k, var_k, n, self.process_group)
                n = n.to(count.dtype)
            with torch.no_grad():
                present = n > 0
                self.num_batches_tracked.add_(present.long())
                unbiased = var_k * (n / (n - 1).clamp(min=1))[:, None]
                w = (self._factor(self.num_batches_tracked) * present)[:, None]  # [K, 1]; 0 for absent classes
                self.running_mean.mul_(1 - w).add_(w * mean_k)
                self.running_var.mul_(1 - w).add_(w * unbiased)
            mean, var = mean_k[labels], var_k[labels]  # [N, C]
        xf = x if x.dtype == torch.float64 else x.float()
        x_hat = (xf - mean[:, :, None, None].to(xf.dtype)) * torch.rsqrt(var[:, :, None, None].to(xf.dtype) + self.eps)
        return x_hat.to(x.dtype)

    def forward(self, x: Tensor, cond: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """
        Args:
            x: activations [N, C, H, W].
            cond: conditioning vectors ``e`` [N, cond_dim] (None when ``cond_dim`` is 0).
            labels: classes [N] (int64), needed by ``"class_grouped"``.
        """
        x_hat = self.normalize(x, labels)
        if not self.cond_dim:
            return x_hat * self.weight[:, None, None] + self.offset[:, None, None]
        if cond is None:
            raise ValueError("this conditional batch norm needs its conditioning vector")
        gain = 1.0 + self.gain_map(cond)  # [N, C]
        return x_hat * gain[:, :, None, None] + self.bias_map(cond)[:, :, None, None]

    def extra_repr(self) -> str:
        return (f"{self.num_features}, cond_dim={self.cond_dim}, statistics={self.statistics!r}, eps={self.eps}, "
                f"momentum={self.momentum}" + (", sync=True" if self.sync else ""))


class SelfAttention2d(nn.Module):
    """SAGAN self-attention with a learnable gate: ``y = x + gamma * o(softmax(q^T k) v)``, gamma = 0 at init.

    Queries and keys have C/8 channels, values C/2 (1x1 convs); keys and values are 2x2 max-pooled (a quarter of
    the positions), as in BigGAN. At init ``gamma = 0``, so the layer is the identity.
    """

    def __init__(self, channels: int) -> None:
        """
        Args:
            channels: channels C of the input (and output) map; the map's sides must be even.
        """
        super().__init__()
        self.channels = channels
        inner, value = max(1, channels // 8), max(1, channels // 2)
        self.query = nn.Conv2d(channels, inner, 1, bias=False)
        self.key = nn.Conv2d(channels, inner, 1, bias=False)
        self.value = nn.Conv2d(channels, value, 1, bias=False)
        self.out = nn.Conv2d(value, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C, H, W]
        n, _, h, w = x.shape
        q = self.query(x).flatten(2)  # [N, C/8, HW]
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # [N, C/8, HW/4]
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # [N, C/2, HW/4]
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # [N, HW, HW/4]: each position's weights sum to 1
        o = (v @ attn.transpose(1, 2)).view(n, -1, h, w)  # [N, C/2, H, W]
        return x + self.gamma * self.out(o)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class GBlock(nn.Module):
    """Residual up block: ``BN-ReLU-up-conv3x3-BN-ReLU-conv3x3`` plus the skip ``conv1x1(up(x))``; BN conditional.

    Both BNs read the same conditioning vector (shared class embedding ; this block's z chunk, or the embedding
    alone without hierarchical z); ``up`` is nearest neighbour x2. The convs have no biases: a per-channel constant
    added anywhere in the residual stream reaches the output only through linear maps (skip convs, upsampling)
    into a batch norm, which cancels it exactly.
    """

    def __init__(self, *, in_channels: int, out_channels: int, cond_dim: int = 0, statistics: BNStatistics = "batch",
                 num_classes: int = 0) -> None:
        """
        Args:
            in_channels: channels of the input map.
            out_channels: channels of the output map (twice the input's resolution).
            cond_dim: size of the conditioning vector of the batch norms (0: plain BN).
            statistics: batch-statistics mode of the batch norms (``"batch"`` or ``"class_grouped"``).
            num_classes: number of classes (for ``"class_grouped"``).
        """
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bn = dict(cond_dim=cond_dim, statistics=statistics, num_classes=num_classes)
        self.bn1 = ConditionalBatchNorm2d(in_channels, **bn)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = ConditionalBatchNorm2d(out_channels, **bn)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor, cond: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        h = F.relu(self.bn1(x, cond, labels))
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # [N, C_in, 2H, 2W]
        h = self.conv1(h)  # [N, C_out, 2H, 2W]
        h = self.conv2(F.relu(self.bn2(h, cond, labels)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class DBlock(nn.Module):
    """Residual D block: ``ReLU-conv3x3-ReLU-conv3x3-avgpool2`` plus the skip ``avgpool2(conv1x1(x))``.

    ``optimized`` is the first block on the image (Miyato et al.'s "optimized" block): no ReLU before the first
    conv and the skip ``conv1x1(avgpool2(x))``. Without ``downsample`` there is no pooling; the skip is the
    identity when the channels do not change.
    """

    def __init__(self, *, in_channels: int, out_channels: int, downsample: bool = True, optimized: bool = False) -> None:
        """
        Args:
            in_channels: channels of the input map.
            out_channels: channels of the output map.
            downsample: halve the resolution (2x2 average pooling).
            optimized: the first block on the image (see the class docstring).
        """
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample, self.optimized = downsample, optimized
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        learnable = optimized or downsample or in_channels != out_channels
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if learnable else None

    def forward(self, x: Tensor) -> Tensor:  # [N, C_in, H, W] -> [N, C_out, H/2, W/2] (or H, W)
        h = x if self.optimized else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.optimized:
            s = self.skip(F.avg_pool2d(x, 2))
        elif self.skip is not None:
            s = self.skip(x)
            if self.downsample:
                s = F.avg_pool2d(s, 2)
        return h + s

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, downsample={self.downsample}, "
                f"optimized={self.optimized}")


@torch.no_grad()
def orthogonal_(weight: Tensor) -> Tensor:
    """A random orthogonal matrix (Haar measure) in place, ``weight`` seen as [out, in * k * k]: orthonormal rows or
    columns, whichever are fewer (what ``nn.init.orthogonal_`` makes, with unit gain).

    Computed by CholeskyQR2 instead of Householder QR: for a Gaussian ``A`` [n, m], n >= m, with ``A^T A = L L^T``,
    ``Q = A L^-T`` is the Q factor of A's thin QR with a positive diagonal in R; repeating the step once cancels the
    rounding of the first. Matrix products only (float32 for the well-conditioned ``n >= 4 m``, e.g. 3x3 convs;
    float64 for squarer matrices), several times faster than QR on the large layers.
    """
    rows, cols = weight.shape[0], weight[0].numel()
    tall, short = max(rows, cols), min(rows, cols)
    dtype = torch.float32 if tall >= 4 * short else torch.float64
    q = torch.randn(tall, short, dtype=dtype, device=weight.device)
    for _ in range(2):
        chol = torch.linalg.cholesky(q.t() @ q)  # L, lower triangular: q^T q = L L^T
        q = torch.linalg.solve_triangular(chol, q.t(), upper=False).t()  # q L^-T: orthonormal columns
    weight.copy_((q.t() if rows < cols else q).reshape(weight.shape))
    return weight


@torch.no_grad()
def init_weights_(module: nn.Module, init: Init = "orthogonal", *, skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Conv and linear weights initialized in place: orthogonal (BigGAN), N(0, 0.02) or Xavier uniform; biases 0.

    Conv weights are treated as [out, in * k * k] matrices (``orthogonal_``). Modules in ``skip`` keep
    their weights.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    skipped = {id(m) for m in skip}
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skipped:
            if init == "orthogonal":
                orthogonal_(m.weight)
            elif init == "normal":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def apply_spectral_norm(module: nn.Module, *, n_power_iterations: int = 1, eps: float = 1e-6,
                        skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Spectral normalization (``W / sigma_1(W)``, Miyato et al. 2018) of every conv and linear weight in place.

    Uses ``torch.nn.utils.parametrizations.spectral_norm``: ``n_power_iterations`` power iterations per forward
    pass in training mode refine the estimate of ``sigma_1`` (conv weights as [out, in * k * k] matrices).
    Modules in ``skip`` stay unnormalized.
    """
    skipped = {id(m) for m in skip}
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skipped:
            _spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps)
    return module
