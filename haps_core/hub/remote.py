"""The Hugging Face Hub side of checkpoints: router names, offline mode, download and push.

Downloads go through huggingface_hub, which renames a file into the cache only once complete, so an
interrupted download never leaves a file that passes as complete; offline only the cache is read.
huggingface_hub is imported only when used: it is slow to import.
"""

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from haps_core import paths
from haps_core.errors import CheckpointError
from haps_core.hub.files import (
    ALLOW_PATTERNS,
    CONFIG_NAME,
    DEFAULT_ROUTER_NAME,
    DEFAULT_ROUTER_NAMES,
    ENCODER_DIR,
    MINILM_ROUTER_NAME,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    interrupted_save_backups,
    library_version,
)
from haps_core.hub.reading import check_folder

logger = logging.getLogger(__name__)


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``), as huggingface_hub sees it.

    Read from huggingface_hub rather than from the environment so that the library and its
    downloads always agree (huggingface_hub reads the variable once, at import).
    """
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else constants.HF_HUB_OFFLINE)


def is_repo_id(name: str) -> bool:
    """Whether `name` is a valid Hub repo id of the form ``org/name``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _no_revision(revision: str | None, what: str) -> None:
    if revision is not None:
        msg = f"`revision`={revision!r} applies to Hub repo ids only, not to {what}"
        raise ValueError(msg)


