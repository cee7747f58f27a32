"""Pandera contracts of the warehouse tables, one ``DataFrameModel`` each, split by layer: base (the
text dtype and id patterns), staging, identity (with the golden records), customer360, marts, ml, alerts
and governance. Import them from here.

``assets/lib/checks.py`` turns every model into an asset check through one factory. Keys declared in
``Config.unique`` are checked over the whole table in SQL, the rest chunk by chunk.
"""

from crm_platform.contracts.schemas.base import (Text, E164, EMAIL, SYSTEM, CUSTOMER_ID, MODEL_VERSION,
                                                 ALERT_ID)
from crm_platform.contracts.schemas.staging import (Contacts, Orders, OrderItems, EmailEvents, SupportTickets,
                                                    WebEvents, NpsResponses, Leads, MarketingSpend,
                                                    StagingBuildState, STAGING_SCHEMAS, BLOCKING)
from crm_platform.contracts.schemas.identity import (PAIR_DECISIONS, CandidatePairs, MatchWeights, PairScores,
                                                     Links, ReviewQueue, Crosswalk, IdChanges, Customers,
                                                     BuildState, CustomerFieldProvenance, ResolutionQuality,
                                                     IDENTITY_SCHEMAS, MAY_BE_EMPTY, IDENTITY_BLOCKING)
from crm_platform.contracts.schemas.customer360 import (CustomerEvents, UnattributedEvents,
                                                        CUSTOMER360_SCHEMAS, CUSTOMER360_BLOCKING)
from crm_platform.contracts.schemas.marts import (CustomerFeatures, LifecycleTransitions, CustomerSegments,
                                                  KpiDaily, CohortRetention, BehaviourClusters,
                                                  BehaviourClusterProfiles, Lookalikes, ChannelAttribution)
from crm_platform.contracts.schemas.ml import (ChurnScores, ClvScores, NextBestOffer, LeadScores,
                                               AtRiskCustomers)
from crm_platform.contracts.schemas.alerts import (CUSTOMER_ALERT_KINDS, CustomerAlerts, KpiAlerts,
                                                   DeliveryLog, ActionUplift)
from crm_platform.contracts.schemas.governance import (ContactSuppression, GovernanceRequests,
                                                       ErasedIdentifiers, AuditLog, IdWatermark)

__all__ = [
    "Text", "E164", "EMAIL", "SYSTEM", "CUSTOMER_ID", "MODEL_VERSION", "ALERT_ID", "Contacts", "Orders",
    "OrderItems", "EmailEvents", "SupportTickets", "WebEvents", "NpsResponses", "Leads",
    "MarketingSpend", "StagingBuildState", "STAGING_SCHEMAS", "BLOCKING", "PAIR_DECISIONS",
    "CandidatePairs", "MatchWeights", "PairScores", "Links", "ReviewQueue", "Crosswalk", "IdChanges",
    "Customers", "BuildState", "CustomerFieldProvenance", "ResolutionQuality", "IDENTITY_SCHEMAS",
    "MAY_BE_EMPTY", "IDENTITY_BLOCKING", "CustomerEvents", "UnattributedEvents", "CUSTOMER360_SCHEMAS",
    "CUSTOMER360_BLOCKING", "CustomerFeatures", "LifecycleTransitions", "CustomerSegments", "KpiDaily",
    "CohortRetention", "BehaviourClusters", "BehaviourClusterProfiles", "Lookalikes",
    "ChannelAttribution", "ChurnScores", "ClvScores", "NextBestOffer", "LeadScores", "AtRiskCustomers",
    "CUSTOMER_ALERT_KINDS", "CustomerAlerts", "KpiAlerts", "DeliveryLog", "ActionUplift",
    "ContactSuppression", "GovernanceRequests", "ErasedIdentifiers", "AuditLog", "IdWatermark"
]
