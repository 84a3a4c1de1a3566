"""Router checkpoints: save, strict load, the Hub download path, offline cache, push, model card.

Real parts: a tiny router trained in a second on CPU with a tiny random BERT, real safetensors
files, and huggingface_hub's own `snapshot_download` running against `tests/stub.py`, a
local stand-in for the Hub's API/resolve endpoints (the real Hub is unreachable here). Only
`push_to_hub` patches `HfApi` (uploads need the real Hub); what it uploads is then served by the
stand-in and downloaded back.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from haps_core import hub
from haps_core.encoders import load_encoder
from haps_core.errors import CheckpointError
from haps_core.hub import files as hub_files
from haps_core.logs import read_logs
from haps_core.model import HAPSRouter, RouterConfig, load_router_folder
from haps_core.training import TrainingConfig, features_for, fit_router
from haps_core.training.styles import with_prompt_styles
from tests.helpers.checkpoints import REFUSALS
from tests.helpers.hub_server import HubStub, hub_server  # noqa: F401  (the `stub` fixture)
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

pytestmark = pytest.mark.enable_socket  # loopback only: the stand-in Hub

REPO = "haps-test/tiny-router"
TEXTS = [f"Who wrote Hamlet? #{i}" if i % 2 else f"Compute {i} * 3 + 4 and explain #{i}" for i in range(100)]
EVALUATION = {
    "description": "`haps eval` on l.jsonl: 12 held-out test queries, pooled over 1 block.",
    "columns": ["router", "aiq", "q_at_c_best", "gap_recovered", "saving", "saving95"],
    "rows": [
        {
            "router": "haps",
            "aiq": 0.7123,
            "q_at_c_best": 0.8,
            "gap_recovered": 0.41,
            "saving": 0.3,
            "saving95": float("nan"),
        },
        {
            "router": "knn",
            "aiq": 0.6,
            "q_at_c_best": 0.7,
            "gap_recovered": 0.1,
            "saving": 0.2,
            "saving95": 0.5,
        },
    ],
}


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return load_encoder(str(make_tiny_bert(tmp_path_factory.mktemp("bert"))), device="cpu")


@pytest.fixture(scope="module")
def router(tmp_path_factory, tiny_encoder):
    log = read_logs(write_jsonl(tmp_path_factory.mktemp("logs") / "l.jsonl", synthetic_rows(40)))
    log = with_prompt_styles(log, "builtin")  # the "cot" style with its built-in text, opted into
    cfg = RouterConfig(embed_dim=tiny_encoder.dim, hidden=16, members=2)
    feats = features_for(tiny_encoder, log.queries, cfg.use_structural)
    training = TrainingConfig(epochs=3, skip_warmup_steps=20, progress=False)
    r = fit_router(log, tiny_encoder, feats, None, cfg, training)
    r.evaluation = json.loads(json.dumps(EVALUATION))
    r.default_cost_weight = 50.0
    return r


@pytest.fixture(scope="module")
def saved(tmp_path_factory, router):
    """The router's checkpoint (v1) and a second revision (v2: other weights and cost weight)."""
    root = tmp_path_factory.mktemp("ckpt")
    v1 = router.save_pretrained(root / "v1")
    second = load_router_folder(v1, load_encoder=False).attach_encoder(router.encoder)
    with torch.no_grad():
        second.members[0].skip.bias.add_(0.5)
    second.default_cost_weight = 7.0
    v2 = second.save_pretrained(root / "v2")
    return v1, v2


@pytest.fixture
def ckpt(saved, tmp_path):
    """A fresh copy of the v1 checkpoint, to tamper with."""
    return Path(shutil.copytree(saved[0], tmp_path / "ckpt"))


def decisions(r: HAPSRouter, weights=(0.0, 50.0, 1e4), n: int = 100) -> list[tuple[int, float, float]]:
    """Decisions on the first `n` queries at each cost weight (one encoder pass, as `route` does)."""
    quality, cost = r.predict(TEXTS[:n])
    return [
        (d.action_index, d.predicted_quality, d.predicted_cost)
        for w in weights
        for d in r.decide(quality, cost, w)
    ]


