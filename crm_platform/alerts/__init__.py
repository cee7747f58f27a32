"""Alerts: what the platform tells the business (customer and KPI alerts) and how it is delivered
(pluggable sinks behind an exactly-once outbox ledger)."""
