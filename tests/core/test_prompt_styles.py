"""Prompt styles as catalog data: texts given at training (or opted into by name) are recorded in
the checkpoint and the card; styles without one train, are marked "no text", and are refused at
construction by the integrations unless the caller gives a text. Real training on a tiny encoder."""

import json
import logging

import pytest
from langchain_core.messages import SystemMessage
from tenacity import wait_none

from haps_core.catalog import BUILTIN_PROMPT_STYLES, Action, RoutingSpace
from haps_core.cli import main
from haps_core.dispatch.prompts import checked_prompt_styles
from haps_core.logs import read_logs
from haps_core.model import HAPSRouter
from haps_core.training import TrainingConfig, fit
from haps_core.training.styles import with_prompt_styles
from haps_integrations.langchain import HAPSRunnable
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

FAST = TrainingConfig(epochs=1, progress=False, skip_warmup_steps=5, device="cpu")


def _rows() -> list[dict]:
    rows = synthetic_rows(16)
    return rows + [dict(r, prompt_style="answer_only") for r in rows if r["model"] == "small"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("styles")
    return make_tiny_bert(root / "enc"), write_jsonl(root / "logs.jsonl", _rows())


def _backends() -> dict[str, EchoChatModel]:
    return {"small": EchoChatModel(tag="small"), "large": EchoChatModel(tag="large")}


def test_finding_4_logged_styles_get_no_silent_builtin_and_no_empty_text(files):
    space = read_logs(files[1]).space
    assert dict(space.prompt_styles) == {}  # "answer_only" is NOT given the built-in text
    assert space.styles_without_text == ["answer_only", "cot"]
    assert json.loads(space.to_json())["prompt_styles"] == {"answer_only": None, "cot": None}
    assert RoutingSpace.from_json(space.to_json()) == space
    unknown = RoutingSpace.from_actions([Action.make("m", prompt_style="my_style")])
    assert unknown.styles_without_text == ["my_style"] and dict(unknown.prompt_styles) == {}  # no ""
    with pytest.raises(ValueError, match=r"\['answer_only', 'cot'\], which have no system-message text"):
        checked_prompt_styles(space)
    with pytest.raises(ValueError, match=r"\['answer_only'\]"):
        checked_prompt_styles(space, {"cot": "Reason."})
    with pytest.raises(ValueError, match=r"\['answer_only'\]"):
        checked_prompt_styles(space, {"cot": "Reason.", "answer_only": "  "})  # never an empty text
    given = {"cot": "Reason.", "answer_only": "Letter only."}
    assert checked_prompt_styles(space, given) == given


def test_finding_4_builtin_texts_only_when_opted_into_by_name(files):
    log = read_logs(files[1])
    opted = with_prompt_styles(log, "builtin").space
    assert dict(opted.prompt_styles) == {k: BUILTIN_PROMPT_STYLES[k] for k in ("answer_only", "cot")}
    assert opted.styles_without_text == []
    mine = with_prompt_styles(log, {"cot": "Mine.", "answer_only": "Only the letter."}).space
    assert dict(mine.prompt_styles) == {"cot": "Mine.", "answer_only": "Only the letter."}
    with pytest.raises(ValueError, match="empty system text"):
        with_prompt_styles(log, {"cot": ""})


def test_finding_4_style_without_text_trains_warns_once_and_is_marked(files, tmp_path, caplog):
    enc, logs = files
    with caplog.at_level(logging.WARNING):
        router = fit(logs, encoder=enc, training_config=FAST, cache=False, prompt_styles={"cot": "Reason."})
    warned = [r for r in caplog.records if "no system-message text" in r.getMessage()]
    assert len(warned) == 1 and "['answer_only']" in warned[0].getMessage()
    assert router.space.styles_without_text == ["answer_only"]
    router.save_pretrained(tmp_path / "r")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["space"]["prompt_styles"] == {"answer_only": None, "cot": "Reason."}
    card = (tmp_path / "r" / "README.md").read_text()
    assert "| answer_only | no text" in card and "| cot | Reason. |" in card
    loaded = HAPSRouter.from_pretrained(tmp_path / "r")  # the strict loading checks accept "no text"
    assert loaded.space == router.space
    # the integrations refuse at construction, unless the caller gives the text
    with pytest.raises(ValueError, match=r"\['answer_only'\], which have no system-message text"):
        HAPSRunnable(router=loaded, backends=_backends(), retry_wait=wait_none())
    backends = _backends()
    haps = HAPSRunnable(
        router=loaded, backends=backends, retry_wait=wait_none(), prompt_styles={"answer_only": "Letter."}
    )
    haps.invoke("Who wrote Hamlet? #2")
    sent = [c["messages"][0] for b in backends.values() for c in b.log]
    allowed = (SystemMessage(content="Reason."), SystemMessage(content="Letter."))
    assert sent and all(m in allowed for m in sent)


def test_finding_4_haps_train_prompt_styles_file_is_recorded(files, tmp_path, capsys):
    enc, logs = files
    texts = {"cot": "Work it out step by step.", "answer_only": "Reply with the letter only."}
    (tmp_path / "styles.json").write_text(json.dumps(texts))
    out = tmp_path / "router"
    argv = ["train", "--logs", str(logs), "--output", str(out), "--encoder", str(enc), "--epochs", "1",
            "--members", "1", "--device", "cpu", "--no-cache",
            "--prompt-styles", str(tmp_path / "styles.json")]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["space"]["prompt_styles"] == texts
    card = (out / "README.md").read_text()
    assert "| cot | Work it out step by step. |" in card
    assert checked_prompt_styles(HAPSRouter.from_pretrained(out).space) == texts
    (tmp_path / "bad.json").write_text(json.dumps({"cot": 3}))
    bad = [*argv[:-1], str(tmp_path / "bad.json")]
    bad[bad.index(str(out))] = str(tmp_path / "other")
    capsys.readouterr()
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt style 'cot'" in err[0]
