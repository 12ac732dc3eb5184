"""The documents' tables quote their results files field by field (tools/quoted_numbers.py): a changed number, a
number of another row or column, and a table with numbers and no source all fail here."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import quoted_numbers  # noqa: E402

DOCUMENT = """\
Measured by `python benchmarks/x.py`; [`benchmarks/results/x.json`](results/x.json):

<!-- fields benchmarks/results/x.json
- s/epoch = runs.{run}.seconds
- test -ELBO = runs.{run}.mean, runs.{run}.sd, runs.{run}.seeds
- log p(x) = runs.{run}.nll
-->
| run | s/epoch | test -ELBO | log p(x) |
| --- | --- | --- | --- |
| a | 2.13 | 87.95 +- 0.04 (87.90, 88.00) | -86.8 |
| b | 4.2 | 88.07 (`preset-2.5`) | |

A table without decimal numbers needs no source:

| c | 9 |
| --- | --- |
| d | 1 |
"""
NUMBERS = {"provenance": {"date": "2026-11-30 00:00 UTC"},
           "runs": {"a": {"seconds": 2.1289, "nll": 86.81, "mean": 87.951, "sd": 0.04, "seeds": [87.9, 88.0]},
                    "b": {"seconds": 4.23, "mean": 88.0749, "sd": 0.0, "seeds": [88.0749]}}}


@pytest.fixture
def root(tmp_path):
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    (tmp_path / "benchmarks/results/x.json").write_text(json.dumps(NUMBERS))
    return tmp_path


def test_numbers_equal_to_their_fields_at_the_shown_digits_pass(root):
    assert quoted_numbers.checked_tables(DOCUMENT) == 1
    assert quoted_numbers.stale_numbers(DOCUMENT, root) == []


@pytest.mark.parametrize("old, new", [("2.13", "2.14"), ("87.95", "87.84"), ("-86.8", "-86.9"), ("4.2", "4.3")])
def test_a_changed_number_is_reported_with_its_line(root, old, new):
    problems = quoted_numbers.stale_numbers(DOCUMENT.replace(old, new), root, "doc.md")
    line = 10 if old in ("2.13", "87.95", "-86.8") else 11
    assert len(problems) == 1 and problems[0].startswith(f"doc.md:{line}: {new} in column ")


def test_a_mean_replaced_by_a_seeds_value_or_another_rows_number_fails(root):
    seed_for_mean = DOCUMENT.replace("87.95 +- 0.04", "87.90 +- 0.04")  # 87.90 is a seed's: not in the mean's place
    assert len(quoted_numbers.stale_numbers(seed_for_mean, root)) == 1
    other_row = DOCUMENT.replace("| 4.2 |", "| 2.13 |")  # row a's seconds in row b
    assert len(quoted_numbers.stale_numbers(other_row, root)) == 1
    other_column = DOCUMENT.replace("| -86.8 |", "| -87.95 |")  # row a's -ELBO as its log p(x)
    assert len(quoted_numbers.stale_numbers(other_column, root)) == 1
    reordered = DOCUMENT.replace("(87.90, 88.00)", "(88.00, 87.90)")
    assert len(quoted_numbers.stale_numbers(reordered, root)) == 1


def test_a_changed_results_file_is_reported(root):
    path = root / "benchmarks/results/x.json"
    path.write_text(path.read_text().replace("2.1289", "2.1389"))
    problems = quoted_numbers.stale_numbers(DOCUMENT, root, "doc.md")
    assert len(problems) == 1 and problems[0].startswith("doc.md:10: 2.13 in column 's/epoch' is not, in order, runs.{run}")


def test_a_cited_file_that_is_missing_is_reported(root):
    (root / "benchmarks/results/x.json").unlink()
    assert quoted_numbers.stale_numbers(DOCUMENT, root, "doc.md") == [
        "doc.md:10: the table cites benchmarks/results/x.json, which does not exist"]


def test_a_table_with_numbers_and_no_fields_fails_unless_it_says_why(root):
    bare = "Numbers from `benchmarks/results/x.json`:\n\n| run | s |\n| --- | --- |\n| a | 2.13 |\n"
    problems = quoted_numbers.stale_numbers(bare, root, "doc.md")
    assert len(problems) == 1 and problems[0].startswith("doc.md:3: a table with numbers and no <!-- fields")
    no_source = bare.replace("Numbers from `benchmarks/results/x.json`:", "Numbers:")
    assert len(quoted_numbers.stale_numbers(no_source, root)) == 1
    explained = no_source.replace("| run | s |", "<!-- unsourced: a paper's figures -->\n| run | s |")
    assert quoted_numbers.stale_numbers(explained, root) == []
    unmapped_column = DOCUMENT.replace("- log p(x) = runs.{run}.nll\n", "")
    problems = quoted_numbers.stale_numbers(unmapped_column, root, "doc.md")
    assert problems == ["doc.md:9: column 'log p(x)' of row 'a' shows numbers and the fields comment maps no field "
                        "for it"]


def test_csv_rows_are_chosen_by_conditions_on_the_table_row(tmp_path):
    (tmp_path / "experiments/results").mkdir(parents=True)
    (tmp_path / "experiments/results/s.csv").write_text(
        "preset,minutes,nll,settings\nvae,15,86.83,\nvae,60,85.5,\nvae,15,90.1,lr=3\niwae,15,86.2,\n")
    text = ("<!-- fields experiments/results/s.csv where preset={preset:^(\\w+)}, settings={preset:\\((.*)\\)}\n"
            "- at 15 = nll where minutes=15\n- at 60 = nll where minutes=60\n-->\n"
            "| preset | at 15 | at 60 |\n| --- | --- | --- |\n| `vae` | 86.8 | 85.50 |\n| iwae | 86.2 | |\n"
            "| vae (lr=3) | 90.1 | |\n")
    assert quoted_numbers.stale_numbers(text, tmp_path) == []
    for old, new in (("| 86.8 |", "| 85.5 |"), ("| 86.2 |", "| 86.8 |"), ("| 90.1 |", "| 86.8 |")):
        assert len(quoted_numbers.stale_numbers(text.replace(old, new), tmp_path)) == 1, old


def test_a_generated_table_between_marker_lines_is_checked_and_minus_columns_are_not(tmp_path):
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    (tmp_path / "benchmarks/results/t.csv").write_text("preset,nll\nvae,90.004\n")
    text = ("Written from `benchmarks/results/t.csv`:\n\n<!-- fields benchmarks/results/t.csv where preset={preset}\n"
            "- nll = nll\n-->\n<!-- t:begin -->\n| preset | nll |\n| --- | --- |\n| vae | 90.00 |\n<!-- t:end -->\n")
    assert quoted_numbers.checked_tables(text) == 1 and quoted_numbers.stale_numbers(text, tmp_path) == []
    assert len(quoted_numbers.stale_numbers(text.replace("90.00", "90.03"), tmp_path)) == 1
    with_difference = text.replace("| preset | nll |", "| preset | nll | minus the preset's |").replace(
        "| --- | --- |", "| --- | --- | --- |").replace("| vae | 90.00 |", "| vae | 90.00 | -0.41 |")
    assert quoted_numbers.stale_numbers(with_difference, tmp_path) == []  # a "minus ..." column is not looked up


@pytest.mark.parametrize("document", quoted_numbers.DOCUMENTS)
def test_the_documents_quote_their_results_files(document):
    """Every document a user reads (the READMEs, docs/**/*.md): no table number that is not its field."""
    text = (ROOT / document).read_text()
    if document in quoted_numbers.WITH_RESULTS:
        assert quoted_numbers.checked_tables(text) >= 1, f"{document} has no table that maps its cells to a results file"
    assert quoted_numbers.stale_numbers(text, ROOT, document) == []


def swapped(text: str, table_header: str, old: str, new: str) -> str:
    """`text` with the first `old` in the table whose header line starts with `table_header` replaced by `new`."""
    start = text.index("\n" + table_header) + 1
    at = text.index(old, start)
    assert text.index("\n\n", start) > at, f"{old} is not in the table {table_header!r}"
    return text[:at] + new + text[at + len(old):]


@pytest.mark.parametrize("document, table_header, mean, seed", [
    ("docs/benchmarks/speed.md", "| | tfvae (`make demo`)", "88.00", "87.97"),  # the demo's 3-seed mean, by seed 2's
    ("docs/benchmarks/loglik.md", "| family | preset | -log p(x) at 15 min", "86.94", "86.78"),  # VampPrior, seed 1's
    ("docs/benchmarks/loglik.md", "| family | preset | -log p(x) at 15 min", "84.87", "84.72"),  # the lr 1e-3 run's
])
def test_a_cherry_picked_seed_in_the_docs_fails_the_check(document, table_header, mean, seed):
    text = (ROOT / document).read_text()
    assert quoted_numbers.stale_numbers(text, ROOT, document) == []
    problems = quoted_numbers.stale_numbers(swapped(text, table_header, mean, seed), ROOT, document)
    assert len(problems) >= 1 and all(" in column " in problem for problem in problems), problems


def test_changing_a_number_in_the_docs_fails():
    text = (ROOT / "docs/benchmarks/speed.md").read_text()
    table = next(t for t in quoted_numbers.tables(text) if t.fields)
    index, token = next((i, token) for i, _, cell in table.checked_cells()
                        for token in quoted_numbers.DECIMAL.findall(cell))
    lines = text.splitlines()
    line = table.first_line - 1 + index
    lines[line] = lines[line].replace(token, f"{float(token) + 0.37:.{len(token.split('.')[1])}f}", 1)
    problems = quoted_numbers.stale_numbers("\n".join(lines), ROOT, "speed.md")
    assert len(problems) == 1 and problems[0].startswith(f"speed.md:{line + 1}: ")
