"""Results files: a script's measured numbers with where they come from (date, commit, machine, command).

Every benchmark (benchmarks/*.py) and experiment (experiments/*.py) whose numbers a document quotes writes them
to a committed file under benchmarks/results/ or experiments/results/: a JSON object whose
"provenance" entry says when (UTC), at which commit (as the script started; "-dirty" when the tree had
uncommitted changes to code), on what machine (CPU count and model name) and with which command the numbers were made,
or a CSV whose provenance columns repeat on every row. The documents quote these files and name them beside
each table; tools/quoted_numbers.py (and tests/test_quoted_numbers.py) checks the quotes.

Used as a module from the tools folder (`sys.path.insert(0, ROOT / "tools")`), as tools/notebooks.py is.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name, e.g. 'AMD EPYC 7B13' (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def commit(root: Path = ROOT) -> str:
    """The checked-out commit, 'abc1234', or 'abc1234-dirty' when a tracked file other than a document (*.md) or
    a results file had uncommitted changes: the code that made the numbers was not that commit's."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short=7", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md", ":!*/results/*")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changed.strip() else "")


COMMIT_AT_START = commit()  # the code a script runs is the code at its start, whatever changes while it runs


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran `script` (a path relative to the repository), e.g.
    'python benchmarks/train_speed.py --seeds 1 2 3'; `argv` defaults to sys.argv[1:]."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", script, *map(shlex.quote, map(str, arguments))])


def provenance(script: str, argv: Sequence[str] | None = None) -> dict:
    """{date (UTC, to the minute, now), commit (at import), cpu_count, cpu_model, command} of this run."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": COMMIT_AT_START,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "command": command(script, argv),
    }


def gemm_gflops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-product rate now, GFLOP/s: a `size` x `size` by `size` x `size`
    `tf.linalg.matmul` (after one untimed), `repeats` times. How fast the machine was when a number was made: on
    the 2 cores here, 217 GFLOP/s with nothing else running, 116 with other jobs (benchmarks/README.md)."""
    import tensorflow as tf  # here, not at the top: the other helpers serve scripts that never load TensorFlow

    a = tf.random.normal([size, size])
    tf.linalg.matmul(a, a).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        product = tf.linalg.matmul(a, a)
    product.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def plain(value):
    """`value` with NumPy scalars as Python numbers and NaN as None (JSON has no NaN), at any depth."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def write_json(path: Path, numbers: dict, script: str, argv: Sequence[str] | None = None) -> Path:
    """Writes {"provenance": ..., **numbers} to `path` (made atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plain({"provenance": provenance(script, argv), **numbers}), indent=2, allow_nan=False) + "\n"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
    print(f"wrote {path}", flush=True)
    return path


def write_csv(path: Path, table) -> Path:
    """Writes a pandas DataFrame to `path` as CSV, without its index, atomically (a kill mid-write leaves the
    previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    table.to_csv(partial, index=False)
    partial.replace(path)
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
