"""Projection (GAN inversion): the latent whose image is closest to a target image, by gradient descent.

Style-based generators (StyleGAN2; Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
section 5; W+ after Abdal et al. 2019, "Image2StyleGAN"):

* the latent is one w [w_dim] used by every layer (``space="w"``), starting from ``w_avg``, or one w per layer
  (``space="w+"``, [num_ws, w_dim]), each starting from ``w_avg``; ``w_avg`` and the spread
  ``sigma_w = sqrt(E |w - w_avg|^2)`` are estimated from ``num_w_samples`` mapped latents;
* the noise maps are optimized too (the generator's fixed maps, the buffers named ``noise_const`` that
  ``synthesis(ws, noise_mode="const")`` reads, replaced by free maps drawn from N(0, I)); after every step each
  map is re-normalized to zero mean and unit variance;
* the loss is ``d(G(w + n_w), target) + noise_weight * L_noise``: ``n_w`` ~ N(0, I) times
  ``sigma_w * 0.05 * max(0, 1 - t / 0.75)^2`` (noise on w that decays to 0 by three quarters of the way,
  t = step / steps), and the noise regularizer (``noise_regularization``) keeps the maps from carrying the
  image: for each map ``n`` and its pyramid ``n_{j+1} = 2 * avgpool_2x2(n_j)`` (2x2 means times 2, which keeps
  unit variance) down to 8x8,

      L_noise = sum_maps sum_j [ mean_xy(n_j(x, y) n_j(x - 1, y))^2 + mean_xy(n_j(x, y) n_j(x, y - 1))^2 ]

  the squared normalized autocorrelation at a one-pixel shift in x and in y (circular shifts);
* Adam (beta 0.9, 0.999) with learning rate ``lr * ramp(t)``: ``ramp(t) = min(1, t / 0.05) *
  (1 - cos(pi * min(1, (1 - t) / 0.25))) / 2``, a linear ramp up over the first 5% of the steps and a cosine
  ramp down to 0 over the last 25%.

Other generators: the latent is z [z_dim], started from the best (closest) of ``num_starts`` draws from the
prior, with the same learning-rate ramp and no noise. A conditional generator's class is given (``class_index``)
or, when not, picked with the start: the starts are tried with every class and the closest pair wins.

The distance ``d``: LPIPS (VGG, Zhang et al. 2018; ``lightning_gan.metrics.ppl.LPIPSDistance``) when its
backbone weights are on this machine (never downloaded), otherwise ``multiscale_pixels``: the mean squared pixel
difference summed over a pyramid of 2x2 means of both images, from full size down to 8 px (the coarse levels
pull the optimization towards the right layout before the fine ones matter). The result names it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = ["DISTANCES", "ProjectionResult", "learning_rate_ramp", "multiscale_pixel_distance",
           "noise_regularization", "project", "project_many", "psnr", "resolve_distance", "w_noise_scale"]

Space = Literal["w", "w+", "z"]
DISTANCES = ("auto", "lpips", "multiscale_pixels")
PYRAMID_MIN = 8


def noise_regularization(noise_maps: list[Tensor]) -> Tensor:
    """``L_noise`` (module docstring): squared normalized autocorrelations at a one-pixel shift over each map's
    pyramid (2x2 means times 2) down to 8x8. Maps [N, 1, H, W]; averaged over N."""
    total = noise_maps[0].new_zeros(())
    for n in noise_maps:
        while True:
            total = total + (n * torch.roll(n, shifts=1, dims=3)).mean((1, 2, 3)).square().mean()
            total = total + (n * torch.roll(n, shifts=1, dims=2)).mean((1, 2, 3)).square().mean()
            if n.shape[2] <= PYRAMID_MIN:
                break
            n = F.avg_pool2d(n, 2) * 2  # [N, 1, H/2, W/2], unit variance kept for white noise
    return total


def learning_rate_ramp(t: float, *, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """``min(1, t / rampup) * (1 - cos(pi * min(1, (1 - t) / rampdown))) / 2`` for t = step / steps in [0, 1]."""
    down = min(1.0, (1.0 - t) / rampdown)
    return min(1.0, t / rampup) * 0.5 * (1.0 - math.cos(math.pi * down))


def w_noise_scale(t: float, sigma_w: float, *, initial: float = 0.05, length: float = 0.75) -> float:
    """The std of the noise added to w at t = step / steps: ``sigma_w * initial * max(0, 1 - t / length)^2``."""
    return sigma_w * initial * max(0.0, 1.0 - t / length) ** 2


def multiscale_pixel_distance(x: Tensor, y: Tensor) -> Tensor:
    """``sum_s mean((P_s x - P_s y)^2)`` over the pyramid of 2x2 means ``P_s`` from full size down to 8 px, [N]."""
    total = x.new_zeros(x.shape[0])
    while True:
        total = total + (x - y).square().mean((1, 2, 3))
        if min(x.shape[2:]) < 2 * PYRAMID_MIN:
            return total
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)


def psnr(x: Tensor, y: Tensor) -> float:
    """Peak signal-to-noise ratio of images in [-1, 1] (peak-to-peak 2): ``10 log10(4 / mse)`` dB."""
    mse = float((x.float().clamp(-1, 1) - y.float().clamp(-1, 1)).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def resolve_distance(name: str = "auto") -> tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """``(name, d)`` for ``"auto"`` (LPIPS if its weights are here, else multiscale pixels), ``"lpips"`` or
    ``"multiscale_pixels"``; ``d(x, y)`` -> [N]."""
    if name not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {name!r}")
    if name in ("auto", "lpips"):
        from lightning_gan.metrics.ppl import LPIPSDistance, lpips_weights_path

        try:
            available = lpips_weights_path("vgg").is_file()
        except ImportError:
            available = False
        if available or name == "lpips":
            lpips = LPIPSDistance("vgg")  # a one-line MissingWeightsError names the file when asked for explicitly

            def d(x: Tensor, y: Tensor) -> Tensor:
                small = min(x.shape[2:]) < 64  # VGG's five stages need room: small images are enlarged first
                if small:
                    x = F.interpolate(x, size=64, mode="bilinear", align_corners=False)
                    y = F.interpolate(y, size=64, mode="bilinear", align_corners=False)
                return lpips(x, y)

            return "lpips_vgg", d
    return "multiscale_pixels", multiscale_pixel_distance


@dataclass
class ProjectionResult:
    """What ``project`` found."""

    space: str  # "w", "w+" or "z"
    latent: Tensor  # ws [1, num_ws, w_dim] (w, w+) or z [1, z_dim]
    c: Tensor | None  # one-hot class [1, c_dim] of a conditional generator
    image: Tensor  # the projected image [C, H, W], in [-1, 1] (about)
    target: Tensor  # [C, H, W]
    distance: float  # d(image, target) at the end
    distance_name: str
    psnr: float  # dB, against the target
    history: list[float] = field(default_factory=list)  # the loss's distance term per step
    frames: list[Tensor] = field(default_factory=list)  # images [C, H, W] along the way (every frame_every steps)
    noise: list[Tensor] = field(default_factory=list)  # the optimized noise maps (style-based generators)


def _style_based(generator: nn.Module) -> bool:
    return all(hasattr(generator, a) for a in ("mapping", "synthesis", "num_ws"))


def project(generator: nn.Module, target: Tensor, *, space: Space | None = None, steps: int = 1000,
            lr: float | None = None, distance: str = "auto", noise_weight: float = 1e5,
            num_w_samples: int = 2000, num_starts: int = 16, class_index: int | None = None, seed: int = 0,
            frame_every: int = 10, progress: Callable[[int], None] | None = None) -> ProjectionResult:
    """Project ``target`` [C, H, W] (in [-1, 1]) into the generator's latent space.

    Args:
        generator: the generator; not modified (a copy is optimized), in eval mode.
        target: the image, the generator's shape, values in [-1, 1].
        space: "w" or "w+" (style-based generators; default "w") or "z" (the others; the default there).
        steps: optimization steps (the paper: 1000).
        lr: the peak learning rate (default 0.1 in W/W+, as in the paper, 0.05 in Z).
        distance: "auto", "lpips" or "multiscale_pixels" (``resolve_distance``).
        noise_weight: the weight of the noise regularizer (the paper: 1e5).
        num_w_samples: mapped latents that estimate ``w_avg`` and ``sigma_w``.
        num_starts: prior draws the Z-space start is picked from (per class when the class is not given).
        class_index: the class of a conditional generator (None: picked with the start).
        seed: seeds every random draw (latent samples, noise maps, noise on w).
        frame_every: keep the image every this many steps (``frames``, for an animation); 0 keeps none.
        progress: called with 1 after every step (a progress bar's advance).
    """
    if target.dim() != 3:
        raise ValueError(f"project takes one image [C, H, W], got {list(target.shape)}; project_many takes a batch")
    return project_many(generator, target[None], space=space, steps=steps, lr=lr, distance=distance,
                        noise_weight=noise_weight, num_w_samples=num_w_samples, num_starts=num_starts,
                        class_index=class_index, seed=seed, frame_every=frame_every, progress=progress)[0]


def project_many(generator: nn.Module, targets: Tensor, *, space: Space | None = None, steps: int = 1000,
                 lr: float | None = None, distance: str = "auto", noise_weight: float = 1e5,
                 num_w_samples: int = 2000, num_starts: int = 16, class_index: int | None = None, seed: int = 0,
                 frame_every: int = 10, progress: Callable[[int], None] | None = None) -> list[ProjectionResult]:
    """``project`` for a batch of targets [N, C, H, W] at once, one result each (same arguments).

    The projections are independent: every sample has its own latent, noise maps and Adam state, and the loss is
    the sum of the per-sample losses, so each sample's gradient is its own loss's (batch norms run in eval
    mode). Only the random draws differ from projecting the images one by one.
    """
    style = _style_based(generator)
    space = space or ("w" if style else "z")
    if space not in ("w", "w+", "z"):
        raise ValueError(f"space must be 'w', 'w+' or 'z', got {space!r}")
    if space != "z" and not style:
        raise ConfigError(f"--space {space}: {type(generator).__name__} has no W space (no mapping and synthesis); "
                          f"it projects in z")
    if space == "z" and style:
        raise ConfigError("--space z: a style-based generator is projected in w or w+")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    shape = tuple(getattr(generator, "output_shape", ()))
    if targets.dim() != 4 or tuple(targets.shape[1:]) != shape or not len(targets):
        raise ValueError(f"the target must be an image {list(shape)} (the generator's), got {list(targets.shape[1:])}")
    c_dim = int(getattr(generator, "c_dim", 0))
    if class_index is not None and not 0 <= class_index < max(c_dim, 1):
        raise ValueError(f"class {class_index}: the generator has {c_dim} classes" if c_dim
                         else "--class: the generator is not conditional")
    g = copy.deepcopy(generator).eval()
    for p in g.parameters():
        p.requires_grad_(False)
    param = next(g.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    targets = targets.to(device=device, dtype=torch.float32)
    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    distance_name, d = resolve_distance(distance)
    if style:
        return _project_w(g, targets, space, steps, 0.1 if lr is None else lr, distance_name, d, noise_weight,
                          num_w_samples, class_index, rng, frame_every, progress)
    return _project_z(g, targets, steps, 0.05 if lr is None else lr, distance_name, d, num_starts, class_index, rng,
                      frame_every, progress)


def _onehot(labels: Tensor | None, c_dim: int, device: torch.device) -> Tensor | None:
    return None if not c_dim or labels is None else F.one_hot(labels.to(device), c_dim).float()  # [n, c_dim]


def _results(space: str, latent: Tensor, c: Tensor | None, images: Tensor, targets: Tensor, final: Tensor,
             distance_name: str, history: list[Tensor], frames: list[Tensor],
             noises: list[Tensor] | None = None) -> list[ProjectionResult]:
    """One ``ProjectionResult`` per sample of the batch tensors."""
    hist = torch.stack(history, 1) if history else torch.zeros(len(latent), 0)  # [N, steps]
    return [ProjectionResult(space=space, latent=latent[i:i + 1].cpu(), c=None if c is None else c[i:i + 1].cpu(),
                             image=images[i].cpu(), target=targets[i].cpu(), distance=float(final[i]),
                             distance_name=distance_name, psnr=psnr(images[i], targets[i]),
                             history=hist[i].tolist(), frames=[f[i] for f in frames],
                             noise=[n[i:i + 1].cpu() for n in noises or []])
            for i in range(len(latent))]


def _project_w(g: nn.Module, targets: Tensor, space: str, steps: int, lr: float, distance_name: str,
               d: Callable[[Tensor, Tensor], Tensor], noise_weight: float, num_w_samples: int, class_index: int | None,
               rng: torch.Generator, frame_every: int, progress: Callable[[int], None] | None) -> list[ProjectionResult]:
    device, n = targets.device, len(targets)
    c_dim = int(getattr(g, "c_dim", 0))
    with torch.no_grad():  # w_avg and sigma_w of the mapping's outputs (classes drawn uniformly unless given)
        z = torch.randn(num_w_samples, g.z_dim, generator=rng).to(device)
        labels = (torch.full((num_w_samples,), int(class_index)) if class_index is not None
                  else torch.randint(0, max(c_dim, 1), (num_w_samples,), generator=rng))
        ws = g.mapping(z, _onehot(labels, c_dim, device))[:, 0]  # [S, w_dim]
        w_avg = ws.mean(0)
        sigma_w = float((ws - w_avg).square().sum(1).mean().sqrt())
    layers = g.num_ws if space == "w+" else 1
    w = w_avg.view(1, 1, -1).repeat(n, layers, 1).clone().requires_grad_(True)  # [N, layers, w_dim]
    noises = []
    for module in g.modules():  # the fixed noise maps become free ones, one per sample
        if isinstance(getattr(module, "noise_const", None), Tensor):
            maps = torch.randn((n, *module.noise_const.shape[1:]), generator=rng).to(device).requires_grad_(True)
            module.noise_const = maps  # [N, 1, R, R]
            noises.append(maps)
    optimizer = torch.optim.Adam([w, *noises], lr=lr, betas=(0.9, 0.999))
    history, frames = [], []
    for step in range(steps):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_ramp(t)
        w_in = w + torch.randn(w.shape, generator=rng).to(device) * w_noise_scale(t, sigma_w)
        images = g.synthesis(w_in.expand(n, g.num_ws, -1), noise_mode="const")  # [N, C, H, W]
        dist = d(images, targets)  # [N]
        loss = dist.sum()
        if noises:  # noise_regularization averages over the batch: times N, each sample's own term
            loss = loss + noise_weight * n * noise_regularization(noises)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # every map of every sample back to zero mean, unit variance
            for maps in noises:
                mean = maps.mean((1, 2, 3), keepdim=True)
                maps.sub_(mean).div_(maps.square().mean((1, 2, 3), keepdim=True).clamp(min=1e-12).sqrt())
        history.append(dist.detach().cpu())
        if frame_every and step % frame_every == 0:
            frames.append(images.detach().cpu())
        if progress is not None:
            progress(1)
    with torch.no_grad():
        latent = w.detach().expand(n, g.num_ws, -1).clone()  # [N, num_ws, w_dim]
        images = g.synthesis(latent, noise_mode="const")
        final = d(images, targets)
    frames.append(images.cpu())
    c = _onehot(torch.full((n,), int(class_index)), c_dim, device) if class_index is not None else None
    return _results(space, latent, c, images, targets, final, distance_name, history, frames,
                    [m.detach() for m in noises])


def _project_z(g: nn.Module, targets: Tensor, steps: int, lr: float, distance_name: str,
               d: Callable[[Tensor, Tensor], Tensor], num_starts: int, class_index: int | None, rng: torch.Generator,
               frame_every: int, progress: Callable[[int], None] | None) -> list[ProjectionResult]:
    device, n = targets.device, len(targets)
    c_dim = int(getattr(g, "c_dim", 0))
    classes = [class_index] if class_index is not None or not c_dim else list(range(c_dim))
    starts = g.sample_latents(max(1, num_starts), generator=rng).to(device)  # [S, z_dim]
    s = len(starts)
    with torch.no_grad():  # for each target, the closest (start, class) pair
        candidates = starts.repeat(len(classes), 1)  # [K * S, z_dim], class-major
        labels = torch.tensor(classes).repeat_interleave(s) if c_dim else None
        images = g(candidates, _onehot(labels, c_dim, device))  # [K * S, C, H, W]
        dists = torch.stack([d(images, t.expand_as(images)) for t in targets])  # [N, K * S]
        best = dists.argmin(1)  # [N]
    z = candidates[best].clone().requires_grad_(True)  # [N, z_dim]
    c = _onehot(labels[best], c_dim, device) if c_dim else None
    optimizer = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
    history, frames = [], []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_ramp(step / steps)
        images = g(z, c)  # [N, C, H, W]
        dist = d(images, targets)  # [N]
        optimizer.zero_grad(set_to_none=True)
        dist.sum().backward()
        optimizer.step()
        history.append(dist.detach().cpu())
        if frame_every and step % frame_every == 0:
            frames.append(images.detach().cpu())
        if progress is not None:
            progress(1)
    with torch.no_grad():
        images = g(z, c)
        final = d(images, targets)
    frames.append(images.cpu())
    return _results("z", z.detach(), c, images, targets, final, distance_name, history, frames)
