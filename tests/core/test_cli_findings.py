"""Issue 14, findings 5, 6 and 8: the `haps` command line's outputs, inputs and flow.

Real parts: argparse CLI, torch training, safetensors checkpoints, a tiny randomly initialised
local encoder; where the wire matters (stdin, stdout, devices, environment) a real subprocess
runs `python -m haps_core.cli`.
"""

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from haps_core.cli import build_parser, main
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

REPO = Path(__file__).resolve().parents[2]
COST_NOTE = "no effect"


def _train(logs: Path, out: Path, enc: Path, *extra: str) -> int:
    argv = ["train", "--logs", str(logs), "--output", str(out), "--encoder", str(enc)]
    return main([*argv, "--epochs", "2", "--members", "1", "--no-cache", *extra])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_findings")
    enc = make_tiny_bert(root / "enc")
    logs = write_jsonl(root / "logs.jsonl", synthetic_rows(100))
    out = root / "router"
    assert _train(logs, out, enc, "--holdout-fraction", "0.3") == 0
    rows = [
        {k: v for k, v in r.items() if k not in ("cost", "input_tokens", "output_tokens")}
        for r in synthetic_rows(20)
    ]
    nc = root / "nc"
    assert _train(write_jsonl(root / "nc.jsonl", rows), nc, enc) == 0
    queries = root / "q.jsonl"
    queries.write_text('{"id": "a", "query": "Who wrote Hamlet?"}\n{"id": "b", "query": "Compute 17 * 23"}\n')
    return {"root": root, "enc": enc, "logs": logs, "router": out, "costless": nc, "queries": queries}


