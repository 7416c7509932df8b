"""``hub_model_id`` (``--push-to-hub REPO``): the trained model folder pushed to the Hugging Face
Hub through ``huggingface_hub`` when the run ends, as ``transformers.Trainer`` does.

Whatever can be known before training is checked then (the id, a token, offline mode), so a long
run does not end in a push that could never work. A push that fails at the end raises
:class:`HubUploadError`, naming the folder on disk that holds the trained model.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HubUploadError", "check_hub_access", "push_model"]


class HubUploadError(RuntimeError):
    """The push to the Hub failed; the trained model is still on disk."""


def check_hub_access(repo_id: str) -> None:
    """ValueError unless a token is configured and the Hub is not switched off (HF_HUB_OFFLINE)."""
    import huggingface_hub
    from huggingface_hub import constants

    where = f"hub_model_id {repo_id!r} (--push-to-hub)"
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"{where}: HF_HUB_OFFLINE is set, so nothing can be pushed; unset it or leave "
                         "the push out")
    if huggingface_hub.get_token() is None:
        raise ValueError(f"{where}: no Hugging Face token; set HF_TOKEN or run `hf auth login` (a token "
                         "with write access)")


def push_model(folder: Path, repo_id: str, *, private: bool = False, commit_message: str) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns the repository's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private or None, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    except Exception as error:  # HTTP, network, permission, offline: all end the same way
        reason = " ".join(str(error).split()) or type(error).__name__
        raise HubUploadError(f"pushing {folder} to the Hub repository {repo_id} failed ({reason}); the "
                             f"trained model is in {folder}") from error
    return str(url)