# -- save / load ------------------------------------------------------------------------------
def test_round_trip_identical_decisions_on_100_queries(router, ckpt):
    loaded = HAPSRouter.from_pretrained(ckpt)  # resolves the referenced (local) encoder itself
    got = decisions(loaded)
    assert len(got) == 300 and got == decisions(router)
    for (k, v), (k2, w) in zip(router.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, w), k
    assert loaded.space == router.space and loaded.config == router.config
    assert loaded.default_cost_weight == 50.0 and loaded.has_cost == router.has_cost
    assert loaded.training_summary["parameters"] == router.num_parameters()
    assert loaded.evaluation["rows"][0]["saving95"] is None  # NaN is stored as null
    assert not loaded.training


def test_checkpoint_files_and_config_contents(router, ckpt):
    assert sorted(p.name for p in ckpt.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # strict JSON (no NaN tokens), readable by any JSON parser
    cfg = json.loads(
        (ckpt / "config.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}")
    )
    assert cfg["format_version"] == hub.FORMAT_VERSION and cfg["library"] == "haps"
    assert cfg["library_version"] and {"torch", "transformers", "huggingface_hub"} <= set(
        cfg["framework_versions"]
    )
    backends = {b["name"]: b for b in cfg["space"]["backends"]}
    assert set(backends) == {"small", "large"}
    assert {"input_price", "output_price"} <= set(backends["large"])
    assert backends["large"]["parameters"]["temperature"] == [0.0, 1.0]
    assert cfg["space"]["prompt_styles"]["cot"].startswith("Think step by step")
    assert cfg["encoder"]["id"] == router.encoder.encoder_id and "revision" in cfg["encoder"]
    assert cfg["router_config"]["hidden"] == 16 and cfg["router_config"]["members"] == 2
    assert cfg["training"]["queries"] == 40 and cfg["training"]["training_config"]["epochs"] == 3
    assert cfg["evaluation"]["columns"][1] == "aiq"
    # no pickle anywhere: the weights are a plain safetensors file
    assert (ckpt / "model.safetensors").read_bytes()[8:9] == b"{"


def test_save_is_atomic_a_failed_save_keeps_the_previous_checkpoint(saved, ckpt, monkeypatch):
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    other = load_router_folder(saved[1], load_encoder=False)  # would change every file

    def crash(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a safetensors file")
        raise OSError("disk full (simulated)")

    def no_rename(self, target):
        if self.name.startswith(".ckpt.tmp-"):
            raise OSError("power cut between the renames (simulated)")
        return rename(self, target)

    rename = Path.rename
    for patch, error in (
        ((hub_files, "save_file", crash), "disk full"),  # mid-way through the weights
        ((hub_files, "_fsync_tree", lambda folder: crash(None, folder / "x")), "disk full"),  # all written
        ((Path, "rename", no_rename), "power cut"),  # old checkpoint already moved aside
    ):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            with pytest.raises(OSError, match=error):
                other.save_pretrained(ckpt)
        assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
        assert sorted(p.name for p in ckpt.parent.iterdir()) == ["ckpt"]  # no temporary folder left
    assert load_router_folder(ckpt, load_encoder=False).default_cost_weight == 50.0
    other.save_pretrained(ckpt)  # and without a crash the new one replaces it
    assert load_router_folder(ckpt, load_encoder=False).default_cost_weight == 7.0


def test_save_regenerates_the_card_and_replaces_an_old_checkpoint(router, ckpt):
    load_router_folder(ckpt, load_encoder=False)
    (ckpt / "README.md").write_text("stale card")
    copy = load_router_folder(ckpt, load_encoder=False)
    copy.evaluation = {}
    copy.save_pretrained(ckpt)
    card = (ckpt / "README.md").read_text()
    assert "stale card" not in card and "Not evaluated yet" in card
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["ckpt"]


def test_save_refuses_to_replace_a_folder_that_is_not_a_checkpoint(router, tmp_path):
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"not a HAPS checkpoint .*notes\.txt.*refusing to replace"):
        router.save_pretrained(precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        router.save_pretrained(tmp_path / "file")


def test_save_refuses_non_finite_weights(router, ckpt, tmp_path):
    broken = load_router_folder(ckpt, load_encoder=False)
    with torch.no_grad():
        broken.members[1].skip.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"members\.1\.skip\.weight.*NaN"):
        broken.save_pretrained(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_strict_loading_refuses_with_a_named_error(ckpt, case):
    tamper, pattern = REFUSALS[case]
    tamper(ckpt)
    with pytest.raises(CheckpointError, match=pattern):
        load_router_folder(ckpt, load_encoder=False)


def test_fine_tuned_encoder_is_saved_as_safetensors_and_loaded_from_the_checkpoint(router, tmp_path):
    tuned = load_router_folder(router.save_pretrained(tmp_path / "a"), load_encoder=False)
    tuned.attach_encoder(router.encoder)
    tuned.encoder_info["fine_tuned"] = True
    folder = tuned.save_pretrained(tmp_path / "tuned")
    files = sorted(p.name for p in (folder / "encoder").iterdir())
    assert "model.safetensors" in files and not [f for f in files if f.endswith(hub.PICKLE_SUFFIXES)]
    loaded = HAPSRouter.from_pretrained(folder)
    assert Path(loaded.encoder.encoder_id) == folder / "encoder"
    assert decisions(loaded, (0.0,), n=20) == decisions(router, (0.0,), n=20)


def test_encoder_is_resolved_offline_for_non_default_ids(monkeypatch, tmp_path):
    calls = []

    def fake_load_encoder(name=None, device="auto", revision=None, local_files_only=None, **kw):
        calls.append({"name": name, "revision": revision, "local_files_only": local_files_only, **kw})
        if name == "org/missing":
            raise OSError("We couldn't connect to the Hub and the files are not cached")
        return "encoder"

    monkeypatch.setattr("haps_core.hub.encoder_ref.load_encoder", fake_load_encoder)
    info = {"id": "org/encoder", "revision": "0123abc", "kwargs": {"max_length": 128}}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.resolve_encoder(info, tmp_path)
    assert calls[-1] == {
        "name": "org/encoder",
        "revision": "0123abc",
        "local_files_only": True,
        "max_length": 128,
    }
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.resolve_encoder(info, tmp_path)
    assert calls[-1]["local_files_only"] is None  # online: transformers may download it
    hub.resolve_encoder(info, tmp_path, local_files_only=True)
    assert calls[-1]["local_files_only"] is True
    # the default encoder comes from its installed package, whatever revision was recorded
    hub.resolve_encoder({"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc"}, tmp_path)
    assert calls[-1]["name"] is None and calls[-1]["revision"] is None
    with pytest.raises(
        CheckpointError,
        match=r"encoder 'org/missing' at revision 'r1'.*hf download org/missing "
        r"--revision r1",
    ):
        hub.resolve_encoder({"id": "org/missing", "revision": "r1"}, tmp_path, local_files_only=True)
    with pytest.raises(CheckpointError, match=r"local folder '/nonexistent/bert', which does not exist"):
        hub.resolve_encoder({"id": "/nonexistent/bert"}, tmp_path)
    with pytest.raises(CheckpointError, match=r"`encoder` entry must be \{'id': str"):
        hub.resolve_encoder({"id": "org/encoder", "kwargs": ["max_length", 5]}, tmp_path)


def test_shipped_default_router_loads_without_network(saved, tmp_path, monkeypatch):
    shipped = tmp_path / "default_router"
    monkeypatch.setattr("haps_core.paths.default_router_dir", lambda: shipped)
    with pytest.raises(CheckpointError, match=r"default router is missing .*make default-router"):
        HAPSRouter.from_pretrained("haps-default")
    load_router_folder(saved[0], load_encoder=False).save_pretrained(shipped)
    assert 'from_pretrained("haps-default")' in (shipped / "README.md").read_text()
    assert constants.HF_HUB_OFFLINE  # conftest: no network at all
    r = HAPSRouter.from_pretrained("haps-default")
    assert r.route(["Who wrote Hamlet?"])[0].backend in ("small", "large")
    with pytest.raises(ValueError, match=r"`revision`='v2' applies to Hub repo ids only"):
        HAPSRouter.from_pretrained("haps-default", revision="v2")


def test_bad_names_are_refused(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match=r"neither an existing checkpoint folder nor a Hub repo id"):
        HAPSRouter.from_pretrained("a/b/c")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"is a file"):
        HAPSRouter.from_pretrained(tmp_path / "file.json")
    with pytest.raises(ValueError, match=r"`revision`='main' applies to Hub repo ids only, not to the local"):
        HAPSRouter.from_pretrained(ckpt, revision="main")


# -- the Hub download path, against the local stand-in --------------------------------------
def test_download_pinned_branch_and_commit_then_offline_from_cache(
    stub: HubStub, saved, router, tmp_path, monkeypatch
):
    sha1 = stub.add_folder(REPO, saved[0])
    sha2 = stub.add_folder(REPO, saved[1], branch="v2")
    stub.repos[REPO].refs["main"] = sha1
    cache = tmp_path / "cache"

    main = HAPSRouter.from_pretrained(REPO, cache_dir=cache)
    v2 = HAPSRouter.from_pretrained(REPO, revision="v2", cache_dir=cache)
    pinned = HAPSRouter.from_pretrained(REPO, revision=sha1, cache_dir=cache)
    assert (main.default_cost_weight, v2.default_cost_weight, pinned.default_cost_weight) == (50.0, 7.0, 50.0)
    assert decisions(main, n=20) == decisions(router, n=20) == decisions(pinned, n=20)
    assert decisions(v2, n=20) != decisions(main, n=20)
    paths = [p for _, p in stub.requests]
    assert f"/api/models/{REPO}/revision/main" in paths and f"/api/models/{REPO}/revision/v2" in paths
    assert any(p.startswith(f"/{REPO}/resolve/{sha2}/") for p in paths)  # files fetched by commit
    assert not any("/revision/" + sha1 in p for p in paths)  # a commit sha needs no resolving
    snapshot = cache / "models--haps-test--tiny-router" / "snapshots"
    assert sorted(p.name for p in snapshot.iterdir()) == sorted([sha1, sha2])

    # Offline: every cached revision loads from the cache alone; nothing reaches the server.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    seen = stub.count()
    for revision, expected in ((None, main), ("v2", v2), (sha1, main)):
        again = HAPSRouter.from_pretrained(REPO, revision=revision, cache_dir=cache)
        assert decisions(again, (50.0,), n=20) == decisions(expected, (50.0,), n=20)
    assert stub.count() == seen
    with pytest.raises(
        CheckpointError,
        match=r"'haps-test/tiny-router' at revision 'v3' is not \(fully\) in the "
        r"local Hugging Face cache .*HF_HUB_OFFLINE=1.*hf download haps-test/tiny-router "
        r"--revision v3",
    ):
        HAPSRouter.from_pretrained(REPO, revision="v3", cache_dir=cache)
    # local_files_only does the same with offline mode off
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert HAPSRouter.from_pretrained(REPO, revision="v2", cache_dir=cache, local_files_only=True)
    assert stub.count() == seen


def test_unknown_revision_and_repo_are_named(stub: HubStub, saved, tmp_path):
    stub.add_folder(REPO, saved[0])
    with pytest.raises(
        CheckpointError, match=r"'haps-test/tiny-router' has no revision 'no-such-branch' on the Hub"
    ):
        HAPSRouter.from_pretrained(REPO, revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"repo 'haps-test/absent' does not exist on the Hub"):
        HAPSRouter.from_pretrained("haps-test/absent", cache_dir=tmp_path)


def test_server_dying_mid_file_leaves_nothing_that_loads(stub: HubStub, saved, router, tmp_path, monkeypatch):
    stub.add_folder(REPO, saved[0])
    cache = tmp_path / "cache"
    weights = (saved[0] / "model.safetensors").read_bytes()
    stub.break_file("model.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"downloading router 'haps-test/tiny-router' at revision 'main' "
        r"failed .*nothing incomplete was kept",
    ):
        HAPSRouter.from_pretrained(REPO, cache_dir=cache)
    gets = [p for m, p in stub.requests if m == "GET" and p.startswith("/cdn/")]
    assert len(gets) >= 2  # the cut-off transfer, then huggingface_hub's resume attempt
    repo_cache = cache / "models--haps-test--tiny-router"
    blobs = {p.name for p in (repo_cache / "blobs").iterdir()}
    assert hashlib.sha256(weights).hexdigest() not in blobs
    assert not [p for p in repo_cache.rglob("*") if p.name.endswith(".incomplete")]

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"is not \(fully\) in the local Hugging Face cache"):
        HAPSRouter.from_pretrained(REPO, cache_dir=cache)

    # back online with a healthy server, the same cache completes and loads
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    stub.heal()
    assert decisions(HAPSRouter.from_pretrained(REPO, cache_dir=cache), (0.0,), n=20) == decisions(
        router, (0.0,), n=20
    )


