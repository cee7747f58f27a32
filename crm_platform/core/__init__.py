"""Core: what every stage shares and which knows no stage. The DuckDB warehouse (``warehouse``),
where files live and configuration is read (``settings``), the days the partitions span
(``days``), value formats (``standardize``), salted hashes of identifiers (``privacy``), plots and
spreadsheet-safe text."""
