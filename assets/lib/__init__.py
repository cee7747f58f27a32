"""What every stage's assets share: asset keys (keys), the daily partitions (partitions), the
metadata the UI shows (metadata) and the one factory of Pandera checks (checks)."""
