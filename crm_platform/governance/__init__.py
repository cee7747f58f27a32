"""Data governance: subject requests (erasure and export) and what carries them out."""
