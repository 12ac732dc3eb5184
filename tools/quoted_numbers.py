"""Checks that the numbers in the documents' tables are the fields of the results files they quote, cell by cell.

    python tools/quoted_numbers.py                      # README.md, the two other READMEs and docs/**/*.md
    python tools/quoted_numbers.py docs/some.md         # other documents

Every Markdown table whose body holds a decimal number (a number with a decimal point, outside `code`; whole
numbers such as epochs or image counts are not checked) says where each number comes from, in an HTML comment
right above it (blank lines and generated-table markers such as `<!-- loglik:begin -->` may stand between):

    <!-- fields benchmarks/results/loglik-summary.csv where preset={preset}, protocol=2
    - -log p(x) at 15 min = nll, nll_sd where budget_minutes=15
    - cost per epoch = cost_vs_vae where budget_minutes=15
    - tfvae @ time = speed.tfvae_epoch_seconds
    -->

The first line names the results file (JSON or CSV, under benchmarks/results/ or experiments/results/) and, for
a CSV, conditions every row of the table puts on the file's rows. Each further line maps a column (the first
header cell that starts with the text left of "="), or one row's cell in a column ("ROW @ COLUMN": the row whose
first cell starts with ROW), to fields: CSV columns of the file's rows that meet the conditions (the first
line's and the line's own `where`), in file order, or paths into a JSON file (`a.b.c`; `*` for every item of a
list or object in order; `[seed=2]` for the items of a list whose `seed` is 2); `FILE#field` takes a field of
another results file. A condition's value, and a path, may hold `{HEADER}`: that row's cell under the column whose
header starts with HEADER (backticks and ** removed), or `{HEADER:REGEX}`: the first group of REGEX in that cell
("" when it does not match). A row-and-column line wins over a column line.

A cell's decimal numbers, left to right, must then be values of its fields in their order (each at a later field
than the one before, fields may be skipped), each rounded to the digits the table shows, sign ignored (a file's
-log p(x) of 86.8 backs a table's log p(x) of -86.8). So a mean cannot be replaced by one seed's value, nor one
row's number by another row's, nor "mean +- sd (seed values)" reordered. Not checked: columns whose header
starts with "published" (a paper's figures) or "minus" (the difference of two numbers the table shows, as a
script computed it).

A table with decimal numbers and no fields comment fails, whether or not its paragraph names a results file,
unless the comment right above it is `<!-- unsourced: REASON -->` (say why a number without a results file is
right there). A table without decimal numbers needs neither.
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
# Every document a user reads: the READMEs and the documentation site's pages.
DOCUMENTS = ("README.md", "benchmarks/README.md", "experiments/README.md",
             *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md")))
# The documents whose tables of results must stay sourced (each has at least one checked table).
WITH_RESULTS = ("benchmarks/README.md", "experiments/README.md", "docs/benchmarks/speed.md",
                "docs/benchmarks/loglik.md")
RESULTS_FILE = re.compile(r"(?:benchmarks|experiments)/results/[\w.{}-]+\.(?:json|csv)")
DECIMAL = re.compile(r"(?<![\d.])[-+]?\d+\.\d+(?![\d.])")
CODE = re.compile(r"`[^`]*`")
UNCHECKED_COLUMNS = ("published", "minus")  # a paper's figures; differences of shown numbers
MARKER = re.compile(r"<!--.*-->")  # a line such as <!-- loglik:begin -->
TEMPLATE = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")


@dataclass(frozen=True)
class Mapping:
    """One line of a fields comment: the row (a prefix of its first cell, "" for every row) and column (a prefix
    of its header) it maps, the fields, and its own conditions."""

    row: str
    column: str
    fields: tuple[str, ...]
    where: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Fields:
    """A table's fields comment: the results file, the conditions of every row, the mappings."""

    file: str
    where: tuple[tuple[str, str], ...]
    mappings: tuple[Mapping, ...]


