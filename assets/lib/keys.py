"""Every asset key of the code location, named once. A key is the table it stands for
(``schema.table``); the stage modules, sensors and jobs take their keys from here."""

import dagster as dg


def table(name: str) -> dg.AssetKey:
    """The asset key of the warehouse table ``schema.table``."""
    return dg.AssetKey(name.split("."))


def raw(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", dataset])


def staging(entity: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", entity])


def model(task: str) -> dg.AssetKey:
    """The asset that trains the model of ``task`` (churn, clv, next_best_offer, lead_scoring)."""
    return dg.AssetKey(["ml", f"{task}_model"])


CONTACTS = staging("contacts")
SUPPORT_TICKETS = staging("support_tickets")
ACTIVITY = [staging(t) for t in (
    "orders", "order_items", "email_events", "support_tickets", "web_events", "nps_responses", "leads")]

IDENTITY = {name: dg.AssetKey(["identity", name]) for name in (
    "candidate_pairs", "match_weights", "pair_scores", "crosswalk", "links", "review_queue", "id_changes",
    "resolution_quality")}
CROSSWALK = IDENTITY["crosswalk"]

CUSTOMERS = table("core.customers")
PROVENANCE = table("core.customer_field_provenance")
EVENTS = table("core.customer_events")
UNATTRIBUTED = table("core.unattributed_events")

FEATURES = table("features.customer_features")

TRANSITIONS = table("marts.lifecycle_transitions")
SEGMENTS = table("marts.customer_segments")
KPI_DAILY = table("marts.kpi_daily")
COHORTS = table("marts.cohort_retention")
ATTRIBUTION = table("marts.channel_attribution")
BEHAVIOUR = table("marts.behaviour_clusters")
PROFILES = table("marts.behaviour_cluster_profiles")
LOOKALIKES = table("marts.lookalikes")
UPLIFT = table("marts.action_uplift")
DASHBOARD = table("marts.dashboard")

CHURN_SCORES = table("ml.churn_scores")
CLV_SCORES = table("ml.clv_scores")
NEXT_BEST_OFFER = table("ml.next_best_offer")
LEAD_SCORES = table("ml.lead_scores")
# scores -> the model that makes them (retrained when the scores' drift check warns)
SCORED_BY = {CHURN_SCORES: model("churn"), CLV_SCORES: model("clv"), NEXT_BEST_OFFER: model("next_best_offer"),
             LEAD_SCORES: model("lead_scoring")}

CUSTOMER_ALERTS = table("alerts.customer_alerts")
KPI_ALERTS = table("alerts.kpi_alerts")
OUTBOX = table("alerts.outbox")

SUPPRESSION = table("governance.contact_suppression")
REQUESTS = table("governance.requests")
SUBJECT_REQUESTS = table("governance.subject_requests")

# what every daily table is computed from: the timeline, who is who, and the contacts
TIMELINE_DEPS = [EVENTS, CROSSWALK, CONTACTS]
