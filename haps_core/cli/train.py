"""`haps train`: a router from routing logs through `haps_core.training.fit`, in one process,
in N local workers (``--processes N``) or as one rank of a torchrun job."""

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from haps_core.cli.io import UsageError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("train", help="train a HAPS router on routing logs")
    p.add_argument(
        "--logs",
        action="append",
        required=True,
        metavar="FILE",
        help="routing log in format v1 (JSONL[.gz], CSV, Parquet); repeatable",
    )
    p.add_argument("--prices", default=None, metavar="JSON", help="price table for rows without cost")
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid rows instead of failing")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoint folder to write")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the router (or other files) already in `--output`"
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="when stderr is not a terminal: a progress line every SECONDS (0: none)",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="query encoder: static-minilm (static, distilled from MiniLM; no transformers at run "
        "time), default (MiniLM), an HF name or a path; default MiniLM",
    )
    p.add_argument("--epochs", type=int, default=None, help="default 60 (a warm start: 15)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", type=int, default=5, help="ensemble size")
    p.add_argument("--hidden", type=int, default=256, help="trunk width (the PGN's hidden width too)")
    p.add_argument("--architecture", default="haps", choices=["haps", "flat", "no_pgn"])
    p.add_argument("--no-structural", action="store_true", help="embedding only, no text features")
    p.add_argument(
        "--fine-tune-encoder",
        action="store_true",
        help="train the encoder end to end with the routing objective (GPU advised)",
    )
    p.add_argument("--encoder-lr", type=float, default=2e-5, help="encoder learning rate when fine-tuning")
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.0,
        help="leave this share of queries out (for a later `haps eval --router`)",
    )
    p.add_argument("--holdout-seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument(
        "--prompt-styles",
        default=None,
        metavar="FILE",
        help="JSON object: prompt style name -> system-message text, recorded in the router; "
        "'builtin' for the built-in texts; logged styles left without one are recorded as 'no text'",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel training in N local processes (torch.distributed, gloo on CPU, "
        "NCCL on GPU: one per GPU); for several machines launch `haps train` under torchrun",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="ROUTER",
        help="warm start: update this router (folder, Hub id or haps-default) on `--logs` instead of "
        "training a new one; actions the logs add extend its catalog; bandit rows are weighted 1/propensity",
    )
    p.add_argument(
        "--guard-logs",
        action="append",
        default=None,
        metavar="FILE",
        help="with --init-from: recent records (a bandit log with `propensity`); the update is saved only "
        "if its off-policy estimate there is not worse than the starting router's by more than "
        "--guard-max-se standard errors; repeatable",
    )
    p.add_argument(
        "--guard-max-se", type=float, default=2.0, metavar="K", help="the guard's bound (default 2)"
    )
    p.add_argument("--guard-estimator", default="dr", choices=["dr", "snips"], help="the guard's estimator")
    p.add_argument("--guard-cost-weight", type=float, default=None, help="default: the router's own")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """`haps train`; under ``torchrun --nproc-per-node N -m haps_core.cli train ...`` every rank
    trains on its shard of each batch (haps_core.training.distributed) and rank 0 embeds first
    (the others read its cache), saves and reports."""
    from haps_core.training import distributed as ddp

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        msg = f"`--output` {str(output)!r} exists and is not a folder"
        raise UsageError(msg)
    if output.is_dir() and any(output.iterdir()) and not ddp.launched_by_torchrun():
        if not (output / "config.json").exists():  # save_pretrained would refuse it after training
            msg = f"`--output` {str(output)!r} is not empty and not a router: give a new or empty folder"
            raise UsageError(msg)
        if not args.overwrite:
            msg = f"`--output` {str(output)!r} already holds a router: pass `--overwrite` to replace it"
            raise UsageError(msg)
    if args.progress_every < 0:
        msg = f"`--progress-every` must be >= 0 seconds, got {args.progress_every}"
        raise UsageError(msg)
    if args.guard_logs and not args.init_from:
        msg = "`--guard-logs` judges an update: give the router it updates with `--init-from`"
        raise UsageError(msg)
    if args.init_from and (args.processes > 1 or ddp.launched_by_torchrun() or args.fine_tune_encoder):
        msg = "`--init-from` (a warm start) runs in one process, with the router's own encoder"
        raise UsageError(msg)
    if args.guard_max_se < 0:
        msg = f"`--guard-max-se` must be >= 0 standard errors, got {args.guard_max_se}"
        raise UsageError(msg)
    if args.init_from:
        with progress_lines(_progress_interval(args)):
            return _warm_train(args, output)
    if args.processes < 1:
        msg = f"`--processes` must be a positive integer, got {args.processes}"
        raise UsageError(msg)
    if args.processes > 1:
        if ddp.launched_by_torchrun():
            msg = "`--processes` launches its own workers: do not combine it with torchrun"
            raise UsageError(msg)
        with progress_lines(_progress_interval(args)):
            return _launch_workers(args)
    if not ddp.launched_by_torchrun():
        with progress_lines(_progress_interval(args)):
            return _train(args, output)
    ddp.init_distributed(args.device)
    try:
        return _train(args, output)
    finally:
        ddp.cleanup()


def _progress_interval(args: argparse.Namespace) -> float:
    """Seconds between progress lines: 0 (none) on a terminal (the trainer's bar shows there),
    with `--quiet`, or with ``--progress-every 0``."""
    if args.quiet or sys.stderr.isatty():
        return 0.0
    return float(args.progress_every)


@contextmanager
def progress_lines(every: float) -> Iterator[None]:
    """While the block runs, a line ``haps train: still training (N s)`` on stderr every
    `every` seconds (none for 0), so a log or CI job shows that training is alive."""
    if every <= 0:
        yield
        return
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            elapsed = time.perf_counter() - start
            print(f"haps train: still training ({elapsed:.0f} s)", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name="haps-train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _launch_workers(args: argparse.Namespace) -> int:
    """Runs `haps train` (these arguments, less ``--processes``) in N local torchrun workers.

    Through torch.distributed.run's own launcher, so rendezvous, environment and failure
    handling are torchrun's; the workers' argument list is set after parsing because some of
    ours (``--logs``) are prefixes of torchrun options and would be taken for them.
    """
    import socket

    from torch.distributed.run import get_args_parser, run

    child: list[str] = []
    skip = False
    for item in args.argv:
        if skip:
            skip = False
        elif item == "--processes":
            skip = True
        elif not item.startswith("--processes="):
            child.append(item)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = get_args_parser().parse_args(
        ["--nnodes", "1", "--nproc-per-node", str(args.processes), "--master-addr", "127.0.0.1",
         "--master-port", str(port), "-m", "haps_core.cli"]
    )  # fmt: skip
    launch.training_script_args = child
    try:
        run(launch)
    except Exception as exc:  # torchrun's ChildFailedError names the failed rank and its error
        print(f"haps train: error: a worker failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace, output: Path) -> int:
    from haps_core.logs import read_logs
    from haps_core.model import RouterConfig
    from haps_core.training import TrainingConfig, fit
    from haps_core.training import distributed as ddp
    from haps_core.training.styles import load_prompt_styles

    main = ddp.is_main_process()
    prompt_styles = load_prompt_styles(args.prompt_styles)  # a bad file fails before the logs are read
    training = TrainingConfig(epochs=args.epochs or 60, seed=args.seed, device=args.device)
    start = time.perf_counter()
    log = read_logs(args.logs, prices=args.prices, skip_invalid=args.skip_invalid)
    if log.n_skipped and main:
        print(f"skipped {log.n_skipped} invalid row(s)", file=sys.stderr)
    # embed_dim: fit takes the encoder's
    rconfig = RouterConfig(
        use_structural=not args.no_structural,
        architecture=args.architecture,
        members=args.members,
        hidden=args.hidden,
    )
    router = fit(
        log,
        encoder=args.encoder,
        router_config=rconfig,
        training_config=training,
        holdout_fraction=args.holdout_fraction,
        holdout_seed=args.holdout_seed,
        fine_tune_encoder=args.fine_tune_encoder,
        encoder_lr=args.encoder_lr,
        device=args.device,
        cache=not args.no_cache,
        prompt_styles=prompt_styles,
    )
    ddp.save_on_main(router, output)
    took = time.perf_counter() - start
    s = router.training_summary
    if main:
        world = ddp.get_world_size()
        print(
            f"trained a {rconfig.architecture} router ({s['parameters']} parameters, {rconfig.members} "
            f"members) on {s['train_queries']} queries x {len(log.space)} actions in {took:.1f} s "
            f"on {s['device']}{f' x {world} processes' if world > 1 else ''}; "
            f"held-out regret {s['heldout_regret']:.4f}; saved to {output}"
        )
    return 0


def _warm_train(args: argparse.Namespace, output: Path) -> int:
    """`haps train --init-from ROUTER`: `haps_core.training.warmstart.warm_start`, then the guard."""
    from haps_core.evaluation.guard import update_guard
    from haps_core.logs import read_logs
    from haps_core.model import HAPSRouter
    from haps_core.training.warmstart import warm_config, warm_start

    start = time.perf_counter()
    try:
        prior = HAPSRouter.from_pretrained(args.init_from, device=args.device)
    except (OSError, ValueError) as exc:
        msg = f"`--init-from` {args.init_from!r}: cannot load a router: {exc}"
        raise UsageError(msg) from exc
    log = read_logs(args.logs, prices=args.prices, skip_invalid=args.skip_invalid)
    if log.n_skipped:
        print(f"skipped {log.n_skipped} invalid row(s)", file=sys.stderr)
    overrides = {"seed": args.seed, "device": args.device}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    router = warm_start(prior, log, training_config=warm_config(**overrides))
    ws = router.training_summary["warm_start"]
    print(
        f"updated {args.init_from} on {ws['queries']} queries ({ws['rows']} rows, {ws['bandit_rows']} with "
        f"a propensity) in {time.perf_counter() - start:.1f} s; held-out regret {ws['heldout_regret']:.4f}"
        + (
            f"; released from exploration: {', '.join(ws['released_backends'])}"
            if ws["released_backends"]
            else ""
        )
    )
    if args.guard_logs:
        recent = read_logs(args.guard_logs, prices=args.prices, skip_invalid=args.skip_invalid)
        verdict = update_guard(
            prior, router, recent, cost_weight=args.guard_cost_weight,
            estimator=args.guard_estimator, max_se=args.guard_max_se,
        )  # fmt: skip
        print(verdict.message)
        if not verdict.accepted:
            print(f"haps train: the update was not saved; {output} is unchanged", file=sys.stderr)
            return 3
        router.training_summary["warm_start"]["guard"] = verdict.to_dict()
    router.save_pretrained(output)
    print(f"saved to {output}")
    return 0
