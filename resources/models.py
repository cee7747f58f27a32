"""The model registry as a resource: versioned models under ``CRM_PLATFORM_HOME/models``."""

from pathlib import Path

import dagster as dg

from crm_platform.core import settings
from crm_platform.ml.registry import Registry


class ModelStore(dg.ConfigurableResource):
    """Where trained models, their cards and the champion of each task are kept."""

    root: str

    def registry(self) -> Registry:
        return Registry(Path(self.root))


def model_store() -> ModelStore:
    return ModelStore(root=str(settings.paths().models))
