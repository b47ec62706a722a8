"""``--push_to_hub``: the output folder uploaded to a Hugging Face model repository when training ends.

Everything that can fail is checked before the first model loads (the hub must answer, a token must be
there and accepted), so a run never trains for an hour to fail at the upload. The token is kept out of
everything the run writes (``training_args.json``, the model card's command, the trackers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..configfile import add_bool_flag
from ..errors import UserError
from .run_files import CHECKPOINT_PREFIX, CLASS_IMAGES_DIR

# Not uploaded: checkpoints (optimizer state, many copies of the adapter), generated class images (data, not
# results) and hidden files (temporaries of interrupted writes).
UPLOAD_IGNORE = [f"{CHECKPOINT_PREFIX}*", f"{CHECKPOINT_PREFIX}*/**", f"{CLASS_IMAGES_DIR}/**", ".*", "**/.*"]


class HubError(UserError):
    """``--push_to_hub`` cannot work; the message says why and what to do."""


def add_hub_args(group: argparse._ArgumentGroup) -> None:
    add_bool_flag(
        group,
        "push_to_hub",
        "upload the output folder (adapter, exports, model card, validation images, logs; not "
        "checkpoints or class images) to a Hugging Face model repository at the end",
    )
    group.add_argument(
        "--hub_model_id",
        metavar="USER/NAME",
        help="repository to push to (default: the --output_dir folder name under your account)",
    )
    group.add_argument(
        "--hub_token", metavar="TOKEN", help="Hugging Face token (default: the one `hf auth login` stored, or HF_TOKEN)"
    )


def check_hub(args: argparse.Namespace) -> tuple[str, str]:
    """(repository id, token) for ``--push_to_hub``, or ``HubError`` before any work: offline mode, no token,
    a token the hub rejects, or a hub that does not answer."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        raise HubError(
            "--push_to_hub: the hub cannot be reached in offline mode (HF_HUB_OFFLINE=1 is set); "
            "unset it, or drop --push_to_hub and upload the output folder later"
        )
    token = args.hub_token or get_token()
    if not token:
        raise HubError(
            "--push_to_hub needs a Hugging Face token with write access: run `hf auth login`, set "
            "HF_TOKEN, or pass --hub_token"
        )
    try:
        user = HfApi(token=token).whoami()["name"]
    except HfHubHTTPError as exc:
        raise HubError(
            f"--push_to_hub: the hub rejected the token ({exc}); check --hub_token or `hf auth login`"
        ) from None
    except Exception as exc:  # connection errors, timeouts, DNS: their classes are the HTTP library's (httpx, requests)
        raise HubError(
            f"--push_to_hub: the hub cannot be reached ({type(exc).__name__}: {exc}); check the network, "
            "or drop --push_to_hub and upload the output folder later"
        ) from None
    repo_id = args.hub_model_id or f"{user}/{Path(args.output_dir).resolve().name}"
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"--hub_model_id {repo_id!r}: expected USER/NAME (or ORGANISATION/NAME)")
    return repo_id, token


def upload_files(output_dir: str | Path) -> list[str]:
    """The files ``push_outputs`` uploads, relative to ``output_dir`` (huggingface_hub's own pattern filter)."""
    from huggingface_hub.utils import filter_repo_objects

    root = Path(output_dir)
    every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return list(filter_repo_objects(every, ignore_patterns=UPLOAD_IGNORE))


def push_outputs(output_dir: str | Path, repo_id: str, token: str, message: str) -> str:
    """Create the model repository if needed and upload the output folder; returns the repository's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(output_dir),
        commit_message=message,
        ignore_patterns=UPLOAD_IGNORE,
    )
    return str(url)


def redact_token(argv: list[str], token: str | None) -> list[str]:
    """``argv`` with the token's value replaced, for everything the run records."""
    if not token:
        return list(argv)
    return [("***" if a == token else a.replace(token, "***")) for a in argv]