def _cli(*argv: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None, timeout: int = 240):
    """`python -m haps_core.cli ARGV` in a subprocess (this checkout's code), bytes in and out."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [sys.executable, "-m", "haps_core.cli", *argv],
        input=data,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def _decisions(text: str) -> list[dict]:
    return [json.loads(x) for x in text.strip().splitlines()]


# --- finding 5: outputs ---------------------------------------------------------------------------


def test_finding_5_output_dash_is_stdout_not_a_file(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["route", "--router", str(setup["router"]), "--input", str(setup["queries"]), "--output", "-"]
    assert main(argv) == 0
    assert [d["id"] for d in _decisions(capsys.readouterr().out)] == ["a", "b"]
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []


def test_finding_5_input_and_output_dash_through_pipes(setup, tmp_path):
    """The acceptance line: `haps route --input - --output -` over real pipes."""
    proc = _cli(
        "route", "--router", str(setup["router"]), "--input", "-", "--output", "-",
        stdin=setup["queries"].read_text(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert [d["id"] for d in _decisions(proc.stdout.decode())] == ["a", "b"]


def test_finding_5_output_through_a_symlink_keeps_the_symlink(setup, tmp_path, capsys):
    target = tmp_path / "real" / "decisions.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    argv = [
        "route",
        "--router",
        str(setup["router"]),
        "--input",
        str(setup["queries"]),
        "--output",
        str(link),
    ]
    assert main(argv) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert [d["id"] for d in _decisions(target.read_text())] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "real"]  # no temp file left


def test_finding_5_output_to_a_fifo_writes_through_it(setup, tmp_path, capsys):
    fifo = tmp_path / "decisions.fifo"
    os.mkfifo(fifo)
    got: list[str] = []

    def reader() -> None:
        with open(fifo, encoding="utf-8") as fh:
            got.append(fh.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    argv = ["route", "--router", str(setup["router"]), "--query", "Who?", "--output", str(fifo)]
    rc = main(argv)
    # The reader finishes once the CLI closes its end. (The old code renamed a file over the
    # FIFO, leaving the daemon reader blocked on the unlinked FIFO: the join times out and the
    # assertions below fail. Opening the path again to unblock it could itself block forever.)
    thread.join(30)
    assert not thread.is_alive(), "nothing was written through the FIFO"
    assert rc == 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file
    assert _decisions(got[0])[0]["id"] == "query"


def test_finding_5_regular_file_replaced_atomically_keeping_its_mode(setup, tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    out.write_text("old\n")
    out.chmod(0o640)
    assert main(["route", "--router", str(setup["router"]), "--query", "Who?", "--output", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert _decisions(out.read_text())[0]["id"] == "query"
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


def test_finding_5_dev_stdout_as_the_ci_user(setup):
    """As the user the tests (and CI's `make test`) run as: root in this environment, where the
    old code replaced the /dev/stdout symlink with a regular file."""
    uid = os.geteuid()
    before = os.lstat("/dev/stdout")
    proc = _cli(
        "route", "--router", str(setup["router"]), "--query", "Who wrote Hamlet?", "--output", "/dev/stdout"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert _decisions(proc.stdout.decode())[0]["id"] == "query"
    after = os.lstat("/dev/stdout")
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    assert not stat.S_ISREG(after.st_mode)  # never a regular file in its place
    print(f"ran as uid {uid} ({'root' if uid == 0 else 'not root'})")


def test_finding_5_eval_json_dash_is_stdout_alone(setup, capsys):
    argv = [
        "eval",
        "--router",
        str(setup["router"]),
        "--logs",
        str(setup["logs"]),
        "--encoder",
        str(setup["enc"]),
    ]
    argv += ["--n-boot", "20", "--no-cache", "--baselines", "knn,linear", "--no-ablations", "--json", "-"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout is the JSON, nothing else
    assert "haps" in data["pooled"]
    assert "paired bootstrap" in captured.err  # the table went to stderr


# --- finding 6: inputs and flow ---------------------------------------------------------------------


def test_finding_6_query_dash_reads_a_200kb_query_from_stdin(setup):
    long_query = "Who wrote Hamlet? " * 12_000  # ~216 KB: past what one argv string may hold
    assert len(long_query.encode()) > 200_000
    proc = _cli("route", "--router", str(setup["router"]), "--query", "-", stdin=long_query)
    assert proc.returncode == 0, proc.stderr.decode()
    (decision,) = _decisions(proc.stdout.decode())
    assert decision["backend"] in ("small", "large")


def test_finding_6_query_dash_matches_query_text(setup, monkeypatch, capsys):
    router = str(setup["router"])
    assert main(["route", "--router", router, "--query", "Who wrote Hamlet?"]) == 0
    direct = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("Who wrote Hamlet?\n"))
    assert main(["route", "--router", router, "--query", "-"]) == 0
    assert capsys.readouterr().out == direct


def test_finding_6_input_without_output_prints_decisions(setup, capsys):
    assert main(["route", "--router", str(setup["router"]), "--input", str(setup["queries"])]) == 0
    assert [d["id"] for d in _decisions(capsys.readouterr().out)] == ["a", "b"]


def test_finding_6_train_refuses_an_existing_router_without_overwrite(setup, capsys):
    out = setup["router"]
    config = out / "config.json"
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    start = time.perf_counter()
    assert _train(setup["logs"], out, setup["enc"]) == 2
    assert time.perf_counter() - start < 5  # refused before reading or training anything
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err and "already holds a router" in err
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before


def test_finding_6_train_overwrite_replaces_the_router(setup, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    start = time.perf_counter()
    assert _train(setup["logs"], other, setup["enc"], "--overwrite") == 2  # not a router: kept
    assert time.perf_counter() - start < 5 and "not a router" in capsys.readouterr().err
    out = shutil.copytree(setup["router"], tmp_path / "r")
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert _train(setup["logs"], out, setup["enc"], "--overwrite") == 0
    assert (out / "model.safetensors").stat().st_mtime_ns != before


def test_finding_6_version(capsys):
    from haps_core import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"haps {__version__}"


@pytest.mark.parametrize("command", ["train", "route", "eval", "push"])
def test_finding_6_verbosity_on_every_subcommand(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    options = {s for a in sub._actions for s in a.option_strings}
    assert {"-v", "--verbose", "-q", "--quiet"} <= options


def test_finding_6_verbose_and_quiet_after_the_subcommand(setup, tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    router = str(setup["router"])
    assert main(["route", "--router", router, "--query", "Who?", "--output", str(out), "-v"]) == 0
    assert "wrote 1 decisions" in capsys.readouterr().err
    assert main(["route", "-q", "--router", router, "--query", "Who?", "--output", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["-v", "route", "-q", "--router", router, "--query", "Who?"]) == 2
    assert "not both" in capsys.readouterr().err


def test_finding_6_progress_lines_when_stderr_is_not_a_terminal(setup, tmp_path):
    from haps_core.cli.train import _progress_interval

    proc = _cli(
        "train", "--logs", str(setup["logs"]), "--output", str(tmp_path / "r"),
        "--encoder", str(setup["enc"]), "--epochs", "2", "--members", "1", "--no-cache",
        "--progress-every", "0.2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [x for x in proc.stderr.decode().splitlines() if x.startswith("haps train: still training (")]
    assert len(lines) >= 2
    args = build_parser().parse_args(["train", "--logs", "x", "--output", "y", "-q"])
    args.quiet = True
    assert _progress_interval(args) == 0.0  # --quiet: no progress lines


def test_finding_6_push_offline_is_one_line(setup):
    proc = _cli("push", "--router", str(setup["router"]), "--repo-id", "my-org/my-router")
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("haps push")]
    assert "HF_HUB_OFFLINE" in line


def test_finding_6_push_unreachable_is_one_line(setup):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy"}
    proc = _cli("push", "--router", str(setup["router"]), "--repo-id", "my-org/my-router", env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err
    assert "could not reach the Hugging Face Hub" in err


def test_finding_6_costless_router_one_line_per_cost_weight(setup, capsys):
    from haps_core import HAPSRouter

    nc = str(setup["costless"])
    assert main(["route", "--router", nc, "--query", "Who?", "--cost-weight", "0,100"]) == 0
    captured = capsys.readouterr()
    lines = _decisions(captured.out)
    assert [x["cost_weight"] for x in lines] == [0.0, 100.0]
    assert captured.err.count(COST_NOTE) == 1
    router = HAPSRouter.from_pretrained(nc)
    for line in lines:
        (py,) = router.route(["Who?"], cost_weight=line["cost_weight"])
        assert (py.cost_weight, py.backend, py.temperature) == (
            line["cost_weight"],
            line["backend"],
            line["temperature"],
        )


def test_finding_6_costless_router_budget_is_an_error_as_in_python(setup, capsys):
    from haps_core import HAPSRouter

    nc = str(setup["costless"])
    with pytest.raises(ValueError) as exc:
        HAPSRouter.from_pretrained(nc).route(["Who?"], max_cost_per_query=0.01)
    assert main(["route", "--router", nc, "--query", "Who?", "--max-cost-per-query", "0.01"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"haps route: error: {exc.value}"


# --- finding 8: `haps eval` on small logs ------------------------------------------------------------


@pytest.fixture
def no_embedding(monkeypatch):
    """Fails the test if `haps eval` embeds (or so trains) anything."""
    import haps_core.encoders as encoders

    def boom(*args, **kwargs):
        raise AssertionError("embedded before checking for an evaluation block")

    monkeypatch.setattr(encoders, "embed_texts", boom)
    monkeypatch.setattr(encoders, "embedding_encoder", boom)


def test_finding_8_small_log_fails_fast_with_a_dev_fraction_that_works(setup, tmp_path, no_embedding, capsys):
    logs = write_jsonl(tmp_path / "small.jsonl", synthetic_rows(60))
    start = time.perf_counter()
    assert main(["eval", "--logs", str(logs), "--no-cache"]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("haps eval")]
    assert "no evaluation block" in line and ">= 20 queries" in line
    fraction = line.split("`--dev-fraction ")[1].split("`")[0]
    assert float(fraction) > 0.2


def test_finding_8_the_suggested_dev_fraction_works(setup, tmp_path, capsys):
    logs = write_jsonl(tmp_path / "small.jsonl", synthetic_rows(60))
    assert main(["eval", "--logs", str(logs), "--no-cache"]) == 2
    err = capsys.readouterr().err
    fraction = err.split("`--dev-fraction ")[1].split("`")[0]
    argv = ["eval", "--logs", str(logs), "--dev-fraction", fraction, "--encoder", str(setup["enc"])]
    assert main([*argv, "--no-cache", "--n-boot", "20", "--baselines", "knn,linear"]) == 0


def test_finding_8_router_split_remedy_names_holdout_fraction(setup, tmp_path, no_embedding, capsys):
    logs = write_jsonl(tmp_path / "small.jsonl", synthetic_rows(40))
    start = time.perf_counter()
    assert main(["eval", "--router", str(setup["router"]), "--logs", str(logs), "--no-cache"]) == 2
    assert time.perf_counter() - start < 10
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("haps eval")]
    assert "no evaluation block" in line and "fraction 0.3" in line
    assert "--holdout-fraction" in line and "larger log" in line
    assert "`--dev-fraction` does not apply" in line


def test_finding_8_tiny_log_says_no_dev_fraction_helps(tmp_path, no_embedding, capsys):
    logs = write_jsonl(tmp_path / "tiny.jsonl", synthetic_rows(10))
    assert main(["eval", "--logs", str(logs), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "too small for any dev fraction" in err and "larger" in err


def test_finding_8_readme_documents_the_minimum():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert ">= 20 queries" in text and "--dev-fraction" in text and "--holdout-fraction" in text
