"""BigGAN generator and discriminator (Brock et al. 2019) for 32, 64, 128 and 256 px, and the ``biggan`` spec.

Generator: z is split into one chunk for the input linear layer and one per residual up block (hierarchical
latent); z_0 -> linear -> [C_4, 4, 4] -> residual up blocks (conditional BN fed by [shared class embedding ; the
block's z chunk]) -> optional self-attention at one resolution -> BN-ReLU-conv3x3 -> tanh. Without hierarchical z
the whole z goes into the input layer only and the blocks' conditional BN reads the class embedding alone (the
paper's baseline before "+ Hierarchical latent"). Discriminator: the
"optimized" first residual block on the image, residual down blocks to ``d_final_resolution``, ``d_extra_blocks``
residual blocks without downsampling, optional self-attention, ReLU, global sum pooling to ``h`` [N, C], and the
projection head ``y = psi(h) + <embed(c), h>`` (Miyato & Koyama 2018). Spectral normalization in either network
(switchable), orthogonal initialization (or N(0, 0.02) / Xavier). ``c_dim = 0``: plain BN with a learned affine
in G and no projection in D.

Widths: ``channel_multiplier`` (the paper's ``ch``) times the paper's per-resolution multipliers
(``G_MULTIPLIERS``, ``D_MULTIPLIERS``); ``g_widths`` / ``d_widths`` set them explicitly instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.interfaces import ArchitectureSpec, Discriminator, Generator, NetworkPair, require_condition
from lightning_gan_biggan.layers import (
    BN_STATISTICS,
    INITS,
    BNStatistics,
    ConditionalBatchNorm2d,
    DBlock,
    GBlock,
    Init,
    SelfAttention2d,
    apply_spectral_norm,
    init_weights_,
)

__all__ = [
    "BigGANArchitecture",
    "BigGANDiscriminator",
    "BigGANGenerator",
    "D_MULTIPLIERS",
    "G_MULTIPLIERS",
    "RESOLUTIONS",
    "default_d_widths",
    "default_g_widths",
]

RESOLUTIONS = (32, 64, 128, 256)
# Width multipliers of ch (BigGAN appendix B): generator feature maps at 4, 8, ..., resolution px.
G_MULTIPLIERS: dict[int, tuple[int, ...]] = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
}
# Discriminator: outputs of the down blocks (resolution / 2, ..., 4 px), then of the blocks without downsampling.
D_MULTIPLIERS: dict[int, tuple[tuple[int, ...], int]] = {
    32: ((4, 4, 4), 4),
    64: ((1, 2, 4, 8), 16),
    128: ((1, 2, 4, 8, 16), 16),
    256: ((1, 2, 4, 8, 8, 16), 16),
}


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        raise ValueError(f"BigGAN resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {resolution!r}")
    return resolution


def _num_up(resolution: int) -> int:
    return int(math.log2(resolution // 4))


def default_g_widths(resolution: int, channel_multiplier: int) -> list[int]:
    """Generator widths at 4, 8, ..., ``resolution`` px: ``channel_multiplier`` x the paper's multipliers."""
    return [channel_multiplier * m for m in G_MULTIPLIERS[_check_resolution(resolution)]]


