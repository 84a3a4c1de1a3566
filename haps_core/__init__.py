"""HAPS: hierarchical LLM routing with joint model and parameter search.

`haps_core` holds the router and everything around it (catalog, logs, encoders, training,
evaluation, checkpoints, CLI); it never imports LangChain or LlamaIndex. The public names below
are imported lazily, so `import haps_core` stays light: torch and transformers load only when a
name that needs them is first used.
"""

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("haps")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Action": "haps_core.catalog",
    "AllBackendsFailedError": "haps_core.errors",
    "Backend": "haps_core.catalog",
    "CallTimeoutError": "haps_core.errors",
    "CheckpointError": "haps_core.errors",
    "HAPSError": "haps_core.errors",
    "HAPSRouter": "haps_core.model",
    "LogValidationError": "haps_core.logs",
    "OutcomeTable": "haps_core.logs",
    "RouterConfig": "haps_core.model",
    "RoutingDecision": "haps_core.decision",
    "RoutingError": "haps_core.errors",
    "RoutingLog": "haps_core.logs",
    "RoutingSpace": "haps_core.catalog",
    "StreamInterruptedError": "haps_core.errors",
    "TrainingConfig": "haps_core.training",
    "collect": "haps_core.collect",
    "fit": "haps_core.training",
    "read_logs": "haps_core.logs",
    "split_queries": "haps_core.logs",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from haps_core.catalog import Action, Backend, RoutingSpace
    from haps_core.collect import collect
    from haps_core.decision import RoutingDecision
    from haps_core.errors import (
        AllBackendsFailedError,
        CallTimeoutError,
        CheckpointError,
        HAPSError,
        RoutingError,
        StreamInterruptedError,
    )
    from haps_core.logs import LogValidationError, OutcomeTable, RoutingLog, read_logs, split_queries
    from haps_core.model import HAPSRouter, RouterConfig
    from haps_core.training import TrainingConfig, fit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'haps_core' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
