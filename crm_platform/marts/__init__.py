"""Marts, what the business reads per day: KPIs and cohorts (``kpis``), lifecycle stages and RFM
segments (``segments``), channel attribution (``attribution``) and behaviour clusters
(``behaviour_clusters``)."""
