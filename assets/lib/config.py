"""The configuration of the stages, read once when the code location loads: what it says shapes
the graph (where the daily partitions start, the thresholds check descriptions state), so a change
takes a reload (Deployment > Reload), like a change of sources.yaml. The files a run reads afresh
- alerts, the match spec, survivorship rules, reviewer decisions - come through the resources."""

from crm_platform.core import settings
from crm_platform.features import snapshots
from crm_platform.marts import behaviour_clusters, kpis, segments
from crm_platform.ml import load_config as load_models

FEATURES = snapshots.load_config(settings.features_file())
SEGMENTS = segments.load_config(settings.segments_file())
KPIS = kpis.load_config(settings.segments_file())
LOOKALIKES = behaviour_clusters.load_lookalike_config(settings.segments_file())
MODELS = load_models(settings.models_file())
