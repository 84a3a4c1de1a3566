"""`haps push`: upload a router checkpoint folder to the Hugging Face Hub; the Hub offline,
unreachable or refusing is one line on stderr (exit code 2), not a traceback."""

import argparse
import os

from haps_core.cli.io import UsageError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("push", help="upload a router checkpoint to the Hugging Face Hub")
    p.add_argument("--router", required=True, metavar="DIR")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    p.add_argument("--revision", default=None, metavar="BRANCH")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit-message", default="Upload HAPS router")
    p.set_defaults(func=cmd_push)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cmd_push(args: argparse.Namespace) -> int:
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    from haps_core.model import HAPSRouter

    router = HAPSRouter.from_pretrained(args.router)
    try:
        url = router.push_to_hub(
            args.repo_id,
            revision=args.revision,
            private=args.private or None,
            commit_message=args.commit_message,
        )
    except OfflineModeIsEnabled:
        offline = os.environ.get("HF_HUB_OFFLINE", "")
        msg = f"the Hugging Face Hub is off (HF_HUB_OFFLINE={offline}): unset it to push {args.repo_id!r}"
        raise UsageError(msg) from None
    except LocalTokenNotFoundError:
        msg = "no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again"
        raise UsageError(msg) from None
    except HfHubHTTPError as exc:
        msg = f"the Hugging Face Hub refused the upload to {args.repo_id!r}: {_first_line(exc)}"
        raise UsageError(msg) from None
    except (httpx.TransportError, OSError) as exc:  # refused, unresolved or timed out
        msg = (
            f"could not reach the Hugging Face Hub to push {args.repo_id!r} "
            f"({type(exc).__name__}): check the network (or HF_ENDPOINT)"
        )
        raise UsageError(msg) from None
    print(url)
    return 0