def resolve_router_folder(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> tuple[Path, bool]:
    """The checkpoint folder a router name points to, and whether its encoder must load offline.

    Args:
        name_or_path: ``"haps-default"`` (shipped in the package, no network), a checkpoint
            folder, or ``"org/name"`` on the Hub (downloaded into the cache if needed).
        revision: Hub branch, tag or commit sha (Hub ids only; pin a commit to reproduce).
        cache_dir: Hugging Face cache folder (default: huggingface_hub's).
        token: Hub token for private repos.
        local_files_only: read the cache only (also implied by ``HF_HUB_OFFLINE=1``).

    Raises:
        CheckpointError: not found, not cached while offline, or download failed.
        ValueError: `revision` given for a local folder or the default router.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        msg = f"`name_or_path` must be a str or a path, got {type(name_or_path).__name__}"
        raise TypeError(msg)
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name.strip():
        msg = f"`name_or_path` must be 'haps-default', a folder or an 'org/name' repo id, got {name!r}"
        raise ValueError(msg)
    offline = bool(local_files_only) or hub_offline()
    if name in (*DEFAULT_ROUTER_NAMES, MINILM_ROUTER_NAME):
        _no_revision(revision, "the shipped default router")
        folder = paths.minilm_router_dir() if name == MINILM_ROUTER_NAME else paths.default_router_dir()
        if not (folder / CONFIG_NAME).is_file():
            msg = f"the shipped default router is missing from {folder}: run `make default-router`"
            raise CheckpointError(msg)
        return folder, True
    path = Path(name).expanduser()
    if path.is_dir():
        _no_revision(revision, f"the local folder {name!r}")
        return path, offline
    if path.exists():
        msg = f"router {name!r} is a file; expected a checkpoint folder (with {CONFIG_NAME}) or a Hub repo id"
        raise CheckpointError(msg)
    if interrupted_save_backups(path.absolute()):
        check_folder(path.absolute())  # names the previous checkpoint an interrupted save left
    if not is_repo_id(name):
        msg = (
            f"router {name!r} is neither an existing checkpoint folder nor a Hub repo id of the form "
            f"'org/name' (nor {DEFAULT_ROUTER_NAME!r})"
        )
        raise CheckpointError(msg)
    folder = download_router(
        name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=offline
    )
    return folder, offline


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (huggingface_hub's span several)."""
    return " ".join(str(exc).split())


def _fetch_hint(repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None) -> str:
    rev = f", revision={revision!r}" if revision else ""
    cli = f"`hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    cli += (f" --cache-dir {cache_dir}" if cache_dir else "") + "`"
    return f"fetch it once with network access: HAPSRouter.from_pretrained({repo_id!r}{rev}) or {cli}"


def download_router(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local snapshot folder of a router repo, downloaded through huggingface_hub if needed.

    Only the checkpoint's own files are fetched (config, weights, card, ``encoder/``). A failed
    download keeps nothing that could pass for a complete checkpoint: huggingface_hub renames a
    file into the cache only once complete, and a snapshot missing files is reported as not
    cached (it is completed by the next download with network access).

    Raises:
        CheckpointError: not cached while offline, repo or revision not found, download failed,
            or the repo is not a HAPS checkpoint (or lists a pickle-format file).
    """
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only) or hub_offline()
    where = f"router {repo_id!r} at revision {revision or 'main'!r}"
    hub_cache_dir = None if cache_dir is None else os.fspath(cache_dir)  # huggingface_hub takes str
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type="model",
                revision=revision,
                cache_dir=hub_cache_dir,
                token=token,
                local_files_only=offline,
                allow_patterns=ALLOW_PATTERNS,
                library_name="haps",
                library_version=library_version(),
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            msg = (
                f"{where} is not (fully) in the local Hugging Face cache and downloads are off "
                f"(HF_HUB_OFFLINE=1 or local_files_only=True): {_fetch_hint(repo_id, revision, cache_dir)}"
            )
        else:
            cause = exc.__cause__ or exc
            msg = (
                f"{where}: the Hub could not be reached ({type(cause).__name__}: {_one_line(cause)}) and "
                "it is not in the local cache; check the connection (and HF_ENDPOINT) and retry"
            )
        raise CheckpointError(msg) from exc
    except RevisionNotFoundError as exc:
        msg = (
            f"router {repo_id!r} has no revision {revision or 'main'!r} on the Hub "
            "(expected a branch, tag or commit sha of the repo)"
        )
        raise CheckpointError(msg) from exc
    except GatedRepoError as exc:
        msg = f"router repo {repo_id!r} is gated: accept its conditions on the Hub and pass `token`"
        raise CheckpointError(msg) from exc
    except RepositoryNotFoundError as exc:
        msg = f"router repo {repo_id!r} does not exist on the Hub (or is private: pass `token`)"
        raise CheckpointError(msg) from exc
    except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
        msg = (
            f"downloading {where} failed ({type(exc).__name__}: {_one_line(exc)}); nothing incomplete "
            "was kept, retry when the connection is back"
        )
        raise CheckpointError(msg) from exc
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        if offline:
            msg = (
                f"{where} is only partly in the local cache (missing {missing}) and downloads are off: "
                f"{_fetch_hint(repo_id, revision, cache_dir)}"
            )
        else:
            msg = f"{where} is not a HAPS router checkpoint: the repo has no {missing}"
        raise CheckpointError(msg)
    pickles = _listed_pickles(repo_id, folder.name, hub_cache_dir)
    if pickles:
        msg = (
            f"{where} contains pickle-format files {pickles}: HAPS never loads pickles "
            "(only safetensors and JSON); remove them from the repo"
        )
        raise CheckpointError(msg)
    logger.info("router %s resolved to %s", repo_id, folder)
    return folder


def _listed_pickles(repo_id: str, commit: str, cache_dir: str | None) -> list[str]:
    """Pickle-format files in the repo's full listing, from the tree huggingface_hub cached.

    Only the checkpoint's files are downloaded, so a pickle elsewhere in the repo would not be
    seen in the snapshot folder; the listing is on disk already (no extra request). Empty when
    huggingface_hub is too old to cache listings.
    """
    try:
        from huggingface_hub import get_cached_repo_tree
    except ImportError:
        return []
    try:
        files = get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)
    except Exception:  # no cached listing: nothing to check beyond the folder itself
        return []
    return sorted(f.path for f in files if Path(f.path).suffix.lower() in PICKLE_SUFFIXES)


def push_checkpoint(
    save: Callable[[Path, str], Path],
    repo_id: str,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload HAPS router",
    token: str | None = None,
) -> str:
    """Saves a checkpoint to a temporary folder and uploads it in one commit with huggingface_hub.

    Args:
        save: writes the checkpoint into the folder it is given, with the card naming the repo id
            it is given, and returns the folder (`HAPSRouter.save_pretrained` does this).
        repo_id, revision, private, commit_message, token: as `HAPSRouter.push_to_hub` takes them.

    The repo is created if needed (`private` applies only then), the branch `revision` too; the
    card names `repo_id` in its loading snippet. Stale files under ``encoder/`` are deleted in
    the same commit so the repo always holds exactly one checkpoint.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: `repo_id`, `revision` or `commit_message` is malformed.
    """
    from huggingface_hub import HfApi, constants

    if not isinstance(repo_id, str) or not is_repo_id(repo_id):
        msg = f"`repo_id` must be a Hub repo id of the form 'org/name', got {repo_id!r}"
        raise ValueError(msg)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        msg = f"`revision` must be a branch name or None (the default branch), got {revision!r}"
        raise ValueError(msg)
    if not isinstance(commit_message, str) or not commit_message.strip():
        msg = f"`commit_message` must be a non-empty string, got {commit_message!r}"
        raise ValueError(msg)
    api = HfApi(token=token, library_name="haps", library_version=library_version())
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and revision != constants.DEFAULT_REVISION:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="haps-push-") as tmp:
        folder = save(Path(tmp) / "router", repo_id)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
            allow_patterns=ALLOW_PATTERNS,
            delete_patterns=[f"{ENCODER_DIR}/*"],
        )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed router to %s (%s)", repo_id, url)
    return url
