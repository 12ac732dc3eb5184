"""MkDocs hooks of the documentation site (mkdocs.yml, `hooks:`).

`mkdocs build --strict` fails on every warning. The few below come from docstrings whose text Markdown reads
as something else (a shape `factor_values[f][k]` as a reference link, `layers[0](inputs)` as an inline link);
each is named exactly, by its text, so that any other warning still fails the build. Fix the docstring,
then delete its line here.
"""

from __future__ import annotations

import logging

KNOWN_WARNINGS: tuple[str, ...] = ()  # none left: the three docstrings were fixed


class _KnownWarnings(logging.Filter):
    """Drops the records of KNOWN_WARNINGS; lets every other record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(known in message for known in KNOWN_WARNINGS)


def on_config(config, **kwargs):
    """Puts the filter on the handlers of MkDocs's logger (strict mode's warning counter is one of them)."""
    for handler in logging.getLogger("mkdocs").handlers:
        if not any(isinstance(existing, _KnownWarnings) for existing in handler.filters):
            handler.addFilter(_KnownWarnings())
    return config