def default_d_widths(resolution: int, channel_multiplier: int, *, final_resolution: int = 4,
                     extra_blocks: int = 1) -> list[int]:
    """Output widths of the discriminator's blocks: the down blocks (to ``final_resolution``), then the others."""
    downs, extra = D_MULTIPLIERS[_check_resolution(resolution)]
    n_down = int(math.log2(resolution // final_resolution))
    return [channel_multiplier * m for m in downs[:n_down]] + [channel_multiplier * extra] * extra_blocks


class BigGANGenerator(Generator):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> images [N, channels, resolution, resolution] in [-1, 1]."""

    def __init__(self, *, z_dim: int, c_dim: int = 0, resolution: int, channels: int = 3, widths: list[int],
                 shared_dim: int = 128, hierarchical_z: bool = True, attention: int = 0,
                 bn_statistics: BNStatistics = "batch", sync_bn: bool = False) -> None:
        """
        Args:
            z_dim: latent size (split into ``log2(resolution / 4) + 1`` chunks when ``hierarchical_z``).
            c_dim: number of classes (0 = unconditional: plain BN, z only into the input layer).
            resolution: output height and width (32, 64, 128 or 256).
            channels: output image channels.
            widths: channels of the feature maps at 4, 8, ..., resolution px.
            shared_dim: size of the shared class embedding (a bias-free linear map of the one-hot class).
            hierarchical_z: one z chunk per block into its conditional BN (else z only into the input layer).
            attention: resolution of the self-attention layer (after the block that makes it); 0 = none.
            bn_statistics: ``"batch"`` or ``"class_grouped"`` batch statistics (see ``ConditionalBatchNorm2d``).
            sync_bn: batch statistics over all processes under DDP (``ConditionalBatchNorm2d.set_sync_batchnorm``).
        """
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(channels, resolution, resolution))
        _check_resolution(resolution)
        n_up = _num_up(resolution)
        if len(widths) != n_up + 1:
            raise ValueError(f"a {resolution} px BigGAN generator needs {n_up + 1} widths (4 to {resolution} px), "
                             f"got {len(widths)}")
        self.resolution, self.channels, self.widths = resolution, channels, list(widths)
        self.hierarchical_z = bool(hierarchical_z and c_dim)
        self.attention, self.bn_statistics = attention, bn_statistics
        self.num_chunks = n_up + 1 if self.hierarchical_z else 1
        if z_dim < self.num_chunks:
            raise ValueError(f"z_dim={z_dim} is too small to split into {self.num_chunks} chunks (hierarchical z)")
        chunks = [len(t) for t in torch.tensor_split(torch.arange(z_dim), self.num_chunks)]
        self.shared = nn.Linear(c_dim, shared_dim, bias=False) if c_dim else None  # shared class embedding
        if self.shared is not None:
            self.shared.is_embedding = True  # a lookup of one-hot classes: the orthogonal regularizer skips it
        self.shared_dim = shared_dim if c_dim else 0
        if not c_dim:
            block_cond = [0] * n_up
        elif self.hierarchical_z:
            block_cond = [shared_dim + k for k in chunks[1:]]
        else:
            block_cond = [shared_dim] * n_up  # the class embedding alone: z enters through the input layer only
        self.linear = nn.Linear(chunks[0], widths[0] * 16)  # z_0 -> [N, C_4 * 4 * 4]
        self.blocks = nn.ModuleList(
            GBlock(in_channels=widths[i], out_channels=widths[i + 1], cond_dim=block_cond[i], statistics=bn_statistics,
                   num_classes=c_dim) for i in range(n_up))
        self.attention_after = _attention_index([4 * 2 ** (i + 1) for i in range(n_up)], attention, "generator")
        self.attn = SelfAttention2d(widths[self.attention_after + 1]) if self.attention_after is not None else None
        self.out_bn = ConditionalBatchNorm2d(widths[-1], statistics=bn_statistics, num_classes=c_dim)
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)
        if sync_bn:
            self.set_sync_batchnorm()

    def set_sync_batchnorm(self, process_group: Any = None) -> None:
        """Every conditional batch norm takes its training statistics over all processes of ``process_group``
        (None: all processes); a no-op without an initialized process group of two or more processes."""
        for m in self.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.set_sync_batchnorm(process_group)

    @property
    def sync_bn(self) -> bool:
        """Whether the conditional batch norms synchronize their statistics across processes."""
        return any(m.sync for m in self.modules() if isinstance(m, ConditionalBatchNorm2d))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        n = z.shape[0]
        labels = None
        if self.c_dim:
            c = require_condition(c, self.c_dim, n, "generator")
            labels = c.argmax(1)  # [N]: class of each sample (for class-grouped statistics)
            e = self.shared(c.to(z.dtype))  # [N, shared_dim]
            if self.hierarchical_z:
                z0, *rest = torch.tensor_split(z, self.num_chunks, dim=1)
                conds: list[Tensor | None] = [torch.cat([e, zi], 1) for zi in rest]
            else:
                z0, conds = z, [e] * len(self.blocks)
        else:
            z0, conds = z, [None] * len(self.blocks)
        x = self.linear(z0).view(n, self.widths[0], 4, 4)  # [N, C_4, 4, 4]
        for i, block in enumerate(self.blocks):
            x = block(x, conds[i], labels)  # [N, C_r, r, r], r doubles
            if i == self.attention_after:
                x = self.attn(x)
        x = F.relu(self.out_bn(x, None, labels))
        return torch.tanh(self.out_conv(x))  # [N, channels, R, R]

    def factorizable_weights(self) -> Tensor:
        """SeFa's ``A`` [C_4 * 16, z_dim]: the input linear layer's weights (spectrally normalized as in eval mode)
        on the first z chunk, which it reads; the other chunks' columns are 0 (``lightning_gan.directions``)."""
        training = self.linear.training
        self.linear.eval()  # spectral norm's weight without a power iteration
        try:
            weight = self.linear.weight  # [C_4 * 16, chunk_0]
        finally:
            self.linear.train(training)
        return F.pad(weight, (0, self.z_dim - weight.shape[1]))  # [C_4 * 16, z_dim]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", widths={self.widths}, shared_dim={self.shared_dim}, hierarchical_z="
                f"{self.hierarchical_z}, attention={self.attention}, bn_statistics={self.bn_statistics!r}"
                + (", sync_bn=True" if self.sync_bn else ""))


class BigGANDiscriminator(Discriminator):
    """images [N, channels, resolution, resolution] (+ one-hot c) -> logits [N]; projection-conditional."""

    def __init__(self, *, c_dim: int = 0, resolution: int, channels: int = 3, widths: list[int],
                 final_resolution: int = 4, attention: int = 0) -> None:
        """
        Args:
            c_dim: number of classes (0 = unconditional); > 0 adds the projection term <embed(c), h>.
            resolution: input height and width (32, 64, 128 or 256).
            channels: input image channels.
            widths: output channels of each block: the down blocks (to ``final_resolution``), then the rest.
            final_resolution: the down blocks stop at this resolution; the remaining blocks keep it.
            attention: resolution of the self-attention layer (after the block that makes it); 0 = none.
        """
        super().__init__(c_dim=c_dim, input_shape=(channels, resolution, resolution))
        _check_resolution(resolution)
        if final_resolution not in (4, 8, 16) or final_resolution >= resolution:
            raise ValueError(f"d_final_resolution must be 4, 8 or 16 and below the resolution, got {final_resolution}")
        n_down = int(math.log2(resolution // final_resolution))
        if len(widths) < n_down:
            raise ValueError(f"a {resolution} px BigGAN discriminator down to {final_resolution} px needs at least "
                             f"{n_down} widths (one per block), got {len(widths)}")
        self.resolution, self.channels, self.widths = resolution, channels, list(widths)
        self.final_resolution, self.attention = final_resolution, attention
        blocks, in_ch, sizes = [], channels, []
        for i, width in enumerate(widths):
            blocks.append(DBlock(in_channels=in_ch, out_channels=width, downsample=i < n_down, optimized=i == 0))
            in_ch = width
            sizes.append(resolution >> min(i + 1, n_down))
        self.blocks = nn.ModuleList(blocks)
        self.attention_after = _attention_index(sizes, attention, "discriminator")
        self.attn = SelfAttention2d(widths[self.attention_after]) if self.attention_after is not None else None
        self.feature_dim = widths[-1]
        self.linear = nn.Linear(self.feature_dim, 1)  # psi(h)
        self.embed = nn.Linear(c_dim, self.feature_dim, bias=False) if c_dim else None  # class embeddings
        if self.embed is not None:
            self.embed.is_embedding = True  # a lookup of one-hot classes: the orthogonal regularizer skips it

    def features(self, x: Tensor) -> Tensor:
        """The features ``h`` [N, feature_dim] (after ReLU and global sum pooling) that the head reads."""
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.attention_after:
                x = self.attn(x)
        return F.relu(x).sum((2, 3))  # [N, C]

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.features(x)
        logits = self.linear(h).squeeze(1)  # [N]
        if self.c_dim:
            c = require_condition(c, self.c_dim, x.shape[0], "discriminator")
            logits = logits + (self.embed(c.to(h.dtype)) * h).sum(1)  # projection <embed(c), h>
        return logits

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", widths={self.widths}, final_resolution={self.final_resolution}, "
                f"attention={self.attention}")


def _attention_index(sizes: list[int], attention: int, who: str) -> int | None:
    """Index of the first block whose output has side ``attention`` (None for 0); a ValueError if none has."""
    if not attention:
        return None
    if attention not in sizes:
        raise ValueError(f"attention={attention}: the {who}'s blocks make maps of {sorted(set(sizes))} px; "
                         f"pick one of those (or 0 for no self-attention)")
    return sizes.index(attention)


class BigGANArchitecture(ArchitectureSpec):
    """BigGAN generator and discriminator for square images (registered as ``biggan``)."""

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 3,
        z_dim: int = 128,
        c_dim: int = 0,
        shared_dim: int = 128,
        hierarchical_z: bool = True,
        channel_multiplier: int = 64,
        g_widths: list[int] | None = None,
        d_widths: list[int] | None = None,
        d_final_resolution: int = 4,
        d_extra_blocks: int = 1,
        attention: int = 0,
        g_spectral_norm: bool = True,
        d_spectral_norm: bool = True,
        sn_power_iterations: int = 1,
        init: Init = "orthogonal",
        bn_statistics: BNStatistics = "batch",
        sync_bn: bool = False,
    ) -> None:
        """
        Args:
            resolution: image height and width: 32, 64, 128 or 256.
            channels: image channels (3 for RGB, 1 for grayscale).
            z_dim: latent size (the paper: 120 at 128 px, 140 at 256 px, 128 on CIFAR).
            c_dim: number of classes for a conditional model (0 = unconditional).
            shared_dim: size of the shared class embedding (the paper: 128); its entries start N(0, 1), as an
                embedding table's, so a class vector (norm ~sqrt(shared_dim)) weighs in the conditional BN as much
                as the z chunk next to it.
            hierarchical_z: z split into one chunk for the input layer and one per generator block (False: z only
                into the input layer; the blocks' conditional BN reads the class embedding alone).
            channel_multiplier: the paper's ``ch``; widths are ch x ``G_MULTIPLIERS`` / ``D_MULTIPLIERS``.
            g_widths: explicit generator widths at 4, 8, ..., resolution px (overrides the multiplier).
            d_widths: explicit output widths of the discriminator's blocks (down blocks, then the others).
            d_final_resolution: the discriminator's down blocks stop here (4; the paper's CIFAR D: 8).
            d_extra_blocks: residual blocks without downsampling after the last down block (1; CIFAR D: 2).
            attention: resolution of the self-attention layer in G and D (the paper: 64 at 128 px); 0 = none.
            g_spectral_norm: spectral normalization of every generator weight (not the shared embedding).
            d_spectral_norm: spectral normalization of every discriminator weight, the class embedding included.
            sn_power_iterations: power iterations per training forward pass of each normalized weight.
            init: "orthogonal" (the paper), "normal" (N(0, 0.02)) or "xavier".
            bn_statistics: generator batch statistics: "batch" (standard) or "class_grouped" (per class in the
                batch, no class leakage; needs c_dim > 0).
            sync_bn: generator batch statistics over the samples of all processes under DDP (one all-reduce per
                batch norm per forward pass; ``--trainer.sync_batchnorm=true`` switches it on too).
        """
        _check_resolution(resolution)
        for name, value in dict(channels=channels, z_dim=z_dim, shared_dim=shared_dim,
                                channel_multiplier=channel_multiplier, sn_power_iterations=sn_power_iterations).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if bn_statistics not in BN_STATISTICS:
            raise ValueError(f"bn_statistics must be one of {BN_STATISTICS}, got {bn_statistics!r}")
        if bn_statistics == "class_grouped" and not c_dim:
            raise ValueError("bn_statistics='class_grouped' needs classes: set c_dim > 0 or use 'batch'")
        if d_extra_blocks < 0:
            raise ValueError(f"d_extra_blocks must be >= 0, got {d_extra_blocks}")
        self.resolution, self.channels, self.z_dim, self.c_dim = resolution, channels, z_dim, c_dim
        self.shared_dim, self.hierarchical_z, self.channel_multiplier = shared_dim, hierarchical_z, channel_multiplier
        self.g_widths = None if g_widths is None else [int(w) for w in g_widths]
        self.d_widths = None if d_widths is None else [int(w) for w in d_widths]
        self.d_final_resolution, self.d_extra_blocks, self.attention = d_final_resolution, d_extra_blocks, attention
        self.g_spectral_norm, self.d_spectral_norm = g_spectral_norm, d_spectral_norm
        self.sn_power_iterations, self.init, self.bn_statistics = sn_power_iterations, init, bn_statistics
        self.sync_bn = bool(sync_bn)
        self._validate()  # every shape error now, not at fit time

    def _validate(self) -> None:
        n_up = _num_up(self.resolution)
        if self.g_widths is not None and len(self.g_widths) != n_up + 1:
            raise ValueError(f"g_widths: a {self.resolution} px generator needs {n_up + 1} widths (at 4 to "
                             f"{self.resolution} px), got {len(self.g_widths)}")
        final = self.d_final_resolution
        if final not in (4, 8, 16) or final >= self.resolution:
            raise ValueError(f"d_final_resolution must be 4, 8 or 16 and below the resolution, got {final}")
        n_down = int(math.log2(self.resolution // final))
        if self.d_widths is not None and len(self.d_widths) < n_down:
            raise ValueError(f"d_widths: a {self.resolution} px discriminator down to {final} px needs at least "
                             f"{n_down} widths (one per block), got {len(self.d_widths)}")
        d_blocks = len(self.d_widths) if self.d_widths is not None else n_down + self.d_extra_blocks
        _attention_index([4 * 2 ** (i + 1) for i in range(n_up)], self.attention, "generator")
        _attention_index([self.resolution >> min(i + 1, n_down) for i in range(d_blocks)], self.attention,
                         "discriminator")

    def build(self) -> NetworkPair:
        g_widths = self.g_widths or default_g_widths(self.resolution, self.channel_multiplier)
        d_widths = self.d_widths or default_d_widths(self.resolution, self.channel_multiplier,
                                                     final_resolution=self.d_final_resolution,
                                                     extra_blocks=self.d_extra_blocks)
        g = BigGANGenerator(z_dim=self.z_dim, c_dim=self.c_dim, resolution=self.resolution, channels=self.channels,
                            widths=g_widths, shared_dim=self.shared_dim, hierarchical_z=self.hierarchical_z,
                            attention=self.attention, bn_statistics=self.bn_statistics, sync_bn=self.sync_bn)
        d = BigGANDiscriminator(c_dim=self.c_dim, resolution=self.resolution, channels=self.channels, widths=d_widths,
                                final_resolution=self.d_final_resolution, attention=self.attention)
        init_weights_(g, self.init, skip=(g.shared,) if g.shared is not None else ())
        init_weights_(d, self.init)
        if g.shared is not None:  # initialized as an embedding table: N(0, 1) entries, class vectors of norm ~sqrt(dim)
            with torch.no_grad():
                nn.init.normal_(g.shared.weight)
        if self.g_spectral_norm:
            apply_spectral_norm(g, n_power_iterations=self.sn_power_iterations,
                                skip=(g.shared,) if g.shared is not None else ())
        if self.d_spectral_norm:
            apply_spectral_norm(d, n_power_iterations=self.sn_power_iterations)
        return NetworkPair(g, d)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"
