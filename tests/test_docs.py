"""Documentation that cannot rot: the site builds strictly, its generated pages are the code's, every `tfvae` name
and command it shows exists, and every Python block in README.md and docs/ runs.

The Python blocks of a page run in order in one namespace, as a reader pasting them would, in an empty folder
with TFDS's data directory set to conftest's stand-in MNIST (200 training and 40 test images of noise), so a
block that trains does so at tiny size. A page may name the run `make demo` writes, runs/mnist-bernoulli-20d:
the folder then holds conftest's tiny trained run under that name. Pages whose blocks train run with -m slow
(SLOW_PAGES); the default run still resolves every name they use and parses every command they show.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_reference  # noqa: E402

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# tfvae.a.b in code and prose: a module, function, class or attribute path that must resolve.
DOTTED = re.compile(r"(?<![\w/.-])tfvae(?:\.[A-Za-z_]\w*)+")
# Pages whose blocks train a model (10 to 30 s each even at tiny size), or read the demo's run (which conftest
# trains once per worker, 16 s): run with -m slow, so that `make test` stays under 5 minutes.
SLOW_PAGES = {"README.md", "docs/evaluation/samplers.md", "docs/quickstart.md", "docs/own_model.md", "docs/families.md", "docs/export.md",
              "docs/figures.md", "docs/run_directory.md", "docs/evaluation/loglik.md",
              "docs/evaluation/sample_quality.md"}
# Runs the pages name as already trained (by `make demo`), stood in for by conftest's tiny run.
DEMO_RUNS = ("runs/mnist-bernoulli-20d",)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for each fenced block of `language` in `path`."""
    text = path.read_text()
    return [(text.count("\n", 0, match.start(2)) + 1, match.group(2)) for match in FENCE.finditer(text)
            if match.group(1) == language]


PYTHON_PAGES = [relative(path) for path in PAGES if blocks(path, "python")]


def resolve(dotted: str):
    """The object a dotted `tfvae...` name names, importing modules on the way; AttributeError if none."""
    parts = dotted.split(".")
    value = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(".".join(parts[: index + 1]))
    return value


# --------------------------------------------------------------------------- the site
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: every page, link, anchor, API name (mkdocstrings) and notebook (rendered from its
    committed outputs, not run). A warning fails it; tools/mkdocs_hooks.py names the few tolerated."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                            cwd=tmp_path, env=env, capture_output=True, text=True)  # its cache in tmp_path
    assert result.returncode == 0, result.stderr[-5000:]
    assert "tfvae.train.fit" in (site / "api" / "training" / "index.html").read_text()
    assert "data:image/png;base64" in (site / "tutorials" / "quickstart" / "index.html").read_text()


def test_the_generated_reference_pages_are_what_the_code_gives():
    """docs/reference/cli.md and config.md are tools/docs_reference.py's output for the code as it is (run the
    script after changing the parser or a config field), and every config field has a meaning there."""
    assert docs_reference.stale_pages() == [], "run python tools/docs_reference.py"
    assert docs_reference.fields_without_meaning() == []


def test_the_docs_and_the_readme_are_in_the_sites_navigation_or_linked():
    """Every page under docs/ is in mkdocs.yml's nav (the strict build only warns of omitted pages as info)."""
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [relative(path) for path in PAGES if path.parent != ROOT
               and str(path.relative_to(ROOT / "docs")) not in nav]
    assert missing == []


# --------------------------------------------------------------------------- names and commands
@pytest.mark.parametrize("page", [relative(path) for path in PAGES])
def test_every_tfvae_name_on_a_page_exists(page):
    """`tfvae.a.b` anywhere on the page (code blocks, inline code, prose) resolves to a module, function, class or
    attribute: a renamed function fails here, in the default run, even on a page whose blocks run with -m slow."""
    text = (ROOT / page).read_text()
    missing = []
    for name in sorted(set(DOTTED.findall(text))):
        try:
            resolve(name)
        except (AttributeError, ModuleNotFoundError):
            missing.append(name)
    assert missing == [], f"{page} names what does not exist"


def command_lines(path: Path) -> list[tuple[int, list[str]]]:
    """The `tfvae ...` commands of the page's bash blocks, as argument lists (comments removed)."""
    found = []
    for language in ("bash",):
        for line, code in blocks(path, language):
            for offset, command in enumerate(code.replace("\\\n", " ").splitlines()):
                words = shlex.split(command.lstrip("!"), comments=True)
                while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value tfvae ...
                    words = words[1:]
                if words[:1] == ["tfvae"] and not command.strip().startswith("tfvae: "):
                    found.append((line + offset, words[1:]))
    return found


@pytest.mark.parametrize("page", [relative(path) for path in PAGES if command_lines(path)])
def test_every_tfvae_command_on_a_page_parses(page):
    """Each `tfvae` command shown parses with the command's own parser, and its `--set` fields and `--preset`
    names exist, so a renamed flag, field or preset fails here."""
    from tfvae import cli, config

    for line, arguments in command_lines(ROOT / page):
        try:
            args = cli.build_parser().parse_args(arguments)
        except SystemExit:
            pytest.fail(f"{page}:{line}: tfvae {' '.join(arguments)} does not parse")
        if args.command == "train":
            cli.experiment_from_args(args)  # unknown fields, presets and bad values raise ConfigError


# --------------------------------------------------------------------------- the Python blocks
def run_blocks(page: str, folder: Path) -> None:
    namespace = {"__name__": "__docs__"}
    for line, code in blocks(ROOT / page, "python"):
        exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102  (the docs' own code)


@pytest.fixture
def reader_folder(request, tmp_path, monkeypatch, mnist_data_dir):
    """An empty folder as the current directory, TFDS's data directory the stand-in MNIST, and the demo's run
    there if the page names it (conftest's shared tiny run: trained once per worker, only when a page needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFDS_DATA_DIR", mnist_data_dir)
    code = "".join(code for _, code in blocks(ROOT / request.node.callspec.params["page"], "python"))
    for run in DEMO_RUNS:
        if run in code:
            shutil.copytree(request.getfixturevalue("shared_tiny_run"), tmp_path / run)
    return tmp_path


def page_params():
    return [pytest.param(page, marks=pytest.mark.slow) if page in SLOW_PAGES else page for page in PYTHON_PAGES]


@pytest.mark.parametrize("page", page_params())
def test_the_python_blocks_of_a_page_run(page, reader_folder):
    run_blocks(page, reader_folder)
