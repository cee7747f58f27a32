"""Golden records: one record per resolved customer, each field chosen by configurable
survivorship with its provenance (``survivorship``)."""
