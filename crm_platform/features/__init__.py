"""Features: point-in-time snapshots of every customer, one per day, computed only from what was
known by the end of that day (``snapshots``)."""
