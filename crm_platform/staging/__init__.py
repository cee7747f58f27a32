"""Staging: one standardized table per canonical entity, unioned over every source system that
delivers it (``tables``)."""
