"""Issue 17, item: warm starts (`warm_start`, ``haps train --init-from``).

REAL: torch training of a HAPS router (tiny random BERT written locally, the synthetic log of
tests/helpers/logs.py), safetensors checkpoints and the `haps` CLI. The bandit logs are drawn
here from the synthetic log: one action per query, uniformly, with its propensity recorded.
"""

import json

import numpy as np
import pytest
import torch

from haps_core.cli import main
from haps_core.logs import read_logs
from haps_core.model import HAPSRouter
from haps_core.training.warmstart import warm_config, warm_start
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_routers import TEXTS, tiny_router


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    router, enc, logs = tiny_router(root)
    folder = root / "router"
    router.save_pretrained(folder)
    return router, enc, logs, folder, root


def bandit_rows(n_queries: int, seed: int, extra_backend: str | None = None) -> list[dict]:
    rows = synthetic_rows(n_queries, seed=seed)
    rng = np.random.default_rng(seed)
    by_query: dict[str, list[dict]] = {}
    for r in rows:
        by_query.setdefault(r["query_id"], []).append(r)
    out = []
    for qid, cells in by_query.items():
        options = list(cells)
        if extra_backend:
            options.append({**cells[0], "model": extra_backend, "score": 1.0, "cost": cells[0]["cost"] / 2})
        pick = dict(options[int(rng.integers(len(options)))])
        pick["query_id"], pick["propensity"] = f"new-{qid}", 1.0 / len(options)
        out.append(pick)
    return out


def test_issue17_warm_start_starts_from_the_routers_weights(trained):
    router, _, logs, _, _ = trained
    frozen = warm_config(lr=0.0, weight_decay=0.0, epochs=2, device="cpu")
    same = warm_start(router, read_logs(logs), training_config=frozen)
    assert same is not router
    for (name, a), b in zip(router.state_dict().items(), same.state_dict().values(), strict=True):
        if a.is_floating_point() and a.shape == b.shape:
            assert torch.allclose(a, b), name  # no step taken: the weights and normalisation kept
    qa, _ = router.predict(TEXTS)
    qb, _ = same.predict(TEXTS)
    np.testing.assert_allclose(qa, qb, atol=1e-6)


def test_issue17_warm_start_learns_from_a_bandit_log(trained):
    router, _, _, _, root = trained
    before = {k: v.clone() for k, v in router.state_dict().items()}
    path = write_jsonl(root / "bandit.jsonl", bandit_rows(120, seed=3))
    log = read_logs(path)
    updated = warm_start(router, log, training_config=warm_config(epochs=3, device="cpu"))
    summary = updated.training_summary["warm_start"]
    assert summary["bandit_rows"] == 120 and summary["rows"] == 120
    changed = [k for k, v in updated.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert changed  # it trained
    for k, v in router.state_dict().items():
        assert torch.equal(v, before[k])  # the starting router is left untouched


def test_issue17_warm_start_extends_the_catalog_with_a_logged_backend(trained):
    router, _, _, _, root = trained
    path = write_jsonl(root / "bandit_new.jsonl", bandit_rows(150, seed=4, extra_backend="tiny-llm"))
    updated = warm_start(router, read_logs(path), training_config=warm_config(epochs=3, device="cpu"))
    assert "tiny-llm" in updated.space.backend_names and len(updated.space) == len(router.space) + 1
    new = updated.space.actions_of("tiny-llm")[0]
    q, _ = updated.predict(TEXTS)
    assert np.isfinite(q[:, new]).all()


def test_issue17_cli_train_init_from_saves_an_update(trained, capsys):
    _, _, _, folder, root = trained
    path = write_jsonl(root / "bandit_cli.jsonl", bandit_rows(100, seed=5))
    out = root / "updated"
    code = main(["train", "--init-from", str(folder), "--logs", str(path), "--output", str(out),
                 "--epochs", "2", "--device", "cpu", "--no-cache"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "100 with a propensity" in text and "saved to" in text
    loaded = HAPSRouter.from_folder(out)
    assert loaded.training_summary["warm_start"]["bandit_rows"] == 100
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["warm_start"]["rows"] == 100


def test_issue17_cli_guard_logs_needs_init_from(trained, capsys):
    _, _, logs, _, root = trained
    code = main(["train", "--logs", str(logs), "--guard-logs", str(logs), "--output", str(root / "x")])
    assert code != 0
    assert "--init-from" in capsys.readouterr().err
