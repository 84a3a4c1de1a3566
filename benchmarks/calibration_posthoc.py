"""What a post-hoc calibration of predicted quality would give the shipped default router.

Loads `haps-default` (it is not changed), predicts quality for every haps-bench query, fits two
monotone maps from predicted to observed quality on the router's TRAINING queries (dev fraction
0.2, seed 0: the split the router held out), and evaluates the raw and the mapped predictions
on the dev blocks with `run_evaluation` (AIQ and calibration in one table):

- isotonic: pool-adjacent-violators regression of observed score on predicted quality;
- platt: ``sigmoid(a * logit(p) + b)`` fitted by soft-target log loss (a temperature and a bias).

The training queries are in-sample for the router (its ensemble members each held out ~15% of
them for early stopping only), so their predictions may be more confident than on new queries;
the script also prints the raw ECE on those training cells, and a 5-fold cross-fit on the dev
cells themselves (fold by query) as the reference of what a calibrator fitted on genuinely
held-out queries gives.

Usage: python benchmarks/calibration_posthoc.py [--threads 2]
"""

import argparse
import logging

import numpy as np
import torch

from haps_core.baselines import ConstantRouter, KNNRouter, LinearRouter
from haps_core.encoders import CachedEncoder, embed_texts, embedding_encoder
from haps_core.evaluation import find_blocks, format_report, run_evaluation, training_set
from haps_core.logs import read_logs, split_queries
from haps_core.metrics import calibration_metrics
from haps_core.model import HAPSRouter
from haps_core.paths import bench_logs, bench_prices, default_cache_dir
from haps_core.training import aligned_predictor


def isotonic(x: np.ndarray, y: np.ndarray):
    """Pool-adjacent-violators fit of y on x; returns a piecewise-linear interpolating map."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    ux, start = np.unique(xs, return_index=True)  # ties: one level per distinct prediction
    sums = np.add.reduceat(ys, start)
    counts = np.diff(np.append(start, len(xs))).astype(float)
    levels, weights, lo = [], [], []
    for i in range(len(ux)):
        levels.append(sums[i] / counts[i])
        weights.append(counts[i])
        lo.append(i)
        while len(levels) > 1 and levels[-2] >= levels[-1]:
            w = weights[-2] + weights[-1]
            levels[-2] = (levels[-2] * weights[-2] + levels[-1] * weights[-1]) / w
            weights[-2] = w
            levels.pop(), weights.pop(), lo.pop()
    fitted = np.empty(len(ux))
    bounds = [*lo, len(ux)]
    for j, level in enumerate(levels):
        fitted[bounds[j] : bounds[j + 1]] = level
    return lambda p: np.interp(p, ux, fitted)


def platt(x: np.ndarray, y: np.ndarray):
    """sigmoid(a * logit(p) + b), soft-target log loss, LBFGS."""
    eps = 1e-6
    z = torch.logit(torch.as_tensor(np.clip(x, eps, 1 - eps), dtype=torch.float64))
    t = torch.as_tensor(y, dtype=torch.float64)
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * z + ab[1], t)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    print(f"platt: a = {a:.4f} (1/temperature), b = {b:.4f}")

    def apply(p: np.ndarray) -> np.ndarray:
        zz = np.log(np.clip(p, eps, 1 - eps)) - np.log1p(-np.clip(p, eps, 1 - eps))
        return 1.0 / (1.0 + np.exp(-(a * zz + b)))

    return apply


def mapped(predictor, fn):
    def predict(embeddings, texts):
        q, c = predictor(embeddings, texts)
        out = q.copy()
        finite = np.isfinite(q)
        out[finite] = fn(q[finite])
        return out, c

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    router = HAPSRouter.from_pretrained("haps-default")
    if router.encoder is not None and not isinstance(router.encoder, CachedEncoder):
        router.encoder = CachedEncoder(router.encoder, default_cache_dir() / "embeddings")  # as `haps eval`
    log = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(log.query_ids, 0.2, seed=0)
    emb = embed_texts(embedding_encoder(), log.queries)
    haps = aligned_predictor(router, log, router.featurize(log.queries))

    train = training_set(log, ~test, emb)
    q_train, _ = haps(train.embeddings, train.texts)
    cells = train.mask & np.isfinite(q_train)
    x, y = q_train[cells].astype(np.float64), train.score[cells].astype(np.float64)
    raw_train = calibration_metrics(x, y)
    print(
        f"raw on the {x.size} observed training cells: ECE {raw_train.ece:.4f}, Brier {raw_train.brier:.4f}"
    )
    iso, pl = isotonic(x, y), platt(x, y)

    routers = {
        "constant": ConstantRouter(),
        "knn": KNNRouter(),
        "linear": LinearRouter(seed=0),
        "haps": haps,
        "haps-isotonic": mapped(haps, iso),
        "haps-platt": mapped(haps, pl),
    }
    report = run_evaluation(log, emb, test, routers, compare=[("haps-isotonic", "haps")], n_boot=args.n_boot)
    print(format_report(report))

    # reference: 5-fold cross-fit on the dev cells (fold by query), isotonic and platt
    blocks = find_blocks(log, test)
    preds, obs, qid = [], [], []
    for block in blocks:
        q, _ = haps(emb[block.query_idx], [log.queries[i] for i in block.query_idx])
        q = q[:, block.action_idx]
        preds.append(q.ravel())
        obs.append(block.score.ravel())
        qid.append(np.repeat(block.query_idx, q.shape[1]))
    p, o, g = np.concatenate(preds), np.concatenate(obs), np.concatenate(qid)
    for strategy in ("equal_mass", "equal_width"):
        m = calibration_metrics(p, o, strategy=strategy)
        print(f"raw haps on the dev cells, {strategy} bins: ECE {m.ece:.4f}")
    fold = np.random.default_rng(0).permutation(np.unique(g))
    fold_of = {int(qq): i % 5 for i, qq in enumerate(fold)}
    f = np.array([fold_of[int(qq)] for qq in g])
    for name, fit in (("isotonic", isotonic), ("platt", platt)):
        out = np.empty_like(p)
        for k in range(5):
            out[f == k] = fit(p[f != k], o[f != k])(p[f == k])
        m = calibration_metrics(out, o)
        print(f"dev 5-fold cross-fit {name}: ECE {m.ece:.4f}, Brier {m.brier:.4f} on {m.n_cells} cells")


if __name__ == "__main__":
    main()
