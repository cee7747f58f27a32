"""Predictive models on the point-in-time feature snapshots (churn, CLV, next-best-offer, lead
scoring): training sets without leakage, training, evaluation, gating and the registry."""
