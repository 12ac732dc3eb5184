"""The notebooks' generated parts, their execution, thumbnails and README table, all from setup.cfg's `url`.

    python tools/notebooks.py sync              # rewrite badges, install and error cells, README's notebook table
    python tools/notebooks.py execute [NAME]    # run notebooks at their default sizes, in place (`make notebooks`)
    python tools/notebooks.py check             # exit 1 and say what is stale (tests/test_notebooks.py does this)

Every notebook starts with the same generated cells: a markdown cell tagged "colab-badge" (the "Open in
Colab" badge), a code cell tagged "install" (installs tfvae when it is not importable) and one tagged
"one-line-errors" (errors a user can cause print one line). `sync` writes them from the templates below;
the tests fail when a notebook's copy differs, so they cannot drift apart. The address of the repository
is setup.cfg's `url`, nowhere else.

`execute` runs a notebook top to bottom in a fresh kernel in a scratch folder (nothing resumes an earlier
run), records how long it took and a hash of its code cells in the notebook's metadata ("tfvae"), keeps
what a terminal would show of progress bars (text after the last carriage return of each line) and drops
TensorFlow's C++ start-up log lines (Colab does not show them in cells), writes it back, saves the output
of the cell tagged "thumbnail" as docs/images/notebook-NAME.png (small), and syncs README. The test of
committed outputs recomputes the hash: a cell edited after the run fails it.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
IMAGES = ROOT / "docs" / "images"
README = ROOT / "README.md"
COLAB_RUNTIME = ROOT / "tools" / "colab_runtime.txt"  # the stack the notebooks are committed executed on
BRANCH = "main"
MAX_BYTES = 1_500_000  # a committed notebook, outputs included
MAX_SECONDS = 300  # at its default sizes, on a CPU
THUMBNAIL_WIDTH = 220  # pixels

# name -> what it shows (README's table), in the order README lists them
CATALOGUE = {
    "quickstart": "Train a 2-d Bernoulli VAE on MNIST, then its loss curves, reconstructions, manifold, samples "
                  "and latent scatter",
    "latent_explorer": "A slider that moves a Fashion-MNIST code along a latent direction and redraws the decoded "
                       "image",
    "ae_to_vae": "Walkthrough 000: an autoencoder, then a VAE, with a 2-d latent: scatters, decoded grids, "
                 "interpolation strip and GIF",
    "fashion_mnist_vae": "Walkthrough 001: Fashion-MNIST, 20-d, MSE + KL: reconstructions, the offset strip, a "
                         "slider",
    "sonnet_beta_vae": "Walkthrough 002: the Sonnet 2 / TFP beta-VAE Colab's settings: log-log losses, "
                       "reconstructions, 10 x 10 traversal",
    "bernoulli_vae": "Walkthrough 003: 20-d and 2-d Bernoulli VAEs beside the published numbers, training GIFs, "
                     "anomaly scores",
    "vae_from_scratch": "Walkthrough 004: autoencoder vs VAE interpolating a 2 into a 7, Adam vs SGD",
    "disentanglement": "beta-VAE against beta-TCVAE on procedural dSprites (TFDS's real dSprites in Colab by one "
                       "parameter): every disentanglement metric by model and seed, traversals named by factor",
}

README_START = "<!-- notebooks: made by tools/notebooks.py sync; edit CATALOGUE there -->"
README_END = "<!-- notebooks: end -->"

INSTALL = '''\
# Installs tfvae when it is missing or older than this notebook's (a fresh Colab runtime): from a tfvae-*.whl
# uploaded beside the notebook if there is one (`make wheel` builds it), else from the repository. The packages
# Colab already has are kept as they are (TensorFlow, Keras, TFP, TFDS, protobuf, NumPy, pandas: pip is told to
# keep their versions); only what Colab lacks (dm-sonnet, ...) is added. A failure is one line saying why.
import glob
import importlib.metadata
import os
import subprocess
import sys
import tempfile

REPOSITORY = "{url}"  # setup.cfg's url
NEEDED = "{version}"  # the tfvae this notebook was written for (setup.cfg's version)
KEEP = {{"tensorflow": "tensorflow", "tf-keras": "tf_keras", "keras": "keras",  # distribution -> module
        "tensorflow-probability": "tensorflow_probability", "tensorflow-datasets": "tensorflow_datasets",
        "tensorflow-metadata": "tensorflow_metadata", "protobuf": "google.protobuf", "numpy": "numpy",
        "pandas": "pandas"}}
WHY = (("requires a different Python", "this Python is outside tfvae's range (see its Install section)"),
       ("Could not resolve host", "no network: pip could not reach the package index or the repository"),
       ("Failed to establish a new connection", "no network: pip could not reach the package index"),
       ("Temporary failure in name resolution", "no network: pip could not reach the package index"),
       ("Repository not found", f"no such repository: {{REPOSITORY}}"),
       ("could not read Username", f"no such repository (or it is private): {{REPOSITORY}}"),
       ("ResolutionImpossible", "resolver conflict: tfvae's ranges do not admit a package this runtime keeps"),
       ("conflicting dependencies", "resolver conflict: tfvae's ranges do not admit a package this runtime keeps"))


class InstallError(RuntimeError):
    \"\"\"The install cell's one-line failure.\"\"\"


def versions() -> dict:
    \"\"\"Every installed distribution -> its version.\"\"\"
    return {{dist.metadata["Name"].lower().replace("_", "-"): dist.version for dist in importlib.metadata.distributions()}}


def one_line_reason(output: str) -> str:
    reason = next((why for clue, why in WHY if clue in output), "pip failed")
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip().startswith("ERROR")), "")
    return f"{{reason}}" + (f" (pip: {{last[:300]}})" if last else "")


def install(source: str, upgrade: bool) -> None:
    before = versions()
    kept = [f"{{name}}=={{before[name]}}" for name in KEEP if name in before]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as keep:
        keep.write("".join(f"{{pin}}\\n" for pin in kept))
    command = [sys.executable, "-m", "pip", "install", "--quiet", *(["--upgrade"] if upgrade else []), source,
               "--constraint", keep.name]
    done = subprocess.run(command, capture_output=True, text=True)
    os.unlink(keep.name)
    if done.returncode != 0:
        raise InstallError(f"installing tfvae from {{source}} failed: {{one_line_reason(done.stdout + done.stderr)}}")
    after = versions()
    changed = sorted(name for name in before if name in after and after[name] != before[name])
    for name in changed:
        print(f"upgraded {{name}} {{before[name]}} -> {{after[name]}}")
    imported = [name for name in changed if KEEP.get(name, name.replace("-", "_")) in sys.modules]
    if imported:
        raise InstallError(f"restart needed: {{', '.join(imported)}} changed after it was imported (Runtime > "
                           "Restart session, then run all again)")
    added = sorted(set(after) - set(before) - {{"tfvae"}})
    print(f"tfvae {{after.get('tfvae')}} installed" + (f"; added what this runtime lacked: {{', '.join(added)}}"
                                                       if added else ""))


try:
    from IPython import get_ipython  # in a notebook, an InstallError is its one line, no stack

    get_ipython().set_custom_exc((InstallError,), lambda shell, kind, error, tb, tb_offset=None:
                                 shell.showtraceback((kind, error, tb), exception_only=True))
except (ImportError, AttributeError):
    pass
installed = versions().get("tfvae")
wheels = sorted(glob.glob("tfvae-*.whl"))
source = wheels[-1] if wheels else f"git+{{REPOSITORY}}.git"
if installed is None:
    print(f"installing tfvae from {{source}}")
    install(source, upgrade=False)
elif tuple(map(int, installed.split(".")[:3])) < tuple(map(int, NEEDED.split("."))):
    print(f"tfvae {{installed}} is installed; this notebook needs {{NEEDED}}: upgrading from {{source}}")
    install(source, upgrade=True)
else:
    print(f"tfvae {{installed}} is installed already: nothing to install")
'''

ONE_LINE_ERRORS = '''\
# Errors tfvae raises about what you asked of it (a dataset that cannot be found, a setting it refuses) and a
# size too large for this runtime's memory show one line instead of a traceback, as the `tfvae` command does;
# every other error, your own code's included, keeps its traceback. Either way, running all cells stops there.
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer of TensorFlow's C++ log lines
import tensorflow as tf
from IPython import get_ipython

import tfvae

TFVAE = os.path.dirname(tfvae.__file__)


def raised_by_tfvae(traceback) -> bool:
    \"\"\"True when, of the frames in tfvae or in this notebook's own code, the innermost is tfvae's.\"\"\"
    innermost = ""
    while traceback is not None:
        path = traceback.tb_frame.f_code.co_filename
        if path.startswith(TFVAE) or not ("site-packages" in path or "/lib/python" in path):
            innermost = path
        traceback = traceback.tb_next
    return innermost.startswith(TFVAE)


def one_line(shell, kind, error, traceback, tb_offset=None):
    if raised_by_tfvae(traceback) or isinstance(error, tf.errors.ResourceExhaustedError):
        shell.showtraceback((kind, error, traceback), exception_only=True)
    else:
        shell.showtraceback((kind, error, traceback), tb_offset=tb_offset)


get_ipython().set_custom_exc((ValueError, OSError, FloatingPointError, tf.errors.ResourceExhaustedError), one_line)
'''


# --------------------------------------------------------------------------- where things are
def repository_url() -> str:
    """setup.cfg's url, without a trailing slash."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["metadata"]["url"].strip().rstrip("/")


