"""The commands that use a trained generator: export --format onnx, generate --direction / --style-mixing, project.

They run on exported tiny generators (``export_generator`` of a freshly built network with perturbed weights),
which every command takes wherever it takes a checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gan import registry
from lightning_gan.checkpoint import export_generator
from lightning_gan.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_onnx_export import TINY, tiny_generator  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """name -> an exported tiny generator (.safetensors) of that architecture."""
    tmp = tmp_path_factory.mktemp("exported")
    paths = {}
    for name in ("dcgan", "stylegan2", "biggan"):
        g = tiny_generator(name)
        weights, _ = export_generator(g, tmp / f"{name}.safetensors",
                                      architecture={"class_path": name, "init_args": TINY[name]})
        paths[name] = weights
    return paths


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_export_onnx_prints_inputs_and_the_checked_difference(exported, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX export needs the optional extra: pip install 'lightning-gan[onnx]'")
    out = tmp_path / "G.onnx"
    assert main(["export", "--ckpt", str(exported["stylegan2"]), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file()
    assert "inputs:   z [N, 8], psi [] truncation in W -> images [N, 3, 16, 16]" in text
    diff = float(text.split("max abs difference ")[1].split()[0])
    assert diff <= 1e-4


def test_export_onnx_biggan_says_which_batch_norm_statistics_it_uses(exported, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX export needs the optional extra: pip install 'lightning-gan[onnx]'")
    assert main(["export", "--ckpt", str(exported["biggan"]), "--format", "onnx", "--out",
                 str(tmp_path / "G.onnx")]) == 0
    captured = capsys.readouterr()
    assert "running statistics" in captured.err
    assert "c [N, 3] one-hot" in captured.out


def test_export_onnx_without_onnxruntime_says_what_to_install(exported, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(SystemExit) as info:
        main(["export", "--ckpt", str(exported["dcgan"]), "--format", "onnx", "--out", str(tmp_path / "G.onnx")])
    assert info.value.code == 2
    line = _last_error(capsys)
    assert "pip install 'lightning-gan[onnx]'" in line and "onnxruntime" in line


def _cells(path: Path, rows: int, cols: int, size: int, scale: int) -> np.ndarray:
    """The grid's cells [rows, cols, H, W, C] (padding 2 px, upscaled ``scale`` times)."""
    grid = np.asarray(Image.open(path).convert("RGB"))
    step = (size + 2) * scale
    assert grid.shape[:2] == ((2 + rows * (size + 2)) * scale, (2 + cols * (size + 2)) * scale)
    return np.stack([np.stack([grid[2 * scale + r * step:2 * scale + r * step + size * scale:scale,
                                    2 * scale + k * step:2 * scale + k * step + size * scale:scale]
                               for k in range(cols)]) for r in range(rows)])


