"""ImageFolderDataModule: modes, crop/resize pixel values, labels, zip == folder, unreadable files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gan.data.image_folder import ImageFolderDataModule, ImageSource, load_image, read_labels


def _v(level: float) -> float:
    """A 0-255 level as the datamodule scales it to [-1, 1]."""
    return level / 127.5 - 1


def _split_image(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), (255, 0, 0))
    img.paste((0, 0, 255), (width // 2, 0, width, height))
    return img


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 100, 50)).save(root / "rgb.png")
    Image.new("L", (8, 8), 90).save(root / "sub" / "gray.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # left half fully transparent
    rgba.paste((0, 255, 0, 255), (4, 0, 8, 8))       # right half opaque green
    rgba.save(root / "rgba.png")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    pal.save(root / "palette.png")
    Image.new("RGB", (37, 23), (1, 128, 254)).save(root / "odd.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (root / "notes.txt").write_text("not an image, not a warning")
    (root / ".hidden.png").write_bytes(b"junk")  # hidden: ignored silently
    return root


def _setup(path: Path | str, **kw) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(path=str(path), **kw)
    with pytest.warns(UserWarning, match="corrupt.png"):
        dm.setup()
    return dm


def _by_name(dm: ImageFolderDataModule) -> dict[str, torch.Tensor]:
    ds = dm.train_dataset
    x, _ = ds.__getitems__(list(range(len(ds.files))))
    return dict(zip(ds.files, x))


def test_corrupt_file_is_warned_and_skipped(folder):
    dm = ImageFolderDataModule(path=str(folder), resolution=4)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\).*corrupt\.png") as record:
        dm.setup()
    assert len(record) == 1
    assert dm.train_dataset.files == ["odd.png", "palette.png", "rgb.png", "rgba.png", "sub/gray.png"]
    assert len(dm.train_dataset) == 5 and dm.num_classes == 0


def test_modes_are_converted_and_scaled(folder):
    images = _by_name(_setup(folder, resolution=8))
    assert images["rgb.png"].shape == (3, 8, 8)
    rgb = torch.tensor([_v(200), _v(100), _v(50)])[:, None, None]
    assert torch.allclose(images["rgb.png"], rgb, rtol=0, atol=1e-6)
    assert torch.allclose(images["sub/gray.png"], torch.full((3, 8, 8), _v(90)), rtol=0, atol=1e-6)  # grey -> RGB
    palette_colour = torch.tensor([_v(10), _v(20), _v(30)])[:, None, None]
    assert torch.allclose(images["palette.png"], palette_colour, rtol=0, atol=1e-6)
    # Transparent pixels composited over white (the stored red never shows); opaque ones unchanged.
    assert torch.equal(images["rgba.png"][:, :, :4], torch.ones(3, 8, 4))
    assert torch.equal(images["rgba.png"][:, :, 4:], torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 8, 4))
    for x in images.values():
        assert x.min() >= -1 and x.max() <= 1


def test_greyscale_output_and_alpha_background(folder):
    images = _by_name(_setup(folder, resolution=8, channels=1, alpha_background=0))
    assert images["rgb.png"].shape == (1, 8, 8)
    luma = (200 * 299 + 100 * 587 + 50 * 114) / 1000  # ITU-R 601
    assert images["rgb.png"].unique().item() == pytest.approx(_v(luma), abs=1 / 127.5)
    assert torch.equal(images["rgba.png"][0, :, :4], torch.full((8, 4), -1.0))  # over black now
    assert images["rgba.png"][0, 0, 4].item() == pytest.approx(_v(255 * 0.587), abs=1 / 127.5)


def test_odd_size_is_center_cropped_and_resized(folder):
    images = _by_name(_setup(folder, resolution=16))
    want = torch.tensor([_v(1), _v(128), _v(254)])[:, None, None].expand(3, 16, 16)
    assert torch.allclose(images["odd.png"], want, rtol=0, atol=1e-6)


def test_crop_gives_exact_pixels(tmp_path):
    wide = _split_image(8, 4)  # crop columns 2..5 of 8: two red, two blue
    a = load_image(_png(wide), resolution=4, channels=3)
    assert (a[:, :2] == [255, 0, 0]).all() and (a[:, 2:] == [0, 0, 255]).all()
    tall = Image.fromarray(np.repeat(np.arange(0, 200, 20, dtype=np.uint8)[:, None], 4, axis=1), mode="L")  # 4x10
    b = load_image(_png(tall), resolution=4, channels=1)
    assert (b[:, :, 0] == np.array([60, 80, 100, 120])[:, None]).all()  # rows 3..6 of 10
    odd = Image.fromarray(np.repeat(np.arange(7, dtype=np.uint8)[None, :] * 30, 5, axis=0), mode="L")  # 7x5
    c = load_image(_png(odd), resolution=5, channels=1)
    assert (c[:, :, 0] == np.arange(1, 6) * 30).all()  # the leftover odd column is dropped on the right


def test_resize_of_a_split_image(tmp_path):
    a = load_image(_png(_split_image(16, 8)), resolution=4, channels=3).astype(int)  # 8x8 crop -> 4x4
    assert (a == a[:1]).all()  # every row the same
    assert (a[0, :, 1] == 0).all()
    assert (a[0, :, 0] == a[0, ::-1, 2]).all()  # left-right symmetric up to the red/blue swap
    assert a[0, 0, 0] == 255 and a[0, 0, 2] == 0
    assert a[0, 1, 0] > 200 and a[0, 1, 2] < 40  # next to the edge: blended, still mostly red


def test_mirror_appends_flipped_copies(folder):
    dm = _setup(folder, resolution=8, mirror=True)
    ds = dm.train_dataset
    n = len(ds.files)
    assert len(ds) == 2 * n
    x, y = ds.__getitems__(list(range(2 * n)))
    assert torch.equal(x[n:], x[:n].flip(-1)) and torch.equal(y[n:], y[:n])
    assert not torch.equal(x[n:], x[:n])  # the rgba image is not symmetric


def test_labels_json_both_formats(folder, tmp_path):
    mapping = {"odd.png": 2, "palette.png": 0, "rgb.png": 1, "rgba.png": 0, "sub/gray.png": 4, "gone.png": 1}
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(mapping))
    stylegan = tmp_path / "stylegan.json"
    stylegan.write_text(json.dumps({"labels": [[k, v] for k, v in mapping.items()]}))
    for path in (flat, stylegan):
        dm = _setup(folder, resolution=4, labels=str(path))
        assert dm.num_classes == 5
        ds = dm.train_dataset
        _, y = ds.__getitems__(list(range(len(ds))))
        assert y.dtype == torch.int64 and y.tolist() == [mapping[f] for f in ds.files]


def test_labels_errors(folder, tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"rgb.png": 0}))
    dm = ImageFolderDataModule(path=str(folder), labels=str(partial))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"4 image\(s\).*no label.*odd\.png"):
        dm.setup()
    with pytest.raises(ValueError, match="non-negative class index"):
        read_labels(json.dumps({"a.png": -1}), origin="x")
    with pytest.raises(ValueError, match="non-negative class index"):
        read_labels(json.dumps({"labels": [["a.png", [0.5, 0.5]]]}), origin="x")
    assert read_labels(json.dumps({"labels": None}), origin="x") is None
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ImageFolderDataModule(path=str(folder), labels=str(tmp_path / "missing.json")).num_classes


def test_zip_gives_the_same_data_as_the_folder(folder, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr("dataset.json", json.dumps({"labels": [[n, i] for i, n in enumerate(
            ["odd.png", "palette.png", "rgb.png", "rgba.png", "sub/gray.png"])]}))
        zf.writestr("__MACOSX/._rgb.png", b"resource fork junk")
    from_folder = _setup(folder, resolution=8, batch_size=5)
    from_zip = _setup(archive, resolution=8, batch_size=5)
    assert ImageSource(archive).is_zip and from_zip.train_dataset.files == from_folder.train_dataset.files
    assert from_zip.num_classes == 5  # dataset.json at the root of the zip is read by default
    xf, _ = next(iter(from_folder.train_dataloader()))
    xz, yz = next(iter(from_zip.train_dataloader()))
    assert torch.equal(xf, xz)
    # Two worker processes reading the same zip: same batches as in-process loading.
    from_zip.num_workers = 2
    loader = from_zip._loader(from_zip.train_dataset, shuffle=False, batch_size=1)
    got = torch.cat([x for x, _ in loader])
    want, _ = from_zip.train_dataset.__getitems__(list(range(5)))
    assert torch.equal(got, want)


def test_missing_or_empty_path_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataModule(path=str(tmp_path / "nowhere")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"No readable image in .*empty.*no image files"):
        ImageFolderDataModule(path=str(tmp_path / "empty")).setup()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    dm = ImageFolderDataModule(path=str(bad))
    with pytest.warns(UserWarning, match="x.jpg"), pytest.raises(ValueError, match="1 image file"):
        dm.setup()
    not_zip = tmp_path / "data.tar"
    not_zip.write_bytes(b"plain")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        ImageFolderDataModule(path=str(not_zip)).setup()


def test_full_scan_catches_truncated_files(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "good.png")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "truncated.png").write_bytes(_png(noise)[:-200])
    quick = ImageFolderDataModule(path=str(root), resolution=4)
    quick.setup()  # the header is fine: kept, and loading it names the file
    with pytest.raises(RuntimeError, match="truncated.png.*full_scan=True"):
        quick.train_dataset.__getitems__([1])
    full = ImageFolderDataModule(path=str(root), resolution=4, full_scan=True)
    with pytest.warns(UserWarning, match="truncated.png"):
        full.setup()
    assert full.train_dataset.files == ["good.png"]


def test_max_images_draws_a_seeded_subset(folder):
    a = _setup(folder, resolution=4, max_images=3, seed=1).train_dataset.files
    b = _setup(folder, resolution=4, max_images=3, seed=1).train_dataset.files
    assert a == b and len(a) == 3 and a == sorted(a)


def test_registered_as_the_image_folder_dataset():
    from lightning_gan.registry import get_registry

    assert get_registry("datasets").load("image_folder") is ImageFolderDataModule


def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_sixteen_bit_and_palette_transparency():
    deep = Image.fromarray(np.full((6, 6), 40000, dtype=np.uint16))  # I;16: keeps the top 8 bits
    assert (load_image(_png(deep), resolution=6, channels=1) == 40000 >> 8).all()
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 0  # palette entry 0 (red) is transparent
    assert (load_image(_png(pal), resolution=4, channels=3, alpha_background=30) == 30).all()


def test_default_metrics_are_fid_and_kid_with_the_inception_weights_else_swd(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_GAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", raising=False)
    dm = ImageFolderDataModule(path=str(tmp_path), resolution=8)
    assert dm.default_metrics() == ["swd"]
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"")
    monkeypatch.setenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", str(weights))
    assert dm.default_metrics() == ["fid", "kid"]


def test_a_missing_folder_is_one_line_that_says_which_option_to_set(tmp_path):
    from lightning_gan.errors import ConfigError

    with pytest.raises(ConfigError, match=r"not found: .*nowhere.*--data\.init_args\.path=DIR") as info:
        ImageSource(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError) and "\n" not in str(info.value)