def package_version() -> str:
    """setup.cfg's version."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["metadata"]["version"].strip()


def colab_url(name: str, url: str | None = None) -> str:
    """Colab's address for notebooks/NAME.ipynb on the repository's main branch."""
    url = url or repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url)
    if not match:
        raise ValueError(f"setup.cfg's url must be https://github.com/OWNER/REPO for Colab links; got {url!r}")
    return f"https://colab.research.google.com/github/{match.group(1)}/blob/{BRANCH}/notebooks/{name}.ipynb"


def badge(name: str, url: str | None = None) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name, url)})"


def notebook_path(name: str) -> Path:
    return NOTEBOOKS / f"{name}.ipynb"


def thumbnail_path(name: str) -> Path:
    return IMAGES / f"notebook-{name}.png"


# --------------------------------------------------------------------------- generated cells
def generated_cells(name: str) -> dict:
    """tag -> (cell type, source) of the cells every notebook carries."""
    url = repository_url()
    return {
        "colab-badge": ("markdown", badge(name, url)),
        "install": ("code", INSTALL.format(url=url, version=package_version()).rstrip("\n")),
        "one-line-errors": ("code", ONE_LINE_ERRORS.rstrip("\n")),
    }


def tagged(notebook, tag: str) -> list:
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


def sync_notebook(notebook, name: str) -> list[str]:
    """Rewrites the generated cells of `notebook` in memory; returns what changed."""
    changed = []
    for tag, (kind, source) in generated_cells(name).items():
        cells = tagged(notebook, tag)
        if len(cells) != 1:
            raise ValueError(f"{name}.ipynb needs exactly one cell tagged {tag!r}; found {len(cells)}")
        if cells[0].cell_type != kind:
            raise ValueError(f"{name}.ipynb: the cell tagged {tag!r} must be a {kind} cell")
        if cells[0].source != source:
            cells[0].source = source
            changed.append(f"{name}.ipynb: cell {tag!r}")
    return changed


def recorded_seconds(name: str) -> int | None:
    """How long the committed run of notebooks/NAME.ipynb took (its metadata), if it was run by `execute`."""
    return json.loads(notebook_path(name).read_text()).get("metadata", {}).get("tfvae", {}).get("seconds")


def readme_table() -> str:
    """README's notebook table: a thumbnail, the Colab badge, what it shows and its run time here, per notebook."""
    rows = [README_START, "", "| | notebook | what it shows | run time on a 2-core CPU |", "| --- | --- | --- | --- |"]
    for name, what in CATALOGUE.items():
        thumbnail = f"<img src=\"docs/images/notebook-{name}.png\" width=\"{THUMBNAIL_WIDTH}\">"
        seconds = recorded_seconds(name)
        time_here = f"{seconds // 60} min {seconds % 60:02d} s" if seconds is not None else ""
        rows.append(f"| {thumbnail} | [`{name}.ipynb`](notebooks/{name}.ipynb)<br>{badge(name)} | {what} | "
                    f"{time_here} |")
    return "\n".join([*rows, "", README_END])


