"""The repository cites only what a user has: the theory guide (docs/theory.md) and papers, never a design document
outside it; every link into the guide names one of its sections; every function and command the guide names
exists; and the Python version the packages promise is the one the docs state."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "theory.md"
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "runs", "lightning_logs", "build", "dist"}
# Written in pieces so that this file does not match itself.
OUTSIDE = re.compile("DES" "IGN(?:\\.md| item| mechanism)|shared/" "seeds")
# Where the guide's bare names live (its dotted names say their module themselves).
MODULES = ("lightning_gan.analysis", "lightning_gan.regularizers", "lightning_gan.phases", "lightning_gan.metrics.ppl",
           "lightning_gan.metrics.jacobian", "lightning_gan.metrics.equivariance", "lightning_gan.ops",
           "lightning_gan.precision.scaler", "lightning_gan.callbacks", "lightning_gan_stylegan2.layers")


def repository_files() -> list[Path]:
    """Every file of the working tree that the repository holds or would hold: not .git, the venv, caches or runs."""
    files = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts[:-1]) or not path.is_file():
            continue
        files.append(path)
    return files


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # pictures, checkpoints, weights


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def guide_anchors() -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", GUIDE.read_text(encoding="utf-8"), flags=re.MULTILINE)}


def test_no_file_cites_a_document_users_do_not_have() -> None:
    found = []
    for path in repository_files():
        text = text_of(path)
        for number, line in enumerate((text or "").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "cite docs/theory.md (a section) or the paper instead:\n" + "\n".join(found)


def test_every_link_into_the_theory_guide_names_one_of_its_sections() -> None:
    anchors = guide_anchors()
    assert {"stability-of-the-linearized-game", "per-pixel-noise-and-its-ar1-fit", "dynamic-loss-scaling"} <= anchors
    links, broken = 0, []
    for path in repository_files():
        for number, line in enumerate((text_of(path) or "").splitlines(), 1):
            for anchor in re.findall(r"theory\.md#([\w\-]+)", line):
                links += 1
                if anchor not in anchors:
                    broken.append(f"{path.relative_to(ROOT)}:{number}: #{anchor}")
    assert links >= 12 and not broken, "no such section of docs/theory.md:\n" + "\n".join(broken)


def _resolve(name: str) -> object:
    """A dotted ``package.module.attribute`` path, or a bare name found in one of MODULES."""
    if "." in name:
        module, _, attribute = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError:
            return importlib.import_module(name)
    for module in MODULES:
        if hasattr(importlib.import_module(module), name):
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"{name} is in none of {MODULES}")


def test_every_function_the_guide_names_exists() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    table = [line.split("|")[2] for line in text.splitlines() if line.startswith("| [")]
    assert len(table) == 11, "one row per mechanism"
    names = {n for cell in table for n in re.findall(r"`([A-Za-z_]\w*)`", cell)}
    names |= set(re.findall(r"`(lightning_gan\w*(?:\.\w+)+)", text))  # dotted paths
    names |= set(re.findall(r"`([a-z]\w*_\w*)\(", text))  # calls: `convergence_factor(eta, alpha, s_max)`
    assert len(names) > 40
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name}: {exc}")
    assert not missing, "\n".join(missing)


def test_every_script_and_module_the_guide_runs_exists_with_its_options() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    scripts = re.findall(r"^python (benchmarks/\w+\.py)((?: --[\w-]+(?: [^\s#-]\S*)?)*)", text, flags=re.MULTILINE)
    assert len(scripts) >= 4
    for script, options in scripts:
        source = (ROOT / script).read_text(encoding="utf-8")
        for option in re.findall(r"--[\w-]+", options):
            assert f'"{option}"' in source, f"{script} has no option {option}"
    for module in re.findall(r"^python -m ([\w.]+)", text, flags=re.MULTILINE):
        assert importlib.util.find_spec(module) is not None, module


# Standard-library modules newer than Python 3.8, with the version that added them.
NEW_STDLIB = {"zoneinfo": (3, 9), "graphlib": (3, 9), "tomllib": (3, 11)}


def _minimum(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert match, f"requires-python should be a plain minimum, got {spec!r}"
    return int(match[1]), int(match[2])


def test_the_python_version_promised_is_the_one_documented_and_tested() -> None:
    """requires-python is the same for the core and every plugin, README.md and the plugin guide's template say
    the same, and the suite runs on it (only a version the suite runs on may be promised)."""
    pyprojects = [ROOT / "pyproject.toml", *sorted((ROOT / "plugins").glob("*/pyproject.toml"))]
    minimums = {p.relative_to(ROOT).as_posix(): _minimum(tomllib.loads(p.read_text())["project"]["requires-python"])
                for p in pyprojects}
    assert len(minimums) >= 5 and len(set(minimums.values())) == 1, minimums
    (minimum,) = set(minimums.values())
    readme = re.findall(r"`python3` \(>= (\d+)\.(\d+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert [tuple(map(int, v)) for v in readme] == [minimum]
    template = re.findall(r'^requires-python = "(.+)"$', (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"),
                          flags=re.MULTILINE)
    assert [_minimum(t) for t in template] == [minimum]
    assert sys.version_info[:2] >= minimum
    # and nothing needs a newer Python than that: no newer syntax, no standard-library module added since
    too_new = []
    for path in repository_files():
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=minimum)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for top in (n.split(".")[0] for n in names):
                if NEW_STDLIB.get(top, (0, 0)) > minimum:
                    too_new.append(f"{path.relative_to(ROOT)}:{node.lineno}: {top} (Python %d.%d)" % NEW_STDLIB[top])
    assert not too_new, f"requires-python says {minimum[0]}.{minimum[1]}:\n" + "\n".join(too_new)
