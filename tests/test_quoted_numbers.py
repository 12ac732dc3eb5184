"""The documents' tables quote their results files (tools/quoted_numbers.py): a changed number fails here."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import quoted_numbers  # noqa: E402

DOCUMENT = """\
Measured by `python benchmarks/x.py`; [`benchmarks/results/x.json`](results/x.json):

| run | s/epoch | test -ELBO | log p(x) |
| --- | --- | --- | --- |
| a | 2.13 | 87.95 | -86.8 |
| b | 4.2 | 88.07 (`preset-2.5`) | |

A table that cites nothing is not checked:

| c | 9.99 |
| --- | --- |
| d | 1.11 |
"""


@pytest.fixture
def root(tmp_path):
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    numbers = {"provenance": {"date": "2026-11-30 00:00 UTC"}, "a": {"seconds": 2.1289, "nll": 86.81, "final": 87.951},
               "b": [4.23, 88.0749]}
    (tmp_path / "benchmarks/results/x.json").write_text(json.dumps(numbers))
    return tmp_path


def test_numbers_equal_to_the_cited_file_at_the_shown_digits_pass(root):
    assert quoted_numbers.checked_tables(DOCUMENT) == 1
    assert quoted_numbers.stale_numbers(DOCUMENT, root) == []


@pytest.mark.parametrize("old, new", [("2.13", "2.14"), ("87.95", "87.84"), ("-86.8", "-86.9"), ("4.2", "4.3")])
def test_a_changed_number_is_reported_with_its_line(root, old, new):
    problems = quoted_numbers.stale_numbers(DOCUMENT.replace(old, new), root, "doc.md")
    line = 5 if old in ("2.13", "87.95", "-86.8") else 6
    assert problems == [f"doc.md:{line}: {new} is in none of benchmarks/results/x.json"]


def test_a_changed_results_file_is_reported(root):
    path = root / "benchmarks/results/x.json"
    path.write_text(path.read_text().replace("2.1289", "2.1389"))
    assert quoted_numbers.stale_numbers(DOCUMENT, root, "doc.md") == ["doc.md:5: 2.13 is in none of "
                                                                     "benchmarks/results/x.json"]


def test_a_cited_file_that_is_missing_is_reported(root):
    (root / "benchmarks/results/x.json").unlink()
    assert quoted_numbers.stale_numbers(DOCUMENT, root, "doc.md") == [
        "doc.md:5: the table cites benchmarks/results/x.json, which does not exist"]


def test_csv_cells_are_numbers_too(tmp_path):
    (tmp_path / "experiments/results").mkdir(parents=True)
    (tmp_path / "experiments/results/s.csv").write_text("beta,nll,date\n1.0,86.83,2026-11-30\n4.0,95.5,2026-11-30\n")
    text = "From `experiments/results/s.csv`:\n\n| beta | nll |\n| --- | --- |\n| 1.0 | 86.8 |\n| 4.0 | 95.50 |\n"
    assert quoted_numbers.stale_numbers(text, tmp_path) == []
    assert len(quoted_numbers.stale_numbers(text.replace("95.50", "95.51"), tmp_path)) == 1


def test_a_generated_table_between_marker_lines_is_checked(tmp_path):
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    (tmp_path / "benchmarks/results/t.csv").write_text("preset,nll\nvae,90.004\n")
    text = ("Written from `benchmarks/results/t.csv`:\n\n<!-- t:begin -->\n| preset | nll |\n| --- | --- |\n"
            "| vae | 90.00 |\n<!-- t:end -->\n")
    assert quoted_numbers.checked_tables(text) == 1 and quoted_numbers.stale_numbers(text, tmp_path) == []
    assert len(quoted_numbers.stale_numbers(text.replace("90.00", "90.03"), tmp_path)) == 1
    with_difference = text.replace("| preset | nll |", "| preset | nll | minus the preset's |").replace(
        "| --- | --- |", "| --- | --- | --- |").replace("| vae | 90.00 |", "| vae | 90.00 | -0.41 |")
    assert quoted_numbers.stale_numbers(with_difference, tmp_path) == []  # a "minus ..." column is not looked up


@pytest.mark.parametrize("document", quoted_numbers.DOCUMENTS)
def test_the_documents_quote_their_results_files(document):
    text = (ROOT / document).read_text()
    assert quoted_numbers.checked_tables(text) >= 1, f"{document} has no table that cites a results file"
    assert quoted_numbers.stale_numbers(text, ROOT, document) == []


def test_changing_a_number_in_the_readme_fails():
    text = (ROOT / "README.md").read_text()
    table = next(t for t in quoted_numbers.tables(text) if t.cites)
    index, token = next((i, token) for i, cell in table.checked_cells()
                        for token in quoted_numbers.DECIMAL.findall(cell))
    lines = text.splitlines()
    line = table.first_line - 1 + index
    lines[line] = lines[line].replace(token, f"{float(token) + 0.37:.{len(token.split('.')[1])}f}", 1)
    problems = quoted_numbers.stale_numbers("\n".join(lines), ROOT, "README.md")
    assert len(problems) == 1 and problems[0].startswith(f"README.md:{line + 1}: ")