def test_hub_unreachable_uses_the_cache_or_says_so(stub: HubStub, saved, tmp_path):
    stub.add_folder(REPO, saved[0])
    cache = tmp_path / "cache"
    HAPSRouter.from_pretrained(REPO, cache_dir=cache)
    stub.stop()  # connection refused from now on
    assert HAPSRouter.from_pretrained(REPO, cache_dir=cache).default_cost_weight == 50.0
    with pytest.raises(CheckpointError, match=r"the Hub could not be reached .*not in the local cache"):
        HAPSRouter.from_pretrained(REPO, cache_dir=tmp_path / "empty")


def test_repo_with_a_pickle_or_without_a_checkpoint_is_refused(stub: HubStub, saved, tmp_path):
    files = {p.name: p.read_bytes() for p in saved[0].iterdir()}
    stub.add_commit("haps-test/pickled", {**files, "training_args.bin": b"\x80\x04pickle"})
    with pytest.raises(CheckpointError, match=r"contains pickle-format files \['training_args\.bin'\]"):
        HAPSRouter.from_pretrained("haps-test/pickled", cache_dir=tmp_path)
    stub.add_commit("haps-test/card-only", {"README.md": b"# nothing here"})
    with pytest.raises(
        CheckpointError,
        match=r"not a HAPS router checkpoint: the repo has no \['config\.json', "
        r"'model\.safetensors'\]",
    ):
        HAPSRouter.from_pretrained("haps-test/card-only", cache_dir=tmp_path)


