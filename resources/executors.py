"""The executor the code location's runs use, chosen by ``CRM_PLATFORM_EXECUTOR``
(docs/scale-out.md):

* ``in_process`` (the default): a run's steps one after another in the run's own process - one
  DuckDB writer, one Spark session for every heavy step of the run;
* ``multiprocess``: each step in its own process on the run's machine;
* ``celery``: each step a Celery task on the workers of a broker (dagster-celery; the broker from
  ``DAGSTER_CELERY_BROKER_HOST`` or the run's config);
* ``k8s``: each step a Kubernetes job (dagster-k8s; image and namespace from the run launcher's).

Every step still claims the one slot of the ``duckdb`` pool, so steps that write the warehouse run
one at a time whichever executor starts them; with ``celery`` and ``k8s`` the home must be a volume
every worker mounts."""

from __future__ import annotations

import dagster as dg

from crm_platform.core import settings

_EXTRA = {"celery": ("dagster_celery", "celery_executor"), "k8s": ("dagster_k8s", "k8s_job_executor")}


def run_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor ``name`` (default: the setting) names; an executor whose package is not
    installed stops with the command that installs it."""
    name = name or settings.executor()
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    module, attr = _EXTRA[name]
    try:
        package = __import__(module)
    except ImportError:
        raise RuntimeError(f"CRM_PLATFORM_EXECUTOR={name} needs the {name} extra: "
                           f".venv/bin/pip install -c requirements.lock -e '.[{name}]'") from None
    return getattr(package, attr)