@dataclass(frozen=True)
class Table:
    """A Markdown table: the line number (1-based) of its first body row, its header and body rows, the files its
    paragraphs cite, its fields comment (None if it has none) and its `unsourced` reason ("" if none)."""

    first_line: int
    header: str
    rows: tuple[str, ...]
    cites: tuple[str, ...]
    fields: Fields | None = None
    unsourced: str = ""

    def columns(self) -> list[str]:
        return [plain(name) for name in cells(self.header)]

    def checked_cells(self) -> Iterator[tuple[int, int, str]]:
        """(row index, column index, cell text without `code`) of every cell outside the "published ..." and
        "minus ..." columns."""
        unchecked = {i for i, name in enumerate(self.columns()) if name.lower().startswith(UNCHECKED_COLUMNS)}
        for index, row in enumerate(self.rows):
            for column, cell in enumerate(cells(row)):
                if column not in unchecked:
                    yield index, column, CODE.sub("", cell)

    def has_numbers(self) -> bool:
        return any(DECIMAL.search(cell) for _, _, cell in self.checked_cells())


def cells(row: str) -> list[str]:
    """The cells of a table row ("\\|" is a "|" inside a cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def plain(cell: str) -> str:
    """A cell's text without backticks, bold marks and escapes."""
    return cell.replace("`", "").replace("**", "").replace("\\|", "|").strip()


def paragraphs_around(lines: list[str], start: int, stop: int) -> str:
    """The paragraph right above lines[start] and the one right below lines[stop - 1] (blank lines and the lines
    of `<!-- ... -->` comments skipped)."""
    commented = comment_lines(lines)

    def paragraph(index: int, step: int) -> list[str]:
        while 0 <= index < len(lines) and (not lines[index].strip() or index in commented):
            index += step
        found = []
        while 0 <= index < len(lines) and lines[index].strip() and not lines[index].startswith("|") \
                and index not in commented:
            found.append(lines[index])
            index += step
        return found

    return "\n".join(paragraph(start - 1, -1) + paragraph(stop, 1))


def comment_lines(lines: list[str]) -> set[int]:
    """The indices of the lines that lie in a `<!-- ... -->` comment, its first and last included."""
    inside, found = False, set()
    for index, line in enumerate(lines):
        if "<!--" in line:
            inside = True
        if inside:
            found.add(index)
        if "-->" in line:
            inside = False
    return found


def comment_above(lines: list[str], start: int) -> str:
    """The text of the `<!-- ... -->` comment right above lines[start] (blank lines and one-line markers such as
    `<!-- loglik:begin -->` skipped), without its `<!--` and `-->`; "" if there is none."""
    index = start - 1
    while index >= 0:
        text = lines[index].strip()
        if not text:
            index -= 1
            continue
        if text.endswith("-->"):
            end = index
            while index >= 0 and "<!--" not in lines[index]:
                index -= 1
            if index < 0:
                return ""
            body = "\n".join(lines[index:end + 1]).strip()
            body = body[body.index("<!--") + 4:body.rindex("-->")].strip()
            if body.startswith(("fields", "unsourced")):
                return body
            index -= 1  # a marker line (generated-table begin/end): look further up
            continue
        return ""
    return ""


def parse_fields(text: str) -> Fields:
    """A `fields FILE [where ...]` comment's text as a Fields."""
    head, *rest = [line.strip() for line in text.splitlines() if line.strip()]
    file, where = _split_where(head.removeprefix("fields").strip())
    mappings = []
    for line in rest:
        if not line.startswith("- ") or "=" not in line:
            raise ValueError(f"a fields line must read '- COLUMN = FIELD, ...' or '- ROW @ COLUMN = ...': {line!r}")
        key, value = line[2:].split(" = ", 1) if " = " in line else line[2:].split("=", 1)
        row, column = (part.strip() for part in key.split(" @ ", 1)) if " @ " in key else ("", key.strip())
        value, own = _split_where(value)
        mappings.append(Mapping(row=row, column=column, fields=tuple(f.strip() for f in split_top(value)
                                                                     if f.strip()), where=own))
    return Fields(file=file.strip(), where=where, mappings=tuple(mappings))