def sync_readme(text: str) -> str:
    """README with its notebook table (between the markers) and its Colab install line made from setup.cfg."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README.md needs the markers {README_START!r} and {README_END!r}")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    text = head + readme_table() + tail
    return re.sub(r"git\+https://github\.com/[^\s`]+?\.git", f"git+{repository_url()}.git", text)


# --------------------------------------------------------------------------- checks (used by the tests)
def sources_hash(notebook) -> str:
    """SHA-256 of the code cells' sources, in order: what the committed outputs were made from."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def output_problems(notebook, name: str) -> list[str]:
    """Why the committed outputs of `notebook` may not come from its committed code (empty: they do)."""
    problems = []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"{name}.ipynb: execution counts {counts}, not 1..{len(code)} in order (run it again with "
                        f"`make notebooks NOTEBOOK={name}`)")
    for index, cell in enumerate(code, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{name}.ipynb: code cell {index} has an error output ({output.get('ename')})")
    recorded = notebook.metadata.get("tfvae", {})
    if recorded.get("sources_sha256") != sources_hash(notebook):
        problems.append(f"{name}.ipynb: a code cell changed since the notebook was run (run "
                        f"`make notebooks NOTEBOOK={name}`)")
    if recorded.get("seconds") is not None and recorded["seconds"] > MAX_SECONDS:
        problems.append(f"{name}.ipynb: took {recorded.get('seconds')} s at its default sizes, over {MAX_SECONDS}")
    stack = colab_stack()
    if not str(recorded.get("executed_with", "")).startswith(stack):
        problems.append(f"{name}.ipynb: executed with {recorded.get('executed_with')!r}, not on Colab's stack "
                        f"({stack}; `make test-colab`, then `make notebooks NOTEBOOK={name}`)")
    return problems


def colab_stack() -> str:
    """How `execute` describes Colab's runtime of tools/colab_runtime.txt: 'TensorFlow 2.20.0, Python 3.13'."""
    pins = dict(line.split("==") for line in COLAB_RUNTIME.read_text().splitlines() if "==" in line)
    python = re.search(r"Python (3\.\d+)", COLAB_RUNTIME.read_text()).group(1)
    return f"TensorFlow {pins['tensorflow']}, Python {python}"


def check() -> list[str]:
    """Everything stale: generated cells, README, outputs, sizes, thumbnails."""
    import nbformat

    problems = []
    for name in CATALOGUE:
        path = notebook_path(name)
        notebook = nbformat.read(path, as_version=4)
        problems += [f"{change} differs from tools/notebooks.py (run `python tools/notebooks.py sync`)"
                     for change in sync_notebook(notebook, name)]
        problems += output_problems(notebook, name)
        if path.stat().st_size > MAX_BYTES:
            problems.append(f"{name}.ipynb is {path.stat().st_size:,} bytes, over {MAX_BYTES:,}")
        if not thumbnail_path(name).is_file():
            problems.append(f"{thumbnail_path(name).relative_to(ROOT)} is missing")
    extra = sorted({p.stem for p in NOTEBOOKS.glob("*.ipynb")} - set(CATALOGUE))
    problems += [f"notebooks/{name}.ipynb is not in tools/notebooks.py's CATALOGUE" for name in extra]
    text = README.read_text()
    if sync_readme(text) != text:
        problems.append("README.md's notebook table or Colab install line is stale (run `python tools/notebooks.py "
                        "sync`)")
    return problems


# --------------------------------------------------------------------------- commands
def sync() -> None:
    import nbformat

    for name in CATALOGUE:
        notebook = nbformat.read(notebook_path(name), as_version=4)
        changed = sync_notebook(notebook, name)
        if changed:
            nbformat.write(notebook, notebook_path(name))
            print("\n".join(f"synced {change}" for change in changed))
    README.write_text(sync_readme(README.read_text()))


def terminal_text(text: str) -> str:
    """What a terminal shows of `text`: each line's text after its last carriage return (progress bars)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


# TensorFlow's C++ log lines at start-up (absl's format, "I0000 00:00:17...  123 file.cc:45] ..."), which Colab
# leaves in the runtime's log and Jupyter shows in a cell: not kept in the committed outputs.
CHATTER = re.compile(
    r"[IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w.]+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: [IWEF] [\w/.]+:\d+\] "  # TF 2.20's form of the same lines
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
)


def without_tensorflow_chatter(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not CHATTER.match(line))


def save_thumbnail(notebook, name: str) -> Path | None:
    """The first PNG output of the cell tagged "thumbnail" (at most 3 times as wide as high: a strip is cut to its
    left end), THUMBNAIL_WIDTH pixels wide, as docs/images/notebook-NAME.png."""
    import base64

    from PIL import Image

    for cell in tagged(notebook, "thumbnail"):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                picture = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
                if picture.width > 3 * picture.height:  # a wide strip: its left end, 3:1
                    picture = picture.crop((0, 0, 3 * picture.height, picture.height))
                height = round(picture.height * THUMBNAIL_WIDTH / picture.width)
                picture = picture.resize((THUMBNAIL_WIDTH, height), Image.LANCZOS)
                IMAGES.mkdir(parents=True, exist_ok=True)
                picture.save(thumbnail_path(name), optimize=True)
                return thumbnail_path(name)
    return None


def execute(name: str, timeout: int = 900) -> float:
    """Runs notebooks/NAME.ipynb at its default sizes in a scratch folder and writes it back with its outputs."""
    import nbformat
    import tensorflow as tf
    from nbclient import NotebookClient

    path = notebook_path(name)
    notebook = nbformat.read(path, as_version=4)
    sync_notebook(notebook, name)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix=f"tfvae-notebook-{name}-") as folder:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": folder}})
        started = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - started
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.get("output_type") == "stream":
                output.text = terminal_text(output.text)
                if output.name == "stderr":
                    output.text = without_tensorflow_chatter(output.text)
        cell.outputs = [o for o in cell.outputs if o.get("output_type") != "stream" or o.text.strip()]
    notebook.metadata["tfvae"] = {
        "sources_sha256": sources_hash(notebook),
        "seconds": round(seconds),
        "executed_with": f"TensorFlow {tf.__version__}, Python {sys.version.split()[0]}, CPU",
    }
    nbformat.write(notebook, path)
    thumbnail = save_thumbnail(notebook, name)
    made = f", {thumbnail.name}" if thumbnail else ""
    print(f"{name}.ipynb: {seconds:.0f} s, {path.stat().st_size:,} bytes{made}")
    return seconds


def main(argv: list[str]) -> int:
    command, names = (argv[0] if argv else "check"), argv[1:]
    if command == "sync":
        sync()
    elif command == "execute":
        for name in names or CATALOGUE:
            execute(name)
        sync()
    elif command == "check":
        problems = check()
        print("\n".join(problems) or "notebooks, thumbnails and README are up to date")
        return 1 if problems else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
