"""Checks that the numbers in the documents' tables are the numbers in the results files they cite.

    python tools/quoted_numbers.py                      # README.md, benchmarks/README.md, experiments/README.md
    python tools/quoted_numbers.py docs/some.md         # other documents

A Markdown table cites a results file when the paragraph right above it or right below it names one
(`benchmarks/results/NAME.json`, `experiments/results/NAME.csv`, ...; see tools/provenance.py), marker lines
such as `<!-- loglik:begin -->` around a generated table aside. Every decimal
number in the table's body (a number with a decimal point, outside `code`; whole numbers such as epochs or
image counts are not checked) must then be a value of one of the cited files, rounded to the digits the table
shows, except in a column whose header starts with "published" (a paper's figures) or "minus" (the difference
of two numbers the table shows, as a script computed it); the sign is ignored, so a
file's -log p(x) of 86.8 backs a table's log p(x) of -86.8. A number in no cited file is reported with its
line: a table cannot keep a number its results file no longer holds. The check is by value, not by field: a
table's number matches any number of its files.
Exit status 1 when something is reported (tests/test_quoted_numbers.py runs this on every commit).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "benchmarks/README.md", "experiments/README.md")
RESULTS_FILE = re.compile(r"(?:benchmarks|experiments)/results/[\w.-]+\.(?:json|csv)")
DECIMAL = re.compile(r"(?<![\d.])[-+]?\d+\.\d+(?![\d.])")
CODE = re.compile(r"`[^`]*`")
UNCHECKED_COLUMNS = ("published", "minus")  # a paper's figures; differences of shown numbers
MARKER = re.compile(r"<!--.*-->")  # a line such as <!-- loglik:begin -->


@dataclass(frozen=True)
class Table:
    """A Markdown table: the line number (1-based) of its first body row, its header and body rows, the files it
    cites."""

    first_line: int
    header: str
    rows: tuple[str, ...]
    cites: tuple[str, ...]

    def checked_cells(self) -> Iterator[tuple[int, str]]:
        """(row index, cell text without `code`) of every cell outside the "published ..." and "minus ..." columns."""
        unchecked = {i for i, name in enumerate(cells(self.header)) if name.lower().startswith(UNCHECKED_COLUMNS)}
        for index, row in enumerate(self.rows):
            for column, cell in enumerate(cells(row)):
                if column not in unchecked:
                    yield index, CODE.sub("", cell)


def cells(row: str) -> list[str]:
    """The cells of a table row ("\\|" is a "|" inside a cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def paragraphs_around(lines: list[str], start: int, stop: int) -> str:
    """The paragraph right above lines[start] and the one right below lines[stop - 1] (blank lines and the
    `<!-- ... -->` marker lines of a generated table skipped)."""
    def paragraph(index: int, step: int) -> list[str]:
        while 0 <= index < len(lines) and (not lines[index].strip() or MARKER.fullmatch(lines[index].strip())):
            index += step
        found = []
        while 0 <= index < len(lines) and lines[index].strip() and not lines[index].startswith("|"):
            found.append(lines[index])
            index += step
        return found

    return "\n".join(paragraph(start - 1, -1) + paragraph(stop, 1))


def tables(text: str) -> Iterator[Table]:
    """The Markdown tables of a document, header and separator rows left out."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        cites = tuple(dict.fromkeys(RESULTS_FILE.findall(paragraphs_around(lines, start, index))))
        yield Table(first_line=start + 3, header=lines[start], rows=tuple(lines[start + 2:index]), cites=cites)


def numbers_in(path: Path) -> list[float]:
    """Every number a results file holds: the numeric values of a JSON file at any depth, a CSV's numeric cells."""
    if path.suffix == ".json":
        found = []

        def walk(value) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                found.append(float(value))

        walk(json.loads(path.read_text()))
        return found
    found = []
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            for cell in row:
                try:
                    found.append(float(cell))
                except ValueError:
                    pass
    return found


def rounds_to(value: float, token: str) -> bool:
    """Whether `value` rounds to the decimal `token` at its digits, signs ignored (a tie either way: 109.625 is
    109.62 or 109.63)."""
    decimals = len(token.split(".")[1])
    return abs(abs(value) - abs(float(token))) <= 0.5 * 10**-decimals * (1 + 1e-9)


def stale_numbers(text: str, root: Path = ROOT, name: str = "document") -> list[str]:
    """One message per table number not found in the results files the table cites; [] when all are."""
    problems = []
    for table in tables(text):
        if not table.cites:
            continue
        missing = [cited for cited in table.cites if not (root / cited).exists()]
        if missing:
            problems.append(f"{name}:{table.first_line}: the table cites {', '.join(missing)}, which does not exist")
            continue
        values = [value for cited in table.cites for value in numbers_in(root / cited)]
        for offset, cell in table.checked_cells():
            for token in DECIMAL.findall(cell):
                if not any(rounds_to(value, token) for value in values):
                    problems.append(f"{name}:{table.first_line + offset}: {token} is in none of "
                                    f"{', '.join(table.cites)}")
    return problems


def checked_tables(text: str) -> int:
    """How many tables of a document cite a results file (and so are checked)."""
    return sum(1 for table in tables(text) if table.cites)


def main(argv: list[str] | None = None) -> int:
    documents = (argv if argv is not None else sys.argv[1:]) or list(DOCUMENTS)
    problems = []
    for document in documents:
        path = Path(document) if Path(document).is_absolute() else ROOT / document
        problems += stale_numbers(path.read_text(), ROOT, document)
    print("\n".join(problems) if problems else f"every quoted number matches its results file ({len(documents)} "
          "documents)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
