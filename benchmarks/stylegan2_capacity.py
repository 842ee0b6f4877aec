"""Can a recipe's StyleGAN2 synthesis network draw the shapes when it is told what to draw? (a diagnostic)

Separates "the generator cannot represent the data at this size" from "the adversarial game teaches it
slowly". The recipe's synthesis network (its architecture, channels, input, noise) is trained by plain
regression instead of a GAN: a small fully connected encoder maps the true factors of each shapes image
(one-hot shape, size, position, the rotation as cos/sin of ``order * angle``, shape and background colour)
to w, the synthesis network renders it, and the loss is the mean squared error to the real image. Same
optimizer settings and batch size as the recipe's generator, same number of steps as the recipe's
iterations unless ``--steps`` says otherwise.

Prints the MSE over training, then on held-out images: the MSE and what the shapes classifier of the
Evaluation metrics says of the renderings (accuracy against the true shape, share recognizable at the
metric's confidence), next to the same figures for the real images. Writes a grid of real / rendered pairs
(``--out``). Figures only; nothing downloaded. Usage::

    OMP_NUM_THREADS=1 python benchmarks/stylegan2_capacity.py [--recipe stylegan2-shapes32] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from lightning_gan import registry
from lightning_gan.data.shapes import _SYMMETRY_ORDER, SHAPES, ShapeFactors, ShapesDataModule, render_shapes
from lightning_gan.metrics.shapes import DEFAULT_CONFIDENCE, class_histogram, shapes_classifier_for

ORDERS = torch.tensor([float(_SYMMETRY_ORDER[s]) for s in SHAPES])


def factor_vector(f: ShapeFactors) -> Tensor:
    """[N, 6 + 1 + 2 + 2 + 2C] floats: every factor of the images, rotation as cos/sin of order * angle."""
    angle = ORDERS[f.shape] * f.rotation  # one period of the shape's symmetry -> one turn
    return torch.cat([F.one_hot(f.shape, len(SHAPES)).float(), f.size[:, None], f.position,
                      torch.cos(angle)[:, None], torch.sin(angle)[:, None], f.color, f.background], dim=1)


def recipe_parts(recipe: str) -> tuple[dict, dict, dict, float]:
    """The architecture init_args, the data init_args, the generator optimizer and total_kimg of a shapes recipe."""
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    model, data = config["model"], config.get("data", {})
    if model["architecture"]["class_path"] != "stylegan2" or data.get("class_path") != "shapes":
        raise SystemExit(f"{recipe}: this diagnostic needs a stylegan2 recipe on shapes data")
    return (model["architecture"].get("init_args", {}), data.get("init_args", {}), model["g_optimizer"],
            float(model["total_kimg"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="stylegan2-shapes32")
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's iterations")
    parser.add_argument("--eval", type=int, default=1024, help="held-out images for the final figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/stylegan2_capacity.png"))
    args = parser.parse_args()

    arch_args, data_args, g_opt, total_kimg = recipe_parts(args.recipe)
    batch = int(data_args.get("batch_size", 64))
    steps = args.steps or math.ceil(total_kimg * 1000 / batch)
    torch.manual_seed(args.seed)
    arch = registry.get_registry("architectures").create("stylegan2", **arch_args)
    generator, _ = arch.build()
    synthesis = generator.synthesis_network.train()
    dm = ShapesDataModule(**data_args)
    dm.setup("fit")
    n_factors = factor_vector(dm.factors([0])).shape[1]
    encoder = nn.Sequential(nn.Linear(n_factors, 256), nn.LeakyReLU(0.2), nn.Linear(256, generator.w_dim))
    opt_cls = registry.import_target(g_opt["class_path"])
    init = dict(g_opt.get("init_args", {}))
    if "betas" in init:
        init["betas"] = tuple(float(b) for b in init["betas"])
    optimizer = opt_cls(list(synthesis.parameters()) + list(encoder.parameters()), **init)
    print(f"{args.recipe}: {sum(p.numel() for p in synthesis.parameters())} synthesis parameters, "
          f"{steps} steps of batch {batch}, {opt_cls.__name__}({init})", flush=True)

    rng = torch.Generator().manual_seed(args.seed)
    start, t0 = 10**9, time.perf_counter()  # training indices far from the held-out ones
    for step in range(1, steps + 1):
        idx = torch.randint(start, 2 * start, (batch,), generator=rng).tolist()
        f = dm.factors(idx)
        target = render_shapes(f, resolution=dm.resolution)
        loss = F.mse_loss(synthesis(encoder(factor_vector(f))), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == steps:
            print(f"step {step:6d}  mse {loss.item():.4f}  {time.perf_counter() - t0:.0f} s", flush=True)

    classifier = shapes_classifier_for(dm).eval()
    idx = list(range(args.eval))
    f = dm.factors(idx)
    real = render_shapes(f, resolution=dm.resolution)
    synthesis.eval()
    with torch.no_grad():
        fake = torch.cat([synthesis(encoder(factor_vector(dm.factors(idx[i:i + 256]))), "const")
                          for i in range(0, len(idx), 256)])
        print(f"held-out mse {F.mse_loss(fake, real).item():.4f} ({args.eval} images)")
        for name, images in (("real", real), ("rendered", fake.clamp(-1, 1))):
            _, logits = classifier.features_and_logits(images)
            acc = (logits.argmax(1) == f.label).double().mean().item()
            share = class_histogram(logits, logits.shape[1], confidence=DEFAULT_CONFIDENCE)[:-1].sum().item()
            print(f"{name:9s} classifier accuracy {acc:.3f}  recognizable {share / len(images):.3f}")
    import torchvision  # only for the picture

    args.out.parent.mkdir(parents=True, exist_ok=True)
    pairs = torch.stack([real[:32], fake[:32].clamp(-1, 1)], 1).flatten(0, 1)
    torchvision.utils.save_image(pairs * 0.5 + 0.5, args.out, nrow=8, padding=1)
    print(f"real / rendered pairs: {args.out}")


if __name__ == "__main__":
    main()
