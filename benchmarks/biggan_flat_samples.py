"""Flat (grey) BigGAN samples: which latents give an empty picture in every class, and why.

A class-conditional BigGAN trained briefly on shapes draws, for a few latents z, no shape at all in any class:
a plain background (the grey column of the README's picture). This script measures it on a checkpoint, with the
generator prepared as ``lightning-gan generate --standing-stats 16`` prepares it (EMA generator, standing
statistics, eval mode) and the latents of ``generate --seeds`` (seed s: ``randn(1, z_dim)`` from a generator
seeded s):

1. **How many**: a seed is *flat* when, in every class, the picture's spatial standard deviation (per channel,
   averaged over the channels) is below ``--threshold`` (0.08; a typical sample has about 0.4).
2. **BN modes**: the flat seeds' spatial std with the checkpoint's own running statistics (no standing
   statistics), with standing statistics, and in training mode (batch statistics of a batch of 64 other
   random latents with them).
3. **Which z chunk** (hierarchical z: chunk 0 feeds the input layer, chunk j >= 1 block j's conditional BN):
   each flat z with chunk j replaced by that of 40 typical z (spatial std above the median) and each typical z
   with the flat z's chunk j; the share that stops / starts being flat.
4. **Which direction**: the least-squares fit of the spatial std on chunk 0 (and the R^2 of each chunk and of all
   of z) gives a unit direction d in chunk 0; the flat seeds' projections on d, the correlation of d's projection
   with the drawn shape's area (pixels more than 0.25 from the picture's median colour), and 200 typical z moved
   along d (their projection set to +2 ... -4, the rest of z kept): mean shape area and flat share.
5. **Truncation**: flat seeds among latents truncated to [-t, t] (``--truncation``, resampling).

Usage::

    python benchmarks/biggan_flat_samples.py --ckpt runs/biggan-shapes32/version_0/checkpoints/last.ckpt --seeds 4000
    python benchmarks/biggan_flat_samples.py --ckpt RUN.ckpt --scan-only        # step 1 only
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gan.checkpoint import load_sampler
from lightning_gan.ops.truncation import truncated_normal
from lightning_gan.utils.standing_stats import data_class_shares, standing_statistics


@torch.no_grad()
def measure(g: torch.nn.Module, z: Tensor, *, batch_stats: bool = False) -> tuple[Tensor, Tensor]:
    """Per latent: the spatial std [N] (max over the classes) and the shape area [N] (mean over the classes).

    ``batch_stats``: the batch norms in training mode on a copy of their state (restored afterwards)."""
    state = {k: v.clone() for k, v in g.state_dict().items()} if batch_stats else None
    spatial, area = [], []
    try:
        for k in range(g.c_dim):
            if batch_stats:
                for m in g.modules():
                    if hasattr(m, "running_mean"):
                        m.train()
            c = F.one_hot(torch.full((len(z),), k), g.c_dim).float()
            x = torch.cat([g(a, b) for a, b in zip(z.split(500), c.split(500))])  # [N, C, H, W]
            g.eval()
            spatial.append(x.flatten(2).std(2).mean(1))
            background = x.flatten(2).median(2).values[:, :, None, None]  # [N, C, 1, 1]
            area.append(((x - background).abs().max(1).values > 0.25).float().flatten(1).mean(1))
    finally:
        if state is not None:
            g.load_state_dict(state)
            g.eval()
    return torch.stack(spatial, 1).max(1).values, torch.stack(area, 1).mean(1)


def r_squared(x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """R^2 of the least-squares fit of y [N] on x [N, D] with an intercept, and the fit's unit direction [D]."""
    design = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    coef = torch.linalg.lstsq(design, y.double()[:, None]).solution
    residual = y.double() - (design @ coef).flatten()
    r2 = 1.0 - float(residual.square().sum() / (y.double() - y.double().mean()).square().sum())
    w = coef[:-1, 0].float()
    return r2, w / w.norm()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a BigGAN run checkpoint (hierarchical z, c_dim > 0)")
    parser.add_argument("--seeds", type=int, default=4000, help="seeds 0..N-1 scanned (default 4000)")
    parser.add_argument("--threshold", type=float, default=0.08, help="spatial std below which a picture is flat")
    parser.add_argument("--truncation", type=float, nargs="*", default=[1.0, 1.5, 2.0])
    parser.add_argument("--scan-only", action="store_true", help="only step 1 (how many seeds are flat)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_sampler(args.ckpt)
    g = loaded.generator.eval()
    if not g.c_dim or getattr(g, "num_chunks", 1) < 2:
        raise SystemExit("this measurement needs a class-conditional BigGAN generator with hierarchical z")
    z = torch.cat([g.sample_latents(1, generator=torch.Generator().manual_seed(s)) for s in range(args.seeds)])
    own, _ = measure(g, z)  # the checkpoint's running statistics
    try:  # the classes in the run's training shares, as generate draws them
        shares = data_class_shares(loaded.build_datamodule())
    except Exception:  # noqa: BLE001 - no data recorded: equal shares, as generate falls back to
        shares = None
    standing_statistics(g, num_batches=16, class_shares=shares)
    spatial, area = measure(g, z)
    flat = spatial < args.threshold
    idx = torch.nonzero(flat).flatten()
    kimg = loaded.info.get("kimg")
    print(f"{args.ckpt} ({kimg:.1f} kimg)" if isinstance(kimg, float) else args.ckpt)
    print(f"1. {len(idx)} of {args.seeds} seeds flat in every class (spatial std < {args.threshold:g}; median "
          f"{float(spatial.median()):.3f}, 1% quantile {float(torch.quantile(spatial, 0.01)):.3f}): "
          f"{idx.tolist()[:20]}")
    try:  # the run's real images, measured the same way (3000 of them)
        dm = loaded.build_datamodule()
        dm.setup("fit")
        count = min(3000, len(dm.train_dataset))
        real = torch.stack([dm.train_dataset[i][0] for i in range(count)])  # [count, C, H, W]
    except Exception as exc:  # noqa: BLE001 - a measurement without the data still says the rest
        real = None
        print(f"   (no real images: {exc})")
    if real is not None:
        r_spatial = real.flatten(2).std(2).mean(1)
        r_area = ((real - real.flatten(2).median(2).values[:, :, None, None]).abs().max(1).values > 0.25)
        r_area = r_area.float().flatten(1).mean(1)
        print(f"   {len(real)} real images: spatial std min {float(r_spatial.min()):.3f}, median "
              f"{float(r_spatial.median()):.3f}; shape area min {float(r_area.min()):.3f}, 1% quantile "
              f"{float(torch.quantile(r_area, 0.01)):.3f}, median {float(r_area.median()):.3f}")
    if not len(idx) or args.scan_only:
        return
    others = torch.randn(64, g.z_dim, generator=torch.Generator().manual_seed(12345))
    batch, _ = measure(g, torch.cat([z[idx], others]), batch_stats=True)
    print(f"2. spatial std of the flat seeds: standing statistics {[round(float(v), 3) for v in spatial[idx][:10]]}; "
          f"the checkpoint's running statistics {[round(float(v), 3) for v in own[idx][:10]]} "
          f"({int((own < args.threshold).sum())} seeds flat); batch statistics in a batch of 64 others "
          f"{[round(float(v), 3) for v in batch[:len(idx)][:10]]} (the 64 others' median {float(batch[len(idx):].median()):.3f})")
    typical = torch.nonzero(spatial > spatial.median()).flatten()[:40]
    width = g.z_dim // g.num_chunks
    for j in range(g.num_chunks):
        cols = slice(j * width, (j + 1) * width)
        fixed = broken = 0.0
        for i in idx.tolist():
            a = z[i:i + 1].repeat(len(typical), 1)
            a[:, cols] = z[typical][:, cols]
            fixed += float((measure(g, a)[0] >= args.threshold).float().mean())
            b = z[typical].clone()
            b[:, cols] = z[i, cols]
            broken += float((measure(g, b)[0] < args.threshold).float().mean())
        print(f"3. chunk {j}: a flat z with a typical z's chunk {j} stops being flat in {fixed / len(idx):.2f}; a "
              f"typical z with a flat z's chunk {j} becomes flat in {broken / len(idx):.2f}")
    r2_all, _ = r_squared(z, spatial)
    fits = [r_squared(z[:, j * width:(j + 1) * width], spatial) for j in range(g.num_chunks)]
    d = fits[0][1]
    proj = z[:, :width] @ d  # N(0, 1) under the prior
    print(f"4. R^2 of the spatial std fitted on z: {r2_all:.2f}; on one chunk: "
          f"{', '.join(f'{j}: {r2:.2f}' for j, (r2, _) in enumerate(fits))}. The flat seeds along chunk 0's fitted "
          f"direction d: {[round(float(v), 2) for v in proj[idx][:10]]} (prior: N(0, 1)); corr(shape area, "
          f"projection on d) {float(torch.corrcoef(torch.stack([area, proj]))[0, 1]):.2f}")
    base = z[:200]
    for target in (2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0):
        moved = base.clone()
        moved[:, :width] += (target - moved[:, :width] @ d)[:, None] * d  # projection on d set to target
        s, a = measure(g, moved)
        print(f"   projection {target:+.0f}: mean shape area {float(a.mean()):.3f} of the picture, flat in every "
              f"class {float((s < args.threshold).float().mean()):.3f} (200 z)")
    for t in args.truncation:
        zt = truncated_normal((args.seeds, g.z_dim), t, generator=torch.Generator().manual_seed(1))
        print(f"5. truncation {t:g}: {int((measure(g, zt)[0] < args.threshold).sum())} of {args.seeds} latents flat")


if __name__ == "__main__":
    main()
