"""Ingest, the first stage: the declared sources (``sources``), landing files loaded into the raw
layer exactly once with quarantine rows for what cannot be trusted (``load``), the raw tables and
their bookkeeping (``raw``), and keeping erased people out (``erased``)."""
