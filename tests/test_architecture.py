"""The architecture (docs/architecture.md): data flows one way through tfvae's modules."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfvae"

# The flow, first to last; a module may import only modules of earlier layers (docs/architecture.md).
LAYERS = [
    ["checks", "compat", "pixels", "families"],
    ["config"],
    ["devices", "precision", "optimizers", "render", "estimators"],
    ["sources"],
    ["data"],
    ["nets", "priors", "factors"],
    ["hierarchy", "flows", "conditioning", "disentanglement"],
    ["model"],
    ["protocol"],
    ["kl"],
    ["tc"],
    ["objectives"],
    ["disentangling"],
    ["rundir"],
    ["features", "samplers"],
    ["sample_quality"],
    ["inception"],
    ["evaluation"],
    ["step"],
    ["distribute"],
    ["runners"],
    ["train"],
    ["sweep", "savedmodel", "tensorboard", "factor_evaluation", "run_samplers"],
    ["plots"],
    ["cli"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    """tfvae/plots/grids.py -> "plots" (a package is one module of the flow)."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_tfvae_modules(path: Path) -> set[str]:
    """Every tfvae module that `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tfvae":
            parts = node.module.split(".")
            names.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("tfvae."))
    return names


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_place_in_the_flow():
    assert {module_name(path) for path in SOURCES} == set(RANK)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_one_after_it(path):
    own = module_name(path)
    later = sorted(name for name in imported_tfvae_modules(path) - {own} if RANK[name] >= RANK[own])
    assert not later, f"{path.relative_to(PACKAGE)} ({own}) imports {later}, which come at or after it in the flow"


def test_the_check_sees_a_backward_import(tmp_path):
    # The test above can fail: a module that imports one after it is found.
    source = tmp_path / "grids.py"
    source.write_text("def f():\n    from tfvae import train\n    import tfvae.runners\n")
    assert imported_tfvae_modules(source) == {"train", "runners"}
    assert RANK["train"] > RANK["objectives"]


def test_plots_load_no_training_code():
    import subprocess
    import sys

    code = "import sys, tfvae.plots; print(sorted(m for m in sys.modules if m in ('tfvae.train', 'tfvae.runners', " \
           "'tfvae.step', 'tfvae.distribute', 'tfvae.optimizers')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_public_verbs_are_functions_and_the_nouns_modules():
    import importlib
    import types

    import tfvae

    for path in SOURCES:  # every module loaded first: a submodule must not shadow a function of the same name
        importlib.import_module("tfvae." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    for verb in ("fit", "evaluate", "export", "open_run"):
        assert callable(getattr(tfvae, verb)) and not isinstance(getattr(tfvae, verb), types.ModuleType), verb
    for noun in ("data", "plots", "objectives", "evaluation", "distribute", "priors", "flows"):
        assert isinstance(getattr(tfvae, noun), types.ModuleType), noun


def architecture_table() -> list[tuple[list[str], set[str]]]:
    """docs/architecture.md's module table: (the row's modules, the tfvae modules its "called by" cell names)."""
    import re

    rows = []
    for line in (PACKAGE.parent / "docs" / "architecture.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and re.fullmatch(r"\d+[a-z]?", cells[0]):
            modules = re.findall(r"`(\w+)`", cells[1])
            rows.append((modules, {name for name in re.findall(r"`(\w+)`", cells[3]) if name in RANK}))
    return rows


def test_the_documented_table_lists_every_module_once_and_who_calls_it():
    """The "called by" column is the import graph: each row names exactly the modules that import its modules
    (and `model` for a family module, whose builder `model.build` calls through the families table)."""
    from tfvae import families

    importers: dict[str, set[str]] = {}
    for path in SOURCES:
        for name in imported_tfvae_modules(path) - {module_name(path)}:
            importers.setdefault(name, set()).add(module_name(path))
    builders = {family.builder.split(":")[0] for family in families.FAMILIES}
    rows = architecture_table()
    assert sorted(name for modules, _ in rows for name in modules) == sorted(RANK)
    for modules, called_by in rows:
        expected = set().union(*(importers.get(name, set()) for name in modules)) - set(modules)
        expected |= {"model"} if builders & set(modules) else set()
        assert called_by == expected, (modules, sorted(called_by - expected), sorted(expected - called_by))