def _split_where(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if " where " not in f" {text} ":
        return text.strip(), ()
    main, conditions = (f" {text} ").split(" where ", 1)
    pairs = []
    for condition in split_top(conditions):
        name, value = condition.split("=", 1)
        pairs.append((name.strip(), value.strip()))
    return main.strip(), tuple(pairs)


def split_top(text: str) -> list[str]:
    """`text` split at each ", " outside {braces} (a template's regex may hold ", ")."""
    parts, depth, current = [], 0, ""
    for index, char in enumerate(text):
        depth += char == "{"
        depth -= char == "}"
        if depth == 0 and text.startswith(", ", index):
            parts.append(current)
            current = ""
            continue
        if depth == 0 and current == "" and char == " " and parts:
            continue  # the space of ", "
        current += char
    return [*parts, current]


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
        comment = comment_above(lines, start)
        fields = parse_fields(comment) if comment.startswith("fields") else None
        unsourced = comment.removeprefix("unsourced:").strip() if comment.startswith("unsourced") else ""
        yield Table(first_line=start + 3, header=lines[start], rows=tuple(lines[start + 2:index]),
                    cites=cites + ((fields.file,) if fields and fields.file not in cites else ()),
                    fields=fields, unsourced=unsourced)


# --------------------------------------------------------------------------- results files
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
            elif _is_number(value):
                found.append(float(value))

        walk(json.loads(path.read_text()))
        return found
    return [float(cell) for row in csv_rows(path) for cell in row.values() if _as_float(cell) is not None]


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(text) -> float | None:
    if _is_number(text):
        return float(text)
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _same(a, b) -> bool:
    """Equal as numbers when both read as numbers, else as strings ("" for a blank)."""
    x, y = _as_float(a), _as_float(b)
    if x is not None and y is not None:
        return x == y
    return str(a if a is not None else "") == str(b if b is not None else "")


def json_values(value, path: str) -> list[float]:
    """The numbers at `path` in a JSON value, in order: segments split on ".", "*" for every item, "[k=v]" for the
    items of a list whose k is v; a list of numbers at the end gives all of them."""
    nodes = [value]
    for segment in [s for s in re.split(r"\.(?![^\[]*\])", path) if s]:
        filtered = re.fullmatch(r"(.*)\[([^=\]]+)=([^\]]*)\]", segment)
        name, key, wanted = (filtered.group(1), filtered.group(2), filtered.group(3)) if filtered else \
            (segment, None, None)
        following = []
        for node in nodes:
            if name == "*":
                following += list(node.values()) if isinstance(node, dict) else list(node) \
                    if isinstance(node, list) else []
            elif name:
                if isinstance(node, dict) and name in node:
                    following.append(node[name])
            else:
                following.append(node)
        if key is not None:
            following = [item for item in (x for node in following for x in (node if isinstance(node, list)
                                                                            else [node]))
                         if isinstance(item, dict) and _same(item.get(key), wanted)]
        nodes = following
    found = []
    for node in nodes:
        if isinstance(node, list):
            found += [float(item) for item in node if _is_number(item)]
        elif _is_number(node):
            found.append(float(node))
    return found


# --------------------------------------------------------------------------- the check
def rounds_to(value: float, token: str) -> bool:
    """Whether `value` rounds to the decimal `token` at its digits, signs ignored (a tie either way: 109.625 is
    109.62 or 109.63)."""
    decimals = len(token.split(".")[1])
    return abs(abs(value) - abs(float(token))) <= 0.5 * 10**-decimals * (1 + 1e-9)


def fill(template: str, row: dict[str, str]) -> str:
    """`template` with each {HEADER} or {HEADER:REGEX} replaced from the table row (`row`: header -> plain cell)."""
    def value(match: re.Match) -> str:
        header, pattern = match.group(1).strip().lower(), match.group(2)
        name = next((h for h in row if h.lower().startswith(header)), None)
        if name is None:
            raise ValueError(f"no column whose header starts with {match.group(1)!r}")
        if pattern is None:
            return row[name]
        found = re.search(pattern, row[name])
        return (found.group(1) or "") if found else ""

    return TEMPLATE.sub(value, template)


def field_values(fields: Fields, mapping: Mapping, row: dict[str, str], root: Path) -> list[float]:
    """The values, in order, that a cell mapped by `mapping` may show, for the table row `row`."""
    values = []
    for field in mapping.fields:
        file, name = field.split("#", 1) if "#" in field else (fields.file, field)
        path = root / fill(file, row)
        if path.suffix == ".json":
            values += json_values(json.loads(path.read_text()), fill(name, row))
            continue
        conditions = [(key, fill(wanted, row)) for key, wanted in (*fields.where, *mapping.where)]
        for record in csv_rows(path):
            if all(_same(record.get(key), wanted) for key, wanted in conditions):
                number = _as_float(record.get(name))
                if number is not None:
                    values.append(number)
    return values


def in_order(tokens: list[str], values: list[float]) -> str | None:
    """None when the tokens are values of `values` in their order (a subsequence, each rounded to its digits);
    else the first token that is not."""
    position = 0
    for token in tokens:
        while position < len(values) and not rounds_to(values[position], token):
            position += 1
        if position == len(values):
            return token
        position += 1
    return None


def table_problems(table: Table, root: Path, name: str) -> list[str]:
    if table.fields is None:
        if not table.has_numbers() or table.unsourced:
            return []
        where = f" (its paragraph names {', '.join(table.cites)})" if table.cites else ""
        return [f"{name}:{table.first_line - 2}: a table with numbers and no <!-- fields ... --> comment{where}; "
                "map its cells to their results file, or say why it has none in <!-- unsourced: ... -->"]
    files = {field.split("#", 1)[0] for m in table.fields.mappings for field in m.fields if "#" in field}
    missing = [f for f in [table.fields.file, *sorted(files)] if "{" not in f and not (root / f).exists()]
    if missing:
        return [f"{name}:{table.first_line}: the table cites {', '.join(missing)}, which does not exist"]
    columns = table.columns()
    problems = []
    for index, column, cell in table.checked_cells():
        tokens = DECIMAL.findall(cell)
        if not tokens:
            continue
        row = dict(zip(columns, (plain(c) for c in cells(table.rows[index])), strict=False))
        label, header = plain(cells(table.rows[index])[0]).lower(), columns[column].lower()
        candidates = [m for m in table.fields.mappings if header.startswith(m.column.lower())]
        mapping = next((m for m in candidates if m.row and label.startswith(m.row.lower())), None) or \
            next((m for m in candidates if not m.row), None)
        line = table.first_line + index
        if mapping is None:
            problems.append(f"{name}:{line}: column {columns[column]!r} of row {label[:40]!r} shows numbers and the "
                            "fields comment maps no field for it")
            continue
        try:
            values = field_values(table.fields, mapping, row, root)
        except (OSError, ValueError, json.JSONDecodeError) as error:
            problems.append(f"{name}:{line}: {error}")
            continue
        wrong = in_order(tokens, values)
        if wrong is not None:
            shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
            cell_numbers = f" (the cell's numbers: {', '.join(tokens)})" if len(tokens) > 1 else ""
            problems.append(f"{name}:{line}: {wrong} in column {columns[column]!r}{cell_numbers} is not, in order, "
                            f"{', '.join(mapping.fields)} of {table.fields.file} for this row "
                            f"({shown or 'no such field'})")
    return problems


def stale_numbers(text: str, root: Path = ROOT, name: str = "document") -> list[str]:
    """One message per table number that is not its field's value in its results file, and per table with numbers
    and no fields comment (and no `unsourced` reason); [] when all are right."""
    return [problem for table in tables(text) for problem in table_problems(table, root, name)]


def checked_tables(text: str) -> int:
    """How many tables of a document map their cells to a results file (and so are checked)."""
    return sum(1 for table in tables(text) if table.fields)


def main(argv: list[str] | None = None) -> int:
    documents = (argv if argv is not None else sys.argv[1:]) or list(DOCUMENTS)
    problems = []
    for document in documents:
        path = Path(document) if Path(document).is_absolute() else ROOT / document
        problems += stale_numbers(path.read_text(), ROOT, document)
    print("\n".join(problems) if problems else f"every quoted number is its field in its results file "
          f"({len(documents)} documents)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
