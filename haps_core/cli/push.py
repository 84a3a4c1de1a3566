"""`haps push`: upload a router checkpoint folder to the Hugging Face Hub."""

import argparse


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("push", help="upload a router checkpoint to the Hugging Face Hub")
    p.add_argument("--router", required=True, metavar="DIR")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    p.add_argument("--revision", default=None, metavar="BRANCH")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit-message", default="Upload HAPS router")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from haps_core.model import HAPSRouter

    router = HAPSRouter.from_pretrained(args.router)
    url = router.push_to_hub(
        args.repo_id, revision=args.revision, private=args.private or None, commit_message=args.commit_message
    )
    print(url)
    return 0
