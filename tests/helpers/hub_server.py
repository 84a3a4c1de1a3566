"""A local stand-in for the Hugging Face Hub's download endpoints, for tests (stdlib only).

The Hub is unreachable from the test machines, so the download path is exercised against this
server instead: `huggingface_hub.snapshot_download` talks to it exactly as it talks to the Hub.
It serves, for model repos held in memory (commits, branches):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: repo info with the
  resolved commit ``sha`` (what `HfApi.repo_info` reads to resolve a branch);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing (`HfApi.list_repo_tree`),
  with git blob ids and, for LFS files, the LFS sha256 and size;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file. Regular files answer 200 with ``ETag``
  (git blob sha1), ``X-Repo-Commit`` and ``Content-Length``; LFS files (``*.safetensors``, as on
  the Hub) answer 302 to a "CDN" URL on another host name (``localhost`` instead of
  ``127.0.0.1``) with ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, so
  huggingface_hub takes the metadata from the redirect and downloads from the CDN, as it does
  from the real Hub;
- errors with the Hub's ``X-Error-Code`` header (``RepoNotFound`` 401, ``RevisionNotFound``
  404, ``EntryNotFound`` 404), which huggingface_hub turns into its typed exceptions.

`HubStub.break_file` makes the server die in the middle of a file: it sends the full
``Content-Length`` and closes the connection after half the bytes; afterwards the file answers
503 (the backend is gone) until `HubStub.heal`. Every request is recorded in `HubStub.requests`.

The `hub_server` fixture (requested as ``stub``) starts one on a free loopback port and points
huggingface_hub at it (``HF_ENDPOINT`` and the module constants huggingface_hub computed from it
at import time), with offline mode off.
"""

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pkl")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content (what the Hub reports as a file's ``oid``/ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StubRepo:
    """A model repo: files per commit, and branch/tag names pointing to commits."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class HubStub:
    """The in-memory repos and the HTTP server that serves them (see the module docstring)."""

    def __init__(self) -> None:
        self.repos: dict[str, StubRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.broken: set[str] = set()  # paths that die mid-file on their next GET
        self.dead: set[str] = set()  # paths that answer 503 after dying
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content ---------------------------------------------------------------------------
    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Adds a commit holding exactly `files` and points `branch` at it; returns its sha."""
        repo = self.repos.setdefault(repo_id, StubRepo())
        digest = hashlib.sha1()
        digest.update(repo_id.encode() + b"\0" + str(len(repo.commits)).encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        return sha

    def add_folder(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        """Adds a commit with every file under `folder` (relative paths with '/')."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        return self.add_commit(repo_id, files, branch)

    def break_file(self, path: str) -> None:
        """The next GET of `path` sends half of it and drops the connection; then 503s."""
        with self._lock:
            self.broken.add(path)

    def heal(self) -> None:
        with self._lock:
            self.broken.clear()
            self.dead.clear()

    def lfs_path(self, sha256: str) -> tuple[bytes, str] | None:
        for repo in self.repos.values():
            for files in repo.commits.values():
                for path, data in files.items():
                    if hashlib.sha256(data).hexdigest() == sha256:
                        return data, path
        return None

    # -- server ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        """Same server under another host name, so huggingface_hub treats it as a CDN."""
        return f"http://localhost:{self.port}/cdn"

    def start(self) -> "HubStub":
        stub = self

        class Handler(_HubHandler):
            hub = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="hub-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def count(self) -> int:
        with self._lock:
            return len(self.requests)


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubStub
    protocol_version = "HTTP/1.0"  # one request per connection: simple and what the tests need

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # -- routing ---------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        self.hub.record(self.command, self.path)
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(parts[2:])
        elif parts[:1] == ["cdn"] and len(parts) == 2:
            self._cdn(parts[1], head)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
        else:
            self._error(404, None, f"no route for {self.path}")

    def _api(self, parts: list[str]) -> None:
        repo_id = f"{parts[0]}/{parts[1]}"
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return
        rest = parts[2:]
        if not rest or rest[0] == "revision":
            revision = rest[1] if len(rest) > 1 else "main"
            sha = repo.resolve(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return
            files = repo.commits[sha]
            self._json(
                {
                    "_id": sha[:24],
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": sha,
                    "private": False,
                    "tags": [],
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                }
            )
        elif rest[0] == "tree" and len(rest) >= 2:
            sha = repo.resolve(rest[1])
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
                return
            prefix = "/".join(rest[2:])
            self._json(_tree(repo.commits[sha], prefix))
        else:
            self._error(404, None, f"no api route for {self.path}")

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        data = repo.commits[sha].get(path)
        if data is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", commit=sha)
            return
        if path.endswith(LFS_SUFFIXES):
            sha256 = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{self.hub.cdn_url}/{sha256}")
            self.send_header("X-Repo-Commit", sha)
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_blob_sha1(data)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._content(data, path, head, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": sha})

    def _cdn(self, sha256: str, head: bool) -> None:
        found = self.hub.lfs_path(sha256)
        if found is None:
            self._error(404, None, "no such object")
            return
        data, path = found
        self._content(data, path, head, {"ETag": f'"{sha256}"'})

    # -- responses -------------------------------------------------------------------------
    def _content(self, data: bytes, path: str, head: bool, headers: dict[str, str]) -> None:
        hub = self.hub
        if not head and path in hub.dead:
            self._error(503, None, "backend unavailable")
            return
        start = 0
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes=") and byte_range.endswith("-"):
            start = min(int(byte_range[6:-1] or 0), len(data))
        body = data[start:]
        self.send_response(206 if start else 200)
        for key, value in headers.items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if path in hub.broken:
            with hub._lock:
                hub.broken.discard(path)
                hub.dead.add(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return  # the connection closes with half the promised bytes sent
        self.wfile.write(body)

    def _json(self, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code is not None:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _tree(files: dict[str, bytes], prefix: str) -> list[dict[str, Any]]:
    """The recursive tree listing the Hub's ``/tree`` endpoint returns (folders and files)."""
    entries: list[dict[str, Any]] = []
    folders = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    for folder in folders:
        if folder.startswith(prefix):
            entries.append(
                {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder}
            )
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        data = files[path]
        entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries.append(entry)
    return entries


@pytest.fixture(name="stub")
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    """A running `HubStub` that huggingface_hub downloads from, with offline mode off."""
    from huggingface_hub import constants

    stub = HubStub().start()
    url = stub.url
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads these once, at import: the environment alone does not move it.
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        yield stub
    finally:
        stub.stop()
