"""The evaluation harness: blocks, baselines, cost-weight sweeps, metrics, comparisons, plots.

A log that joins sources with different action sets has no single fully observed matrix, so it is
evaluated block by block (per `dataset` value, the largest fully observed set of test queries and
actions); results are reported per block and pooled (query-weighted mean over blocks).
"""

from haps_core.evaluation.blocks import (
    Block,
    best_single_action,
    find_blocks,
    model_only_actions,
    training_set,
)
from haps_core.evaluation.blocks import (
    _peel_to_full as _peel_to_full,
)
from haps_core.evaluation.format import _COLUMNS as _COLUMNS
from haps_core.evaluation.format import format_report, plot_report
from haps_core.evaluation.offpolicy import (
    Estimate,
    OffPolicyResult,
    bandit_rows,
    fit_reward_model,
    offpolicy_evaluate,
)
from haps_core.evaluation.report import (
    BlockReport,
    EvaluationReport,
    RouterResult,
    decision_shares,
    evaluate_block,
    pool,
    sweep,
)
from haps_core.evaluation.run import Predictor, predict_all, run_evaluation

__all__ = [
    "Block",
    "BlockReport",
    "Estimate",
    "EvaluationReport",
    "OffPolicyResult",
    "Predictor",
    "RouterResult",
    "bandit_rows",
    "best_single_action",
    "decision_shares",
    "evaluate_block",
    "find_blocks",
    "fit_reward_model",
    "format_report",
    "model_only_actions",
    "offpolicy_evaluate",
    "plot_report",
    "pool",
    "predict_all",
    "run_evaluation",
    "sweep",
    "training_set",
]
