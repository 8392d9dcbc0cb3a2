"""Models named by a Hugging Face Hub id: `ORG/NAME` or `ORG/NAME@REVISION`.

An id is resolved with huggingface_hub's own download and cache (`snapshot_download`), so the
ecosystem's variables apply as everywhere else: HF_HOME or HF_HUB_CACHE (where the cache is; on
a cluster, a directory on the shared file system), HF_TOKEN (gated and private repositories),
HF_HUB_OFFLINE=1 (the cache only, no network). The result is the snapshot's local directory,
which is what engines and workers are given, and the commit it holds.

Each id is resolved once per process: the first resolution (or the commit a run directory
pinned, `pin`) is what every later `resolve` of the same id returns, so a sweep's checks, its
engines and its judge see one commit even if the branch moves meanwhile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from inocray.errors import InputError

__all__ = ["HubModel", "fetch", "is_hub_id", "pin"]

# ORG/NAME[@REVISION]: the Hub's own repository-name characters; a revision is a branch, tag or commit.
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")

_resolved: dict[str, "HubModel"] = {}  # id -> its resolution in this process


@dataclass(frozen=True)
class HubModel:
    id: str  # as the sweep writes it
    repo: str
    revision: str  # the branch, tag or commit asked for ("main" unless the id says)
    commit: str  # the commit the local directory holds
    path: str  # the snapshot directory in the Hub cache


def is_hub_id(model: str) -> bool:
    """Whether `model` names a Hub repository: ORG/NAME[@REVISION] that is not a local path
    (an existing directory wins, as in transformers)."""
    if not HUB_ID.match(model) or model.startswith("."):
        return False
    try:
        return not Path(model).expanduser().exists()
    except (OSError, ValueError):
        return True


def fetch(model: str) -> HubModel:
    """The local snapshot of Hub id `model`, downloaded into the Hub cache unless it is there;
    InputError (one sentence) for a gated or missing repository or revision, no network and no
    cache, or a repository without a chat template."""
    if model not in _resolved:
        found = _download(model, None)
        _check_chat_template(found)
        _resolved[model] = found
    return _resolved[model]


def pin(model: str, commit: str) -> tuple[HubModel, str]:
    """`model` held at `commit` (what a run directory recorded) for the rest of this process,
    and one sentence when its revision now names another commit ("" when it does not)."""
    now = fetch(model)
    if now.commit == commit:
        return now, ""
    pinned = _download(model, commit)
    _check_chat_template(pinned)
    _resolved[model] = pinned
    return pinned, (f"model {model}: this run directory was begun at Hub commit {commit[:12]} and keeps it, "
                    f"though {now.revision} is now {now.commit[:12]} (a new run directory takes the new commit)")


def _download(model: str, commit: str | None) -> HubModel:
    import huggingface_hub
    from huggingface_hub import constants, errors

    match = HUB_ID.match(model)
    repo, revision = match["repo"], match["revision"] or "main"
    cache = constants.HF_HUB_CACHE
    try:
        path = huggingface_hub.snapshot_download(repo, revision=commit or revision)
    except errors.GatedRepoError:
        raise InputError(f"model {model}: the Hub repository {repo} is gated; accept its terms on huggingface.co "
                         f"and set HF_TOKEN to a token of that account") from None
    except errors.RevisionNotFoundError:
        raise InputError(f"model {model}: the Hub repository {repo} has no revision {commit or revision!r}") from None
    except errors.RepositoryNotFoundError:
        raise InputError(f"model {model}: there is no Hub repository {repo} (or it is private and HF_TOKEN "
                         f"does not reach it)") from None
    except errors.LocalEntryNotFoundError:
        raise InputError(f"model {model}: the Hub cannot be reached (no network, or HF_HUB_OFFLINE=1) and the "
                         f"Hub cache {cache} holds no snapshot of {commit or revision}; download it once where "
                         f"there is network (`hf download {repo}`) or set HF_HUB_CACHE to a cache that has it") from None
    except (errors.HfHubHTTPError, OSError) as e:
        raise InputError(f"model {model}: the Hub download failed ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'})") from None
    return HubModel(model, repo, revision, Path(path).name, path)


def _check_chat_template(found: HubModel) -> None:
    """inocray places every prompt with the model's chat template: a repository without one
    (a base model, not its instruct variant) cannot be used."""
    path = Path(found.path)
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return
    try:
        config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        config = {}
    if not config.get("chat_template"):
        raise InputError(f"model {found.id}: the Hub repository {found.repo} (commit {found.commit[:12]}) has no "
                         f"chat template, which inocray places prompts with; use its chat (instruct) variant")
