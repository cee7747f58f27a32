"""Configuration of identity resolution: the match spec, survivorship rules, review and truth files."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from crm_platform.core import settings
from crm_platform.identity import derive
from crm_platform.golden import survivorship as golden
from crm_platform.identity.spec import MatchSpec


class IdentityResolution(dg.ConfigurableResource):
    """Where the match spec and survivorship rules live and where reviewers hand back decisions.

    Without ``match_spec_path`` the spec is derived from the staged contacts
    (``crm_platform.identity.derive``); a spec file may start from that one with ``extends: derived``.

    Truth (``<home>/truth/contact_records.csv``) exists only for generated demo data; the quality
    asset measures against it when present and describes the clusters otherwise."""

    home: str
    survivorship_path: str
    match_spec_path: str = ""

    def spec(self, con) -> MatchSpec:
        return derive.spec_for(con, self.match_spec_path or None)

    def survivorship(self) -> list[golden.FieldRule]:
        return golden.load_rules(self.survivorship_path)

    @property
    def review_dir(self) -> Path:
        return settings.Paths(Path(self.home)).review

    @property
    def truth_file(self) -> Path:
        return settings.Paths(Path(self.home)).truth / "contact_records.csv"


def identity_resource() -> IdentityResolution:
    spec = settings.match_spec_file()
    return IdentityResolution(home=str(settings.home()), match_spec_path=str(spec) if spec else "",
                              survivorship_path=str(settings.survivorship_file()))
