"""Dagster resources: the DuckDB warehouse and the landing zone with its source declaration."""

from resources.warehouse import LandingZone, build_resources, warehouse_resource

__all__ = ["LandingZone", "build_resources", "warehouse_resource"]
