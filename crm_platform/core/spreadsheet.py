"""Text written for spreadsheets (the CRM import CSV, the review queue) that a spreadsheet would run
as a formula (CSV injection: ``=HYPERLINK(...)``, ``+cmd``, ``@SUM(...)``) is neutralized with a
leading apostrophe, the way OWASP recommends; the value stays readable and is shown as text."""

from __future__ import annotations

# what a spreadsheet reads as the start of a formula, also after leading spaces
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|")


def neutralize(value):
    """``value`` as a spreadsheet shows it as text: a string starting like a formula gets a leading
    apostrophe; anything else is returned unchanged."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_START):
        return "'" + value
    return value
