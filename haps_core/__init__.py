"""HAPS: hierarchical LLM routing with joint model and parameter search.

`haps_core` holds the router and everything around it (catalog, logs, encoders, training,
evaluation, checkpoints, CLI). It never imports LangChain or LlamaIndex: those live in
`haps_integrations`, behind optional extras.
"""

import logging
from importlib.metadata import PackageNotFoundError, version

from haps_core.catalog import Action, Backend, RoutingSpace
from haps_core.logs import OutcomeTable, RoutingLog, read_logs, split_queries

try:
    __version__ = version("haps")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Action",
    "Backend",
    "OutcomeTable",
    "RoutingLog",
    "RoutingSpace",
    "__version__",
    "read_logs",
    "split_queries",
]
