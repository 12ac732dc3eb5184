"""Runs a notebook's install cell in a simulated Colab runtime and checks what it changed.

    .venv-colab/bin/python tools/colab_install.py dist/tfvae-0.2.0-py3-none-any.whl   # `make test-colab` does this

Run it with the Python of a virtualenv that holds Colab's packages (tools/colab_runtime.txt) and no tfvae. It
puts the wheel in an empty folder beside nothing else (as a user uploads it beside a notebook), runs the cell
tagged "install" there with that Python, and compares `pip freeze` before and after: tfvae and what the runtime
lacked may be added; the packages the cell keeps (TensorFlow, Keras, TFP, TFDS, tensorflow-metadata, protobuf,
NumPy, pandas) must be unchanged; nothing may be removed; any other upgrade is listed. Exit status 1 on a breach.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebooks  # noqa: E402  (the install cell's source)


def kept_packages() -> set[str]:
    """The distributions the install cell pins to their installed versions (its KEEP), read from its source."""
    source = notebooks.generated_cells("quickstart")["install"][1]
    tree = ast.parse(source)
    keep = next(node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "KEEP")
    return set(ast.literal_eval(keep))


def freeze(python: str) -> dict[str, str]:
    """name (lower case, '-' for '_') -> version of every distribution the Python at `python` has."""
    lines = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    found = {}
    for line in lines:
        if "==" in line:
            name, version = line.split("==", 1)
        elif " @ " in line:
            name, version = line.split(" @ ", 1)
        else:
            continue
        found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def breaches(before: dict[str, str], after: dict[str, str], kept: set[str]) -> tuple[list[str], list[str]]:
    """(what the cell must not have done, what it did that is allowed) between two freezes."""
    bad, fine = [], []
    for name in sorted(before):
        if name not in after:
            bad.append(f"removed {name} {before[name]}")
        elif after[name] != before[name]:
            (bad if name in kept else fine).append(f"changed {name} {before[name]} -> {after[name]}")
    added = sorted(set(after) - set(before))
    if "tfvae" not in added and after.get("tfvae") == before.get("tfvae"):
        bad.append("tfvae was not installed")
    fine += [f"added {name} {after[name]}" for name in added]
    return bad, fine


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].endswith(".whl"):
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    python = sys.executable
    before = freeze(python)
    if "tfvae" in before:
        print(f"this runtime has tfvae {before['tfvae']} already: use one without it")
        return 2
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(argv[0], folder)
        cell = Path(folder, "install_cell.py")
        cell.write_text(notebooks.generated_cells("quickstart")["install"][1])
        done = subprocess.run([python, cell.name], cwd=folder, capture_output=True, text=True)
        print(done.stdout + done.stderr, end="")
        if done.returncode != 0:
            print(f"the install cell failed (exit status {done.returncode})")
            return 1
    bad, fine = breaches(before, freeze(python), kept_packages())
    for line in fine:
        print(f"  {line}")
    for line in bad:
        print(f"  NOT ALLOWED: {line}")
    print(f"install cell on this runtime: {len(fine)} allowed changes, {len(bad)} not allowed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
