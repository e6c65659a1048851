"""torch.hub's GitHub protocol, as torch 2.14.1 ``torch/hub.py`` speaks it.

- Default branch (``_parse_repo_info``): no ref → ``GET {github}/{owner}/{repo}/tree/main/``;
  any success means ``main``, 404 means ``master``. Without network (or with ``--offline``) the
  folder torch.hub already has, ``OWNER_REPO_main`` then ``OWNER_REPO_master``, decides.
- Ref check (``_validate_not_a_forked_repo``), made before a zipball is downloaded:
  ``GET {github-api}/repos/{owner}/{repo}/branches?per_page=100&page=N`` for N = 1, 2, … until an
  empty page, then the same for ``/tags``; the ref must be a branch or tag name or the prefix of
  one's tip commit (GitHub serves a commit that only a fork has under the parent's URLs too).
  Headers ``Accept: application/vnd.github.v3+json`` and, when ``GITHUB_TOKEN`` is set,
  ``Authorization: token …`` (to the API's origin only; a token the API refuses is dropped and
  the request made again without it, as torch does). A refusal without a token (GitHub's rate
  limit: 60 requests an hour per address) and 429 become one-line errors.
- Zipball (``_get_cache_or_reload``): ``GET {github}/{owner}/{repo}/zipball/{ref}``; an HTTP 300
  (the ref is both a tag and a branch) is asked again as ``zipball/refs/heads/{ref}``.

A GitHub stand-in set by ``MODELHUB_GITHUB_URL`` alone (the API endpoint left upstream) is not
checked against api.github.com, which knows nothing of it: :func:`api_base` is None then.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass

from .. import registry
from ..config import settings
from ..errors import (
    AuthError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
)
from ..frameworks.torch_env import hub_repo_dir

DEFAULT_BRANCHES = ("main", "master")
TOKEN_ENV = "GITHUB_TOKEN"
MAX_PAGES = 1000  # 100 000 branches: a listing that never ends is a broken server


@dataclass(frozen=True)
class RefFound:
    """What the API said of a ref: ``branch``, ``tag`` or ``commit`` (a tip's prefix), and the
    tip commit it names."""

    kind: str
    commit: str


def github_base() -> str:
    """The base URL of GitHub's web host (zipballs, the default-branch probe)."""
    return settings().hub_url("github")


def api_base() -> str | None:
    """The base URL of the GitHub API to check refs against, or None when the GitHub endpoint
    was moved and its API was not (see the module docstring)."""
    endpoints = registry.endpoints()
    api = settings().hub_url("github-api")
    moved = github_base() != endpoints["github"].upstream
    if moved and api == endpoints["github-api"].upstream:
        return None
    return api


def zipball_url(repo: str, git_ref: str) -> str:
    """``{github}/{owner}/{repo}/zipball/{ref}``."""
    return f"{github_base()}/{repo}/zipball/{urllib.parse.quote(git_ref)}"


def default_branch(owner: str, repo: str, *, offline: bool) -> str:
    """``main`` or ``master``, decided as torch.hub decides (module docstring)."""
    from .. import transfer

    cached = [b for b in DEFAULT_BRANCHES if hub_repo_dir(owner, repo, b).is_dir()]
    if offline:
        if cached:
            return cached[0]
        raise OfflineError(
            f"offline: github.com/{owner}/{repo} has no folder in torch.hub's cache to take the "
            f"default branch from; name the ref (torch:{owner}/{repo}:REF/ENTRY) or go online"
        )
    url = f"{github_base()}/{owner}/{repo}/tree/main/"
    try:
        answer = transfer.fetch(url, allow_not_found=True)
    except OfflineError:
        raise
    except NetworkError as exc:
        if cached:
            return cached[0]
        if "HTTP 429" in str(exc):
            raise NetworkError(
                f"github.com is rate limiting requests ({url}): wait, or name the ref "
                f"(torch:{owner}/{repo}:REF/ENTRY) when its folder is in torch.hub's cache"
            ) from None
        raise
    return "master" if answer.status == 404 else "main"


def check_ref(owner: str, repo: str, git_ref: str) -> RefFound:
    """The ref as a branch, tag or tip commit of ``owner/repo``.

    Raises ModelNotFoundError (exit 3) naming the ref when it is none of those, or when the API
    knows no such repository; AuthError (exit 4) / NetworkError (exit 6) when the API refuses
    or rate-limits us.
    """
    api = api_base()
    assert api is not None  # the caller checks api_base() first
    headers = {"Accept": "application/vnd.github.v3+json"}
    token = os.environ.get(TOKEN_ENV)
    if token is not None:
        headers["Authorization"] = f"token {token}"
    for kind, listing in (("branch", "branches"), ("tag", "tags")):
        for page in range(1, MAX_PAGES + 1):
            url = f"{api}/repos/{owner}/{repo}/{listing}?per_page=100&page={page}"
            items = _api_list(url, headers, f"{owner}/{repo}")
            if not items:
                break
            for item in items:
                name, sha = _name_and_sha(item)
                if name == git_ref:
                    return RefFound(kind, sha)
                if sha.startswith(git_ref):
                    return RefFound("commit", sha)
        else:
            raise ModelhubError(f"the GitHub API lists more than {MAX_PAGES} pages of {listing}")
    raise ModelNotFoundError(
        f"{git_ref!r} is neither a branch, a tag nor the tip commit of one in "
        f"github.com/{owner}/{repo}; a commit of a fork must be pulled from the fork "
        f"(torch:FORK_OWNER/{repo}:{git_ref}/ENTRY)"
    )


def _name_and_sha(item: object) -> tuple[str | None, str]:
    if not isinstance(item, dict):
        return None, ""
    commit = item.get("commit")
    sha = commit.get("sha") if isinstance(commit, dict) else None
    name = item.get("name")
    return (name if isinstance(name, str) else None), (sha if isinstance(sha, str) else "")


def _api_list(url: str, headers: dict[str, str], repo: str) -> list[object]:
    """One page of the API as a JSON list; ``headers`` loses a refused token for good."""
    from .. import transfer

    try:
        try:
            answer = transfer.fetch(url, headers=headers)
        except AuthError:
            if "Authorization" not in headers:
                raise
            del headers["Authorization"]  # as torch: a refused token, then anonymously
            answer = transfer.fetch(url, headers=headers)
    except AuthError:
        raise AuthError(
            f"the GitHub API refused to list the refs of {repo} (HTTP 401/403, usually its rate "
            f"limit of 60 requests an hour without a token): set {TOKEN_ENV}, or pull a ref "
            "whose folder is already in torch.hub's cache"
        ) from None
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"github.com/{repo}: the GitHub API knows no such repository (or it is private)"
        ) from None
    except OfflineError:
        raise
    except NetworkError as exc:
        if "HTTP 429" not in str(exc):
            raise
        raise NetworkError(
            f"the GitHub API is rate limiting the ref check of {repo} (HTTP 429): wait, set "
            f"{TOKEN_ENV} for a higher limit, or pull a ref already in torch.hub's cache"
        ) from None
    try:
        items = json.loads(answer.body)
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise ModelhubError(f"the GitHub API answered {url} with something else than a JSON list")
    return items
