"""Issue 15 item 6: calibration of predicted quality (ECE, Brier) and its place in `haps eval`.

The metric tests use constructed predictions and scores whose ECE and Brier score are known by
hand. The harness test fakes the query embeddings (a one-hot of the query's kind plus noise, as in
test_evaluation.py) to check the wiring quickly; the CLI test runs `haps eval` with real MiniLM.
"""

import json

import numpy as np
import pytest

from haps_core.baselines import ConstantRouter, KNNRouter, RandomRouter
from haps_core.cli import main
from haps_core.evaluation import format_report, run_evaluation
from haps_core.logs import read_logs, split_queries
from haps_core.metrics import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from tests.helpers.logs import synthetic_rows, write_jsonl


@pytest.mark.parametrize("strategy", ["equal_mass", "equal_width"])
def test_issue15_calibration_perfect_soft_predictions_have_zero_ece(strategy):
    """Predictions equal to the (soft) scores: every bin's means agree."""
    rng = np.random.default_rng(0)
    s = rng.random((200, 7))
    assert expected_calibration_error(s, s, strategy=strategy) == pytest.approx(0.0, abs=1e-12)
    assert brier_score(s, s) == 0.0


@pytest.mark.parametrize("strategy", ["equal_mass", "equal_width"])
def test_issue15_calibration_bernoulli_outcomes_of_true_probabilities_give_small_ece(strategy):
    """Binary scores drawn with the predicted probabilities: ECE is only sampling noise."""
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    s = (rng.random(p.size) < p).astype(float)
    assert expected_calibration_error(p, s, strategy=strategy) < 0.01
    # and a miscalibrated forecast of the same outcomes is caught
    assert expected_calibration_error(p**3, s, strategy=strategy) > 0.1


@pytest.mark.parametrize("offset", [0.05, -0.12, 0.3])
def test_issue15_calibration_constant_offset_gives_ece_equal_to_offset(offset):
    rng = np.random.default_rng(2)
    s = rng.uniform(0.35, 0.65, size=(300, 4))
    p = s + offset
    for strategy in ("equal_mass", "equal_width"):
        assert expected_calibration_error(p, s, strategy=strategy) == pytest.approx(abs(offset))
    assert brier_score(p, s) == pytest.approx(offset**2)


def test_issue15_calibration_brier_and_bins_by_hand():
    p = np.array([0.1, 0.2, 0.8, 0.9])
    s = np.array([0.0, 1.0, 1.0, 0.5])
    # Brier: (0.01 + 0.64 + 0.04 + 0.16) / 4
    assert brier_score(p, s) == pytest.approx(0.2125)
    bins = reliability_bins(p, s, n_bins=2)  # equal mass: {0.1, 0.2} and {0.8, 0.9}
    assert bins.counts.tolist() == [2, 2]
    assert bins.mean_predicted == pytest.approx([0.15, 0.85])
    assert bins.mean_observed == pytest.approx([0.5, 0.75])
    assert bins.lower == pytest.approx([0.1, 0.8]) and bins.upper == pytest.approx([0.2, 0.9])
    # ECE: (2 * 0.35 + 2 * 0.1) / 4
    assert bins.ece() == pytest.approx(0.225)
    # equal width with 10 bins: every cell alone in its bin, ECE = mean |p - s| = (0.1 + 0.8 + 0.2 + 0.4) / 4
    assert expected_calibration_error(p, s, strategy="equal_width") == pytest.approx(0.375)
    m = calibration_metrics(p, s, n_bins=2)
    assert (m.ece, m.brier, m.n_cells) == (pytest.approx(0.225), pytest.approx(0.2125), 4)
    assert m.to_dict()["reliability"]["counts"] == [2, 2]


def test_issue15_calibration_ties_share_a_bin_whatever_the_order():
    """A constant forecast of one value is a single bin (its ECE is the gap of the means)."""
    s = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    p = np.full(s.size, 0.5)
    bins = reliability_bins(p, s)
    assert bins.counts.tolist() == [8]
    assert bins.ece() == pytest.approx(0.25)
    order = np.random.default_rng(3).permutation(s.size)
    assert expected_calibration_error(p[order], s[order]) == pytest.approx(0.25)


