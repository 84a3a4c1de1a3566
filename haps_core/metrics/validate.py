"""Input checks shared by the metrics: score/cost matrices, choice arrays, action indices."""

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _as_1d_float(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        msg = f"`{name}` must be a non-empty 1-D array, got shape {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"`{name}` must be finite (no NaN/inf), got {arr.tolist()!r}"
        raise ValueError(msg)
    return arr


def _validate_scores_costs(s: ArrayLike, c: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return ``S`` and ``C`` as float arrays after checking the contract on them."""
    s_arr = np.asarray(s, dtype=np.float64)
    c_arr = np.asarray(c, dtype=np.float64)
    if s_arr.ndim != 2 or s_arr.shape[0] == 0 or s_arr.shape[1] == 0:
        msg = f"`S` must be a non-empty 2-D array [n_queries, n_actions], got shape {s_arr.shape}"
        raise ValueError(msg)
    if c_arr.shape != s_arr.shape:
        msg = f"`C` must have the same shape as `S` {s_arr.shape}, got shape {c_arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(s_arr)):
        msg = f"`S` must not contain NaN/inf, found {int(np.sum(~np.isfinite(s_arr)))} entries"
        raise ValueError(msg)
    if not np.all(np.isfinite(c_arr)):
        msg = f"`C` must not contain NaN/inf, found {int(np.sum(~np.isfinite(c_arr)))} entries"
        raise ValueError(msg)
    if s_arr.min() < 0.0 or s_arr.max() > 1.0:
        msg = f"`S` must lie in [0, 1], got min {s_arr.min()!r} and max {s_arr.max()!r}"
        raise ValueError(msg)
    if c_arr.min() < 0.0:
        msg = f"`C` must be >= 0, got min {c_arr.min()!r}"
        raise ValueError(msg)
    return s_arr, c_arr


def _validate_choices(choices: ArrayLike, n_queries: int, n_actions: int, name: str) -> IntArray:
    """Return ``choices`` as a 2-D int array ``[n_lambdas, n_queries]`` of valid action indices.

    A 1-D array is accepted as a single operating point.
    """
    arr = np.asarray(choices)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        msg = f"`{name}` must be a 2-D array [n_lambdas, n_queries], got shape {arr.shape}"
        raise ValueError(msg)
    if arr.shape[1] != n_queries:
        msg = f"`{name}` must have n_queries={n_queries} columns, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            msg = f"`{name}` must hold integer action indices, got dtype {arr.dtype}"
            raise ValueError(msg)
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0 or arr.max() >= n_actions:
        msg = (
            f"`{name}` must hold action indices in [0, {n_actions}), "
            f"got min {int(arr.min())} and max {int(arr.max())}"
        )
        raise ValueError(msg)
    return arr


def _validate_action(best_action: int, n_actions: int) -> int:
    if isinstance(best_action, bool) or not isinstance(best_action, int | np.integer):
        msg = f"`best_action` must be an int, got {best_action!r}"
        raise ValueError(msg)
    if not 0 <= int(best_action) < n_actions:
        msg = f"`best_action` must be in [0, {n_actions}), got {best_action!r}"
        raise ValueError(msg)
    return int(best_action)
