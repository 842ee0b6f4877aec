"""Images from a folder (searched recursively) or a .zip archive, center-cropped and resized to a square.

The images are the files whose names end in one of ``IMAGE_EXTENSIONS`` (any case), sorted by their
path relative to the root (forward slashes, also inside a zip). Hidden files and folders (names that
start with ``.``) and ``__MACOSX`` folders are ignored. Each image is

1. decoded with Pillow (a JPEG at least twice the target size is decoded at a reduced DCT scale that
   still covers ``resolution``: much faster, nearly the same pixels) and turned upright by its EXIF
   orientation tag, if any;
2. converted to ``channels``: 3 -> RGB, 1 -> greyscale (ITU-R 601 luma). Images with transparency
   (RGBA, LA, PA, palette or RGB/L images with a transparent colour) are first composited over an opaque
   grey of level ``alpha_background`` (default white), so transparent pixels never show whatever colour
   happens to be stored under them. Palette and 1-bit images use their palette/levels; 16-bit greyscale
   keeps its 8 most significant bits;
3. center-cropped to a square of side min(width, height) (an odd leftover pixel is dropped on the
   right or bottom) and resized to ``resolution`` x ``resolution`` with a Lanczos filter (no resizing when the
   square already has that size: a pure crop);
4. scaled from [0, 255] to [-1, 1]: ``x = v / 127.5 - 1``.

Labels (optional) come from a JSON file in one of two forms, with paths relative to the root:

* a flat mapping ``{"cats/001.png": 0, "dogs/001.png": 1, ...}``;
* StyleGAN's ``dataset.json``: ``{"labels": [["cats/001.png", 0], ["dogs/001.png", 1], ...]}``
  (``{"labels": null}`` means unlabelled).

Labels are non-negative class indices; ``num_classes`` is the largest one plus one, and every image
must have one. Without ``labels``, a ``dataset.json`` at the root of the folder or zip is read if present
(as StyleGAN does); otherwise the data is unlabelled (label 0 for every image, ``num_classes`` 0).

Unreadable files: ``setup`` opens every image (its header by default; ``full_scan=True`` decodes it
completely), skips those that fail and warns once, naming every skipped file and its error. It raises
``FileNotFoundError`` when the path does not exist and ``ValueError`` when no readable image is left.
A file that passes the header check but fails to decode later, during training, raises an error naming
it (run with ``full_scan=True`` to catch such files up front).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gan.data.base import GANDataModule
from lightning_gan.errors import ConfigError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataModule", "ImageFolderDataset", "ImageSource", "MissingImagesError",
           "load_image", "read_labels"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi",
)
"""File name endings (lower case) taken as images."""

_DEFAULT_LABELS = "dataset.json"


class ImageSource:
    """The files of a folder or a zip archive, by path relative to the root (forward slashes).

    Safe in DataLoader workers: a zip is opened lazily in each process that reads from it (never shared
    across a fork) and the open handle is not pickled.

    Args:
        path: a folder or a zip file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            self.is_zip = False
        elif os.path.isfile(self.path):
            if not zipfile.is_zipfile(self.path):
                raise ValueError(f"{self.path!r} is neither a folder nor a zip archive of images")
            self.is_zip = True
        else:
            raise MissingImagesError(
                f"Image folder or zip not found: {self.path!r}; give your images with --data.init_args.path=DIR "
                f"(a folder, searched recursively, or a .zip)"
            )
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)  # a forked child opens its own handle
            self._zip_pid = os.getpid()
        return self._zip

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"], state["_zip_pid"] = None, None
        return state

    def files(self) -> list[str]:
        """Every file, hidden ones and ``__MACOSX`` excepted, sorted."""
        if self.is_zip:
            names = [n for n in self._archive().namelist() if not n.endswith("/")]
        else:
            names = []
            for root, dirs, files in os.walk(self.path, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                rel = os.path.relpath(root, self.path)
                prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                names.extend(prefix + f for f in files)
        return sorted(n for n in names if not any(p.startswith(".") or p == "__MACOSX" for p in n.split("/")))

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._archive().getinfo(name)
            except KeyError:
                return False
            return True
        return os.path.isfile(os.path.join(self.path, name))

    def open(self, name: str) -> IO[bytes]:
        """A binary stream of one file (read lazily: enough for headers)."""
        if self.is_zip:
            return self._archive().open(name)
        return open(os.path.join(self.path, name), "rb")

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._archive().read(name)
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class MissingImagesError(ConfigError, FileNotFoundError):
    """The image folder or zip a run was given does not exist (the CLI shows it as one line)."""


def read_labels(text: str, *, origin: str) -> dict[str, int] | None:
    """Parse a labels JSON (flat ``{path: index}`` or StyleGAN's ``{"labels": [[path, index], ...]}``).

    Args:
        text: the JSON text.
        origin: where it came from, for error messages.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"Labels file {origin} is not valid JSON: {err}") from err
    if isinstance(data, dict) and "labels" in data and (data["labels"] is None or isinstance(data["labels"], list)):
        if data["labels"] is None:
            return None
        pairs = data["labels"]
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise ValueError(f"Labels file {origin}: 'labels' must be a list of [path, class_index] pairs")
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise ValueError(f"Labels file {origin} must hold {{path: class_index, ...}} or "
                         f"{{\"labels\": [[path, class_index], ...]}}")
    labels: dict[str, int] = {}
    for name, value in pairs:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"Labels file {origin}: the label of {name!r} must be a non-negative class index, got {value!r} "
                f"(vector labels are not supported)"
            )
        labels[str(name).replace("\\", "/")] = value
    return labels


def _to_channels(img: Image.Image, channels: int, alpha_background: int) -> Image.Image:
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit (or 32-bit integer) greyscale: keep the top 8 of 16 bits (convert("L") would clip).
        arr = np.asarray(img).astype(np.int64)
        img = Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (alpha_background,) * 3 + (255,))
        img = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def load_image(data: bytes | IO[bytes], *, resolution: int, channels: int, alpha_background: int = 255) -> np.ndarray:
    """One image as uint8 [resolution, resolution, channels]: upright, converted, center-cropped, resized.

    Args:
        data: the encoded file (bytes or a binary stream).
        resolution: side of the square output.
        channels: 1 (greyscale) or 3 (RGB).
        alpha_background: grey level (0-255) that transparent pixels are composited over.
    """
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        img.draft(img.mode, (resolution, resolution))  # JPEG: decode at a reduced scale >= resolution
        img = ImageOps.exif_transpose(img)
        img = _to_channels(img, channels, alpha_background)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        if side == resolution:
            img = img.crop(box)
        else:
            img = img.resize((resolution, resolution), Image.Resampling.LANCZOS, box=box)
        arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(resolution, resolution, channels)


class ImageFolderDataset(Dataset):
    """Decoded, cropped and resized images of an ``ImageSource``, with their labels.

    With ``mirror`` the dataset has twice as many items: item ``i + len(files)`` is item ``i`` flipped
    left-right (deterministic, as StyleGAN's ``--mirror``).

    Args:
        source: where the files are.
        files: the image paths to use (relative to the source's root).
        labels: a class index per file, or None (all 0).
        resolution: side of the square images.
        channels: 1 (greyscale) or 3 (RGB).
        mirror: add left-right mirrored copies.
        alpha_background: grey level (0-255) that transparent pixels are composited over.
    """

    def __init__(self, *, source: ImageSource, files: Sequence[str], labels: Sequence[int] | None,
                 resolution: int, channels: int, mirror: bool = False, alpha_background: int = 255) -> None:
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.source = source
        self.files = list(files)
        self.labels = torch.as_tensor(list(labels) if labels is not None else [0] * len(self.files), dtype=torch.long)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.mirror = bool(mirror)
        self.alpha_background = int(alpha_background)

    def __len__(self) -> int:
        return len(self.files) * (2 if self.mirror else 1)

    def _load(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        name = self.files[index % len(self.files)]
        try:
            arr = load_image(self.source.read(name), resolution=self.resolution, channels=self.channels,
                             alpha_background=self.alpha_background)
        except Exception as err:  # decoding errors come in many types (OSError, SyntaxError, ValueError...)
            raise RuntimeError(
                f"Cannot decode image {name!r} in {self.source.path!r}: {err}. "
                f"Remove the file or set full_scan=True to skip every undecodable file at setup."
            ) from err
        return arr[:, ::-1] if index >= len(self.files) else arr

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The batch ``(x [N, C, R, R] float in [-1, 1], label [N] int64)``."""
        batch = np.stack([self._load(int(i)) for i in indices])  # [N, R, R, C] uint8
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        y = self.labels[torch.as_tensor([int(i) % len(self.files) for i in indices], dtype=torch.long)]
        return x.div_(127.5).sub_(1.0), y


def _scan(source: ImageSource, names: Sequence[str], *, full: bool) -> tuple[list[str], list[str]]:
    """(readable names, ``"name (error)"`` for each unreadable one)."""
    readable, unreadable = [], []
    for name in names:
        try:
            with source.open(name) as f, Image.open(f) as img:
                if full:
                    img.load()
                if img.width < 1 or img.height < 1:
                    raise ValueError("empty image")
        except Exception as err:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
            unreadable.append(f"{name} ({type(err).__name__}: {err})")
        else:
            readable.append(name)
    return readable, unreadable


class ImageFolderDataModule(GANDataModule):
    """Images from a folder (recursive) or a .zip, as ``(x [N, C, R, R] in [-1, 1], label [N] int64)`` batches.

    ``holdout=N`` keeps N of the images out of training (``heldout_dataset``), for ``OverfittingMonitor``.

    Each image is made upright (EXIF), converted to ``channels`` (transparency composited over the grey
    ``alpha_background``), center-cropped to a square and resized to ``resolution`` (Lanczos); details in
    the module docstring.

    Labels JSON, paths relative to the root with forward slashes: ``{"a/1.png": 0, "b/2.png": 1}`` or
    StyleGAN's ``{"labels": [["a/1.png", 0], ["b/2.png", 1]]}``. Every image needs a label; ``num_classes``
    is the largest label plus one. Without ``labels``, the root's ``dataset.json`` is used if present.

    Unreadable files are skipped at ``setup`` with one warning that names each of them; a missing path
    raises ``FileNotFoundError``, a path with no readable image ``ValueError``.
    """

    supports_holdout = True

    def __init__(
        self,
        *,
        path: str,
        resolution: int = 64,
        channels: int = 3,
        labels: str | None = None,
        mirror: bool = False,
        alpha_background: int = 255,
        full_scan: bool = False,
        max_images: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        num_predict: int = 64,
        balance_classes: bool = False,
        holdout: int = 0,
    ) -> None:
        """
        Args:
            path: a folder (searched recursively) or a .zip archive of images.
            resolution: side of the square images the data yields, in pixels.
            channels: 1 (greyscale) or 3 (RGB).
            labels: JSON file of class indices by image path (see the class docstring); None: root dataset.json, if any.
            mirror: add left-right mirrored copies of every image (doubles the epoch).
            alpha_background: grey level (0-255) that transparent pixels are composited over.
            full_scan: decode every image at setup to skip undecodable ones (slow); otherwise check headers only.
            max_images: use at most this many images (a subset drawn with ``seed``); None uses all.
            batch_size: samples per batch and process.
            num_workers: DataLoader workers decoding images (a few are worth it for JPEG/PNG at full size).
            seed: seed of the epoch shuffles and of the ``max_images`` subset.
            num_predict: how many samples ``predict`` generates.
            balance_classes: training batches hold every class in equal shares (labelled data only; minority
                classes oversampled; ``lightning_gan.data.base.ClassBalancedSampler``).
            holdout: this many of the images (drawn with ``seed``, after ``max_images``) are kept out of training,
                in ``heldout_dataset`` (never mirrored), for ``OverfittingMonitor``; 0: none.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, num_predict=num_predict,
                         balance_classes=balance_classes, holdout=holdout)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        if not 0 <= alpha_background <= 255:
            raise ValueError(f"alpha_background must be a grey level from 0 to 255, got {alpha_background}")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
        self.path = os.fspath(path)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.labels = None if labels is None else os.fspath(labels)
        self.mirror = bool(mirror)
        self.alpha_background = int(alpha_background)
        self.full_scan = bool(full_scan)
        self.max_images = None if max_images is None else int(max_images)
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self._source: ImageSource | None = None
        self._label_map: dict[str, int] | None = None
        self._labels_read = False

    @property
    def source(self) -> ImageSource:
        """The folder or zip (checked to exist on first use)."""
        if self._source is None:
            self._source = ImageSource(self.path)
        return self._source

    def label_map(self) -> dict[str, int] | None:
        """``{relative path: class index}`` from the labels file, or None when the data is unlabelled."""
        if not self._labels_read:
            if self.labels is not None:
                if not os.path.isfile(self.labels):
                    raise FileNotFoundError(f"Labels file not found: {self.labels!r}")
                with open(self.labels, encoding="utf-8") as f:
                    self._label_map = read_labels(f.read(), origin=repr(self.labels))
            elif self.source.exists(_DEFAULT_LABELS):
                origin = f"{_DEFAULT_LABELS!r} in {self.path!r}"
                self._label_map = read_labels(self.source.read(_DEFAULT_LABELS).decode("utf-8"), origin=origin)
            self._labels_read = True
        return self._label_map

    def default_metrics(self) -> list[Any]:
        """FID and KID when the Inception weights are on this machine, else the sliced Wasserstein distance
        (``swd``, nothing to download); see ``lightning_gan.metrics.features`` for where the weights are looked up."""
        from lightning_gan.metrics.features import find_inception_weights

        return ["fid", "kid"] if find_inception_weights() is not None else ["swd"]

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Largest class index in the labels plus one; 0 when unlabelled."""
        labels = self.label_map()
        return max(labels.values()) + 1 if labels else 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        source = self.source
        names = [n for n in source.files() if n.lower().endswith(IMAGE_EXTENSIONS)]
        files, unreadable = _scan(source, names, full=self.full_scan)
        if unreadable:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"{type(self).__name__}: skipped {len(unreadable)} unreadable image file(s) in {self.path!r}: "
                + "; ".join(unreadable)
            )
        if not files:
            found = f"{len(names)} image file(s), none readable" if names else "no image files"
            raise ValueError(
                f"No readable image in {self.path!r}: {found} (image files end in {', '.join(IMAGE_EXTENSIONS)})"
            )
        if self.max_images is not None and self.max_images < len(files):
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(len(files), size=self.max_images, replace=False))
            files = [files[i] for i in keep]
        heldout: list[str] = []
        if self.holdout:
            if self.holdout >= len(files):
                raise ConfigError(f"holdout={self.holdout} would keep every one of the {len(files)} images in "
                                  f"{self.path!r} out of training; hold out fewer (e.g. {max(1, len(files) // 10)})")
            rng = np.random.default_rng(self.seed + 1)
            out = set(rng.choice(len(files), size=self.holdout, replace=False).tolist())
            heldout = [f for i, f in enumerate(files) if i in out]
            files = [f for i, f in enumerate(files) if i not in out]
        label_map = self.label_map()

        def labels_of(names: list[str]) -> list[int] | None:
            if label_map is None:
                return None
            missing = [f for f in names if f not in label_map]
            if missing:
                raise ValueError(
                    f"{len(missing)} image(s) in {self.path!r} have no label in the labels file, e.g. {missing[:5]}"
                )
            return [label_map[f] for f in names]

        common = dict(source=source, resolution=self.resolution, channels=self.channels,
                      alpha_background=self.alpha_background)
        self.train_dataset = ImageFolderDataset(files=files, labels=labels_of(files), mirror=self.mirror, **common)
        if heldout:
            self.heldout_dataset = ImageFolderDataset(files=heldout, labels=labels_of(heldout), mirror=False,
                                                      **common)
