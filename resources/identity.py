"""Configuration of identity resolution: the match spec, survivorship rules, review and truth files."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from crm_platform import settings
from crm_platform.identity import golden
from crm_platform.identity.spec import MatchSpec, load_spec


class IdentityResolution(dg.ConfigurableResource):
    """Where the match spec and survivorship rules live and where reviewers hand back decisions.

    Truth (``<home>/truth/contact_records.csv``) exists only for generated demo data; the quality
    asset measures against it when present and describes the clusters otherwise."""

    home: str
    match_spec_path: str
    survivorship_path: str

    def spec(self) -> MatchSpec:
        return load_spec(self.match_spec_path)

    def survivorship(self) -> list[golden.FieldRule]:
        return golden.load_rules(self.survivorship_path)

    @property
    def review_dir(self) -> Path:
        return settings.Paths(Path(self.home)).review

    @property
    def truth_file(self) -> Path:
        return settings.Paths(Path(self.home)).truth / "contact_records.csv"


def identity_resource() -> IdentityResolution:
    return IdentityResolution(home=str(settings.home()), match_spec_path=str(settings.match_spec_file()),
                              survivorship_path=str(settings.survivorship_file()))