# -- push -------------------------------------------------------------------------------------
class FakeHfApi:
    """Records the calls push_to_hub makes (uploads need the real Hub: HfApi is patched here)."""

    calls: list = []
    uploads: list = []

    def __init__(self, token=None, **kwargs):
        FakeHfApi.calls.append(("init", {"token": token, **kwargs}))

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        FakeHfApi.calls.append(("upload_folder", kwargs))
        FakeHfApi.uploads.append(files)

        class Info:
            commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"

        return Info()


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.calls, FakeHfApi.uploads = [], []
    monkeypatch.setattr("huggingface_hub.HfApi", FakeHfApi)
    return FakeHfApi


def test_push_to_hub_sends_the_checkpoint_in_one_commit(router, fake_api, stub: HubStub, tmp_path):
    url = router.push_to_hub(
        "org/router", revision="v2", private=True, commit_message="Add router v2", token="t"
    )
    assert url == "https://huggingface.co/org/router/commit/abc123"
    names = [name for name, _ in fake_api.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder"]
    calls = dict(fake_api.calls)
    assert calls["init"]["token"] == "t"
    assert calls["create_repo"] == {
        "repo_id": "org/router",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert calls["create_branch"] == {
        "repo_id": "org/router",
        "branch": "v2",
        "repo_type": "model",
        "exist_ok": True,
    }
    up = calls["upload_folder"]
    assert (up["repo_id"], up["revision"], up["commit_message"]) == ("org/router", "v2", "Add router v2")
    assert set(hub.ALLOW_PATTERNS) == set(up["allow_patterns"]) and up["repo_type"] == "model"
    (files,) = fake_api.uploads
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    card = files["README.md"].decode()
    assert 'HAPSRouter.from_pretrained("org/router")' in card and "ORG/NAME" not in card

    # what was uploaded downloads and loads back, with the same decisions
    stub.add_commit("org/router", files, branch="v2")
    loaded = HAPSRouter.from_pretrained("org/router", revision="v2", cache_dir=tmp_path)
    assert decisions(loaded, n=20) == decisions(router, n=20)

    fake_api.calls.clear()
    router.push_to_hub("org/router")
    assert [name for name, _ in fake_api.calls] == ["init", "create_repo", "upload_folder"]
    assert dict(fake_api.calls)["upload_folder"]["commit_message"] == "Upload HAPS router"
    with pytest.raises(
        ValueError, match=r"`repo_id` must be a Hub repo id of the form 'org/name', got 'router'"
    ):
        router.push_to_hub("router")
    with pytest.raises(ValueError, match=r"`commit_message` must be a non-empty string"):
        router.push_to_hub("org/router", commit_message=" ")


def test_haps_push_cli(router, ckpt, fake_api, capsys):
    from haps_core.cli import main

    rc = main(
        [
            "push",
            "--router",
            str(ckpt),
            "--repo-id",
            "org/cli-router",
            "--revision",
            "dev",
            "--private",
            "--commit-message",
            "from the CLI",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/org/cli-router/commit/abc123"
    calls = dict(fake_api.calls)
    assert calls["create_repo"]["private"] is True and calls["create_branch"]["branch"] == "dev"
    assert calls["upload_folder"]["commit_message"] == "from the CLI"
    assert 'from_pretrained("org/cli-router")' in fake_api.uploads[0]["README.md"].decode()


# -- model card -------------------------------------------------------------------------------
CARD_PATTERN = r"""---
library_name: haps
license: apache-2\.0
pipeline_tag: text-classification
tags:
- haps
- llm-routing
- router
---

# HAPS router

A \[HAPS\]\(https://arxiv\.org/abs/2601\.05903\) router: .+?

## Model details

- Architecture: `haps` \(shared trunk of width 16, .+?\), ensemble of 2 member\(s\), \d+ parameters\.
- Query encoder: `[^`]+` \(revision `unpinned`, frozen\) plus structural text features, 32-dim.+?
- Checkpoint: `config\.json` \(format version 1\), `model\.safetensors`; no pickle\.
- Catalog: 2 backend\(s\), 4 action\(s\)\.

\| backend \| input USD / 1M tokens \| output USD / 1M tokens \| parameter grid \|
\| --- \| --- \| --- \| --- \|
\| large \| [\d.e+-]+ \| [\d.e+-]+ \| prompt_style: cot; temperature: 0, 1 \|
\| small \| [\d.e+-]+ \| [\d.e+-]+ \| prompt_style: cot; temperature: 0, 1 \|

Prompt styles .+?
\| cot \| Think step by step, then give the final answer on the last line\. \|

## Intended use

.+?

## How to use

```python
from haps_core import HAPSRouter

router = HAPSRouter\.from_pretrained\("org/card"\)
.+?```

LangChain .+?HAPSRunnable\(
    router=router,
    backends=\{
        "large": make_chat_model\("large"\),.*?
        "small": make_chat_model\("small"\),.*?
    \},
\).+?
LlamaIndex .+?HAPSLLM\(
    router=router,
    backends=\{
        "large": make_llm\("large"\),.*?
        "small": make_llm\("small"\),.*?
    \},
\)
```

## Training data

- files: l\.jsonl
- groups: synth
- rows: \d+
- rows_skipped: 0
- queries: 40
.+?
- parameters: \d+
(?:- \w+: \S+
)*
Training hyper-parameters: .*?epochs=3, .+?\.

## Evaluation

`haps eval` on l\.jsonl: 12 held-out test queries, pooled over 1 block\.

\| router \| AIQ \| Q@C_best \| GR \| saving \| saving@95 \|
\| --- \| --- \| --- \| --- \| --- \| --- \|
\| haps \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \| - \|
\| knn \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \|

AIQ: area under the cost-quality frontier .+?

## Limitations

- .+?

## Framework versions

- haps: \S+
- huggingface_hub: \S+
- safetensors: \S+
- torch: \S+
- transformers: \S+

## Citation

.+arXiv:2601\.05903.+
"""


def test_model_card_matches_the_pattern(router, ckpt):
    from huggingface_hub import ModelCard

    card = hub.render_card_for_repo(ckpt, "org/card")
    assert re.fullmatch(CARD_PATTERN, card, flags=re.DOTALL), card
    data = ModelCard(card).data
    assert data.library_name == "haps" and "llm-routing" in data.tags
    assert data.base_model is None  # a local encoder path is not a Hub model id


def test_model_card_front_matter_and_evaluation_shapes(ckpt):
    from huggingface_hub import ModelCard

    from haps_core.evaluation import _COLUMNS
    from haps_core.hub.card import METRIC_TITLES, render_model_card

    assert dict(_COLUMNS) == METRIC_TITLES  # the card shows the columns `haps eval` prints
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["encoder"] = {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": None}
    cfg["evaluation"] = {}
    card = render_model_card(cfg)
    assert ModelCard(card).data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "Not evaluated yet" in card and 'from_pretrained("ORG/NAME")' in card
    cfg["evaluation"] = {"description": "x", "rows": "not a list"}
    with pytest.raises(ValueError, match=r"router `evaluation` must look like \{'description'"):
        render_model_card(cfg)


def test_model_card_limitations_name_the_encoder_kind(ckpt):
    """A static-minilm router's card says what a bag of token vectors misses and that it is built
    locally; any other encoder's card says where the referenced encoder must come from."""
    from haps_core.hub.card import render_model_card

    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["encoder"] = {"id": "static-minilm", "revision": None}
    static = render_model_card(cfg).split("## Limitations", 1)[1].split("## Framework versions")[0]
    assert "bag of token vectors" in static and "no download" in static
    assert "locally or from the" not in static and static.endswith("(no download).\n\n")
    cfg["encoder"] = {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": None}
    other = render_model_card(cfg).split("## Limitations", 1)[1].split("## Framework versions")[0]
    assert "bag of token vectors" not in other and "all-MiniLM-L6-v2` locally or from the" in other
    assert other.endswith("Hub.\n\n")
