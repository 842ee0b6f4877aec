"""Projection (``lightning_gan.projection.project``) of held-out shapes with a trained shapes checkpoint, judged by the
pinned shapes judge.

Prints figures only. The targets are ``--num`` held-out images of the run's shapes data (``holdout``: data seed
``seed + 1``, none of them a training image). Each is projected (``--steps`` steps; StyleGAN2 in W, other
generators in Z with the class picked with the start when the generator is conditional), and the pinned shapes
judge of the data's settings (``lightning_gan.metrics.shapes``) classifies the targets and the projections:

- ``judge on targets``: the judge's accuracy on the held-out targets (how far to trust the next line);
- ``judge on projections``: the share of projections the judge puts in the target's true class;
- ``recognizable``: the share of projections the judge calls a shape at probability >= 0.5;
- ``class picked`` (conditional generators): the share whose picked class is the target's true class;
- PSNR (dB, images in [-1, 1]) and the final distance, mean and median; seconds for the whole batch
  (``project_many``: all targets at once, each projected as if alone).

A picture (``--picture``): the first ``--show`` targets in the top row, their projections below.
Usage: ``python benchmarks/projection_shapes.py --ckpt RUN.ckpt [--num 100] [--steps 300] [--picture FILE.png]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_gan.checkpoint import load_sampler
from lightning_gan.metrics.shapes import shapes_classifier_for
from lightning_gan.projection import project_many
from lightning_gan.utils.images import make_grid_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a run checkpoint of a shapes recipe (e.g. biggan-shapes32)")
    parser.add_argument("--num", type=int, default=100, help="held-out images to project (default 100)")
    parser.add_argument("--steps", type=int, default=300, help="projection steps per image (default 300)")
    parser.add_argument("--distance", default="auto", help="auto, lpips or multiscale_pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--picture", help="write targets (top) and projections (bottom) of the first --show images")
    parser.add_argument("--show", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_sampler(args.ckpt)
    generator = loaded.generator.eval()
    datamodule = loaded.build_datamodule({"holdout": args.num})
    datamodule.setup("fit")
    judge = shapes_classifier_for(datamodule).eval()
    held = datamodule.heldout_dataset
    targets = torch.stack([held[i][0] for i in range(args.num)]).float()  # [num, C, H, W] in [-1, 1]
    labels = torch.tensor([int(held[i][1]) for i in range(args.num)])
    num_classes = len(datamodule.classes)

    start = time.perf_counter()  # all targets in one batch (project_many: each as if alone)
    results = project_many(generator, targets, steps=args.steps, distance=args.distance, frame_every=0)
    seconds = time.perf_counter() - start
    projections = [r.image for r in results]
    picked = [None if r.c is None else int(r.c.argmax()) for r in results]
    psnrs, distances, name = [r.psnr for r in results], [r.distance for r in results], results[0].distance_name
    projections_t = torch.stack(projections)  # [num, C, H, W]

    def judged(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quantized = ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # 8 bits, as the shapes metrics
        with torch.no_grad():
            probs = torch.softmax(judge.features_and_logits(quantized)[1], dim=1)  # [num, classes + 1]: last "not a shape"
        return probs.argmax(1), probs.max(1).values

    target_class, _ = judged(targets)
    projected_class, confidence = judged(projections_t)
    recognizable = (projected_class < num_classes) & (confidence >= 0.5)
    print(f"checkpoint:            {loaded.source} ({loaded.info.get('kimg')} kimg, "
          f"{type(generator).__name__})")
    print(f"targets:               {args.num} held-out shapes (data seed {datamodule.seed + 1}), {args.steps} steps, "
          f"distance {name}, {args.threads} thread(s)")
    print(f"judge on targets:      {float((target_class == labels).float().mean()):.3f}")
    print(f"judge on projections:  {float((projected_class == labels).float().mean()):.3f}")
    print(f"recognizable:          {float(recognizable.float().mean()):.3f}")
    if picked[0] is not None:
        print(f"class picked:          {sum(p == int(y) for p, y in zip(picked, labels)) / args.num:.3f}")
    print(f"PSNR (dB):             mean {statistics.mean(psnrs):.2f}, median {statistics.median(psnrs):.2f}")
    print(f"distance:              mean {statistics.mean(distances):.4g}, median {statistics.median(distances):.4g}")
    print(f"seconds:               {seconds:.1f} for the batch of {args.num}")
    if args.picture:
        n = min(args.show, args.num)
        grid = make_grid_image(torch.cat([targets[:n], projections_t[:n]]), n)
        grid.resize((grid.width * 2, grid.height * 2)).save(args.picture)
        print(f"picture:               {args.picture}")


if __name__ == "__main__":
    main()
