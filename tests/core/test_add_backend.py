"""Issue 17, item: `HAPSRouter.add_backend` (a backend from its prices and a prior).

REAL: a HAPS router trained here (tiny random BERT written locally, synthetic log), its
checkpoint round trip (safetensors + JSON) and `warm_start` on a bandit log drawn here that
serves the new backend.
"""

import numpy as np
import pytest

from haps_core.exploration import Exploration
from haps_core.logs import read_logs
from haps_core.model import HAPSRouter
from haps_core.training.warmstart import warm_config, warm_start
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_routers import TEXTS, tiny_router

GRID = {"temperature": [0.0, 1.0], "prompt_style": ["cot"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("add")
    router, _, logs = tiny_router(root)
    return router, logs, root


def test_issue17_add_backend_keeps_the_old_predictions(trained):
    router, _, _ = trained
    bigger = router.add_backend("newbie", (1.0, 4.0), GRID)
    assert "newbie" not in router.space.backend_names  # a copy: the router itself is unchanged
    assert len(bigger.space) == len(router.space) + 2
    old = [bigger.space.index(a) for a in router.space.actions]
    q0, c0 = router.predict(TEXTS)
    q1, c1 = bigger.predict(TEXTS)
    np.testing.assert_allclose(q1[:, old], q0, atol=1e-5)
    np.testing.assert_allclose(c1[:, old], c0, rtol=1e-4)


def test_issue17_add_backend_neutral_and_given_priors(trained):
    router, _, _ = trained
    q_ref, c_ref = router.reference_predictions()
    neutral = router.add_backend("newbie", (1.0, 4.0), GRID)
    new = neutral.space.actions_of("newbie")
    q, _ = neutral.reference_predictions()
    assert q[:, new].mean() == pytest.approx(q_ref.mean(), abs=0.01)
    strong = router.add_backend("newbie", (1.0, 4.0), GRID, prior=0.95)
    q, _ = strong.reference_predictions()
    assert q[:, new].mean() == pytest.approx(0.95, abs=0.01)
    with pytest.raises(ValueError, match="`prior`"):
        router.add_backend("x", (1.0, 1.0), prior=1.5)
    with pytest.raises(ValueError, match="`name`"):
        router.add_backend("small", (1.0, 1.0))


def test_issue17_add_backend_prices_its_cost(trained):
    router, _, _ = trained
    cheap = router.add_backend("newbie", (0.1, 0.2), GRID)
    dear = router.add_backend("newbie", (10.0, 20.0), GRID)
    new = cheap.space.actions_of("newbie")
    _, c_cheap = cheap.reference_predictions()
    _, c_dear = dear.reference_predictions()
    ratio = c_dear[:, new].mean() / c_cheap[:, new].mean()
    assert ratio == pytest.approx(100.0, rel=0.05)


def test_issue17_added_backend_is_served_only_through_exploration(trained, tmp_path):
    router, _, _ = trained
    bigger = router.add_backend("newbie", (1.0, 4.0), GRID, prior=0.99)  # would win greedily
    texts = TEXTS * 40
    assert "newbie" not in {d.backend for d in bigger.route(texts, cost_weight=0.0)}
    explored = bigger.route(texts, cost_weight=0.0, exploration=Exploration(epsilon=1.0, seed=0))
    served = [d for d in explored if d.backend == "newbie"]
    assert served and all(d.explored and d.propensity < 1 for d in served)
    bigger.save_pretrained(tmp_path / "r")  # the hold survives the checkpoint
    loaded = HAPSRouter.from_folder(tmp_path / "r")
    assert loaded.config.extra["explore_only"] == {"newbie": 50}
    assert "newbie" not in {d.backend for d in loaded.route(texts, cost_weight=0.0)}


def test_issue17_warm_start_releases_the_backend_after_enough_evidence(trained):
    router, _, root = trained
    bigger = router.add_backend("newbie", (0.5, 0.5), {"temperature": [0.0], "prompt_style": ["cot"]},
                                min_observations=30)  # fmt: skip
    rows = []
    for r in synthetic_rows(60, seed=9):
        if r["model"] == "small" and r["temperature"] == 0.0:
            rows.append({**r, "query_id": f"n-{r['query_id']}", "propensity": 0.5})
            rows.append(
                {**r, "query_id": f"n-{r['query_id']}", "model": "newbie", "score": 1.0, "propensity": 0.5}
            )
    few = write_jsonl(root / "few.jsonl", rows[:40])  # 20 rows of newbie: still held
    config = warm_config(epochs=2, device="cpu")
    held = warm_start(bigger, read_logs(few), training_config=config)
    assert held.config.extra["explore_only"] == {"newbie": 30}
    enough = write_jsonl(root / "enough.jsonl", rows)  # 60 rows of newbie
    released = warm_start(bigger, read_logs(enough), training_config=config)
    assert released.config.extra["explore_only"] == {}
    assert released.training_summary["warm_start"]["released_backends"] == ["newbie"]