def test_issue15_calibration_bad_input_errors():
    ok = np.array([0.2, 0.4])
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        expected_calibration_error(ok, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"`predicted` must be finite.*1 of 2"):
        brier_score([0.2, np.nan], ok)
    with pytest.raises(ValueError, match=r"`observed` must be finite"):
        expected_calibration_error(ok, [0.1, np.inf])
    with pytest.raises(ValueError, match=r"`predicted` must lie in \[0, 1\].*max 1.5"):
        expected_calibration_error([0.2, 1.5], ok)
    with pytest.raises(ValueError, match=r"`observed` must lie in \[0, 1\]"):
        brier_score(ok, [-0.1, 0.5])
    with pytest.raises(ValueError, match=r"at least one cell"):
        brier_score([], [])
    with pytest.raises(ValueError, match=r"`n_bins` must be an int >= 1, got 0"):
        expected_calibration_error(ok, ok, n_bins=0)
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*'quantile'"):
        expected_calibration_error(ok, ok, strategy="quantile")  # type: ignore[arg-type]


def test_issue15_calibration_in_the_harness(tmp_path):
    """Per block and pooled: knn and constant are scored, random is not (shown as "-")."""
    log = read_logs(write_jsonl(tmp_path / "s.jsonl", synthetic_rows(300)))
    rng = np.random.default_rng(0)
    kinds = np.array([1.0 if "Compute" in q else 0.0 for q in log.queries])
    emb = np.stack([kinds, 1 - kinds], 1) + 0.05 * rng.standard_normal((log.n_queries, 2))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    test = split_queries(log.query_ids, 0.3, seed=0)
    routers = {"random": RandomRouter(), "constant": ConstantRouter(), "knn": KNNRouter()}
    report = run_evaluation(log, emb, test, routers, n_boot=20)
    (result,) = report.blocks
    block = result.block
    assert result.routers["random"].calibration is None
    knn = result.routers["knn"].calibration
    assert knn is not None and knn.n_cells == block.score.size
    # recomputed from the block's observed scores and knn's own predictions
    q, _ = routers["knn"].predict(emb[block.query_idx], [log.queries[i] for i in block.query_idx])
    expected = calibration_metrics(q[:, block.action_idx], block.score)
    assert knn.ece == pytest.approx(expected.ece) and knn.brier == pytest.approx(expected.brier)
    # one block: the pooled numbers are the block's
    assert report.pooled["knn"]["ece"] == pytest.approx(knn.ece)
    assert "ece" not in report.pooled["random"] and "ece" not in report.pooled["zero-router"]
    # knn reads the query kind, the constant router does not: knn has the lower Brier score
    assert report.pooled["knn"]["brier"] < report.pooled["constant"]["brier"]
    data = report.to_dict()
    assert data["pooled_calibration"]["knn"]["reliability"]["counts"]
    text = format_report(report)
    head = next(line for line in text.splitlines() if line.startswith("router"))
    assert head.split()[-2:] == ["ECE", "Brier"]
    random_row = next(line for line in text.splitlines() if line.startswith("random"))
    assert random_row.split()[-2:] == ["-", "-"]


def test_issue15_calibration_haps_eval_prints_and_writes_it(tmp_path, capsys):
    logs = write_jsonl(tmp_path / "s.jsonl", synthetic_rows(120))
    out_json = tmp_path / "m.json"
    rc = main(
        [
            "eval",
            "--logs",
            str(logs),
            "--dev-fraction",
            "0.3",
            "--n-boot",
            "20",
            "--no-cache",
            "--json",
            str(out_json),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    for name in ("knn", "linear", "constant"):
        pooled = data["pooled"][name]
        assert 0.0 <= pooled["ece"] <= 1.0 and 0.0 <= pooled["brier"] <= 1.0
        assert data["pooled_calibration"][name]["ece"] == pooled["ece"]
        assert data["blocks"][0]["routers"][name]["calibration"]["cells"] > 0
        row = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert row.split()[-2:] == [f"{pooled['ece']:.3f}", f"{pooled['brier']:.3f}"]
    assert data["blocks"][0]["routers"]["random"]["calibration"] is None
    assert "ECE" in text and "Brier" in text
