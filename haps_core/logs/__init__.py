"""Routing log format v1: read, validate and pivot logged (query, action) outcomes.

`read_logs` turns log files into a validated `RoutingLog`; `RoutingLog.outcomes` pivots it into a
sparse `OutcomeTable`; `split_queries` gives the deterministic train/dev split of its queries.
"""

from haps_core.logs.fields import KNOWN_FIELDS, OUTCOME_FIELDS, REQUIRED_FIELDS
from haps_core.logs.prices import load_prices
from haps_core.logs.read import DUPLICATE_POLICIES, SUPPORTED_SUFFIXES, read_logs
from haps_core.logs.report import MAX_REPORTED_ERRORS, LogValidationError, RowError
from haps_core.logs.split import split_queries
from haps_core.logs.tables import OutcomeTable, RoutingLog

__all__ = [
    "DUPLICATE_POLICIES",
    "KNOWN_FIELDS",
    "MAX_REPORTED_ERRORS",
    "OUTCOME_FIELDS",
    "REQUIRED_FIELDS",
    "SUPPORTED_SUFFIXES",
    "LogValidationError",
    "OutcomeTable",
    "RoutingLog",
    "RowError",
    "load_prices",
    "read_logs",
    "split_queries",
]
