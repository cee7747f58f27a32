"""Alert settings and delivery: the rules file, the outbox folder and the sinks it names."""

from pathlib import Path

import dagster as dg

from crm_platform.core import settings
from crm_platform.alerts.delivery import Outbox, Sink, build_sinks
from crm_platform.alerts.rules import AlertConfig, load_config


class Alerting(dg.ConfigurableResource):
    """Where the alert rules are (``alerts.yaml``) and where alerts are delivered
    (``<home>/outbox``: the ledger, the JSON-lines and CSV sinks)."""

    home: str
    config_path: str

    def config(self) -> AlertConfig:
        return load_config(self.config_path)

    @property
    def paths(self) -> settings.Paths:
        return settings.Paths(Path(self.home))

    def outbox(self) -> Outbox:
        return Outbox(self.paths.outbox)

    def sinks(self) -> tuple[list[Sink], list[str]]:
        """The configured sinks, and a note for each one left out (a webhook without URL)."""
        return build_sinks(self.config().sinks, self.paths.outbox)


def alerting_resource() -> Alerting:
    return Alerting(home=str(settings.home()), config_path=str(settings.alerts_file()))
