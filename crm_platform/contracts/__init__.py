"""Contracts: what the warehouse tables hold. The canonical entities every source maps into
(``entities``), the closed vocabularies of their columns (``vocabularies``), one Pandera model per
table (``schemas``) and validating a table against its model in bounded memory (``validation``)."""