def _as_uint8(images: torch.Tensor) -> np.ndarray:
    """[..., C, H, W] in [-1, 1] -> [..., H, W, C] uint8, as the grids quantize."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).numpy()


def test_generate_direction_sweeps_each_seed_along_a_sefa_direction(exported, tmp_path, capsys) -> None:
    from lightning_gan.checkpoint import load_generator
    from lightning_gan.directions import sefa_directions

    out = tmp_path / "edit"
    assert main(["generate", "--ckpt", str(exported["stylegan2"]), "--out", str(out), "--seeds", "3,4",
                 "--direction", "1", "--strength", "-2:2", "--steps", "3"]) == 0
    files = json.loads((out / "generate.json").read_text())["files"]
    assert files["direction"]["strengths"] == [-2.0, 0.0, 2.0] and files["direction"]["space"] == "w"
    g = load_generator(exported["stylegan2"])
    n = sefa_directions(g, 2)[0][1]
    z = torch.cat([g.sample_latents(1, generator=torch.Generator().manual_seed(s)) for s in (3, 4)])
    with torch.no_grad():
        ws = g.mapping(z)
        want = torch.stack([g.synthesis(ws + s * n, noise_mode="const") for s in (-2.0, 0.0, 2.0)], 1)
    cells = _cells(Path(files["direction"]["file"]), 2, 3, 16, 4)
    assert np.abs(cells.astype(int) - _as_uint8(want).astype(int)).max() <= 1
    assert not np.array_equal(cells[0, 0], cells[0, 2])


def test_generate_direction_edits_a_latent_file(exported, tmp_path) -> None:
    from lightning_gan.checkpoint import load_generator
    from lightning_gan.directions import sefa_directions
    from lightning_gan.latents import save_latent

    g = load_generator(exported["biggan"])
    z, c = torch.randn(1, g.z_dim), torch.nn.functional.one_hot(torch.tensor([2]), 3).float()
    latent = save_latent(tmp_path / "latent.safetensors", space="z", latent=z, c=c)
    out = tmp_path / "edit"
    assert main(["generate", "--ckpt", str(exported["biggan"]), "--out", str(out), "--latent", str(latent),
                 "--direction", "0", "--strength", "-1,1"]) == 0
    n = sefa_directions(g, 1)[0][0]
    with torch.no_grad():
        want = torch.stack([g(z - n, c), g(z + n, c)], 1)
    cells = _cells(out / "direction-0.png", 1, 2, 32, 2)
    assert np.abs(cells.astype(int) - _as_uint8(want).astype(int)).max() <= 1


def test_generate_direction_is_refused_for_an_architecture_without_the_hook(tmp_path, capsys) -> None:
    from lightning_gan.testing import TinyArchitecture

    arch = TinyArchitecture(hidden=8)
    weights, _ = export_generator(arch.build().generator, tmp_path / "mlp.safetensors", architecture=arch.config())
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(weights), "--out", str(tmp_path / "o"), "--direction", "0"])
    line = _last_error(capsys)
    assert "has no closed-form directions" in line and "factorizable_weights" in line


def test_generate_style_mixing_writes_the_classic_grid(exported, tmp_path) -> None:
    from lightning_gan.checkpoint import load_generator

    out = tmp_path / "mix"
    assert main(["generate", "--ckpt", str(exported["stylegan2"]), "--out", str(out), "--style-mixing", "0-1",
                 "10-12", "--mix-layers", "middle"]) == 0
    record = json.loads((out / "generate.json").read_text())["files"]["style_mixing"]
    assert record["ws_indices"] == [2, 3] and record["resolutions"] == [8]  # 16 px: middle is the 8x8 layers
    g = load_generator(exported["stylegan2"])

    def ws(seeds):
        return g.mapping(torch.cat([g.sample_latents(1, generator=torch.Generator().manual_seed(s)) for s in seeds]))

    with torch.no_grad():
        rows, cols = ws([0, 1]), ws([10, 11, 12])
        mixed = rows[1].clone()
        mixed[2:4] = cols[2, 2:4]
        want_cell = g.synthesis(mixed[None], noise_mode="const")[0]
        want_col = g.synthesis(cols[2:3], noise_mode="const")[0]
    cells = _cells(Path(record["file"]), 3, 4, 16, 4)
    assert np.abs(cells[2, 3].astype(int) - _as_uint8(want_cell).astype(int)).max() <= 1
    assert np.abs(cells[0, 3].astype(int) - _as_uint8(want_col).astype(int)).max() <= 1
    assert cells[0, 0].max() == 0  # the empty corner


def test_generate_style_mixing_is_refused_without_mapping_and_synthesis(exported, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(exported["dcgan"]), "--out", str(tmp_path / "o"), "--style-mixing", "0", "1"])
    assert "style-based generator" in _last_error(capsys)


@pytest.fixture
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _save_png(image: torch.Tensor, path: Path) -> Path:
    Image.fromarray(_as_uint8(image)).save(path)
    return path


def test_project_writes_picture_latent_gif_and_distance_and_generate_edits_the_latent(exported, tmp_path, capsys,
                                                                                        _one_thread) -> None:
    from lightning_gan.checkpoint import load_generator

    g = load_generator(exported["stylegan2"])
    with torch.no_grad():
        target = g.synthesis(g.mapping(torch.randn(1, g.z_dim)), noise_mode="const")[0]
    image = _save_png(target, tmp_path / "a.png")
    assert main(["project", "--ckpt", str(exported["stylegan2"]), "--image", str(image), "--steps", "30",
                 "--out", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "a.png: multiscale_pixels distance" in text  # no LPIPS weights here: the fallback, named
    record = json.loads((tmp_path / "p" / "a-projection.json").read_text())
    assert record["space"] == "w" and record["distance_name"] == "multiscale_pixels" and record["distance"] >= 0
    compare = Image.open(record["files"]["compare"])
    assert compare.size == ((2 + 2 * 18) * 4, (2 + 18) * 4)  # target | projection, 16 px cells upscaled x4
    assert Image.open(record["files"]["gif"]).n_frames == 30 + 1
    # the latent reproduces the projected picture, and generate --latent edits it
    from lightning_gan.latents import load_latent

    space, latent, c = load_latent(record["files"]["latent"])
    assert space == "w" and latent.shape == (1, g.num_ws, 8) and c is None
    with torch.no_grad():
        projected = g.synthesis(latent, noise_mode="const")  # (the noise maps differ: only the shape is compared)
    assert projected.shape == (1, 3, 16, 16)
    assert main(["generate", "--ckpt", str(exported["stylegan2"]), "--out", str(tmp_path / "e"), "--latent",
                 record["files"]["latent"], "--direction", "0", "--strength", "-1,0,1"]) == 0
    assert Image.open(tmp_path / "e" / "direction-0.png").size == ((2 + 3 * 18) * 4, (2 + 18) * 4)


def test_project_dcgan_in_z_with_a_given_class(exported, tmp_path, capsys, _one_thread) -> None:
    from lightning_gan.checkpoint import load_generator

    g = load_generator(exported["dcgan"])
    with torch.no_grad():
        target = g(torch.randn(1, g.z_dim), torch.nn.functional.one_hot(torch.tensor([2]), 3).float())[0]
    image = _save_png(target, tmp_path / "b.png")
    assert main(["project", "--ckpt", str(exported["dcgan"]), "--image", str(image), "--steps", "40",
                 "--class", "2"]) == 0
    record = json.loads((tmp_path / "b-projection.json").read_text())  # next to the image by default
    assert record["space"] == "z" and record["class"] == 2


def test_project_refuses_bad_input_in_one_line(exported, tmp_path, capsys) -> None:
    small = _save_png(torch.zeros(3, 8, 8), tmp_path / "small.png")
    cases = [
        (["--image", str(tmp_path / "missing.png")], "no file at"),
        (["--image", str(small)], "is 8x8, the generator makes 16x16 images; pass --resize"),
        (["--image", str(small), "--resize", "--space", "w"], "no W space"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit):
            main(["project", "--ckpt", str(exported["dcgan"]), "--steps", "1", *extra])
        assert message in _last_error(capsys)
