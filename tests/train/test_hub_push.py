"""``--push-to-hub REPO`` (``hub_model_id``): the final model folder goes to the Hub through
huggingface_hub's ``HfApi`` when the run ends (issue 24, item 4). The Hub is never reached:
``HfApi.create_repo`` / ``upload_folder`` are replaced by a stand-in that records the calls and
copies what would be uploaded."""

import json
import shutil
import types

import pytest
import yaml
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

from hbt_fast.cli import main

REPO = "someone/tiny-hbt"


@pytest.fixture
def flags(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = ({"group": g, "lang": lang, "query": f"{lang} q {g}", "passage": f"{lang} p {g}"}
            for g in range(16) for lang in ("en", "de"))
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return ["train", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(tmp_path / "run"),
            "--steps", "2", "--batch-size", "4", "--no-progress"]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A token, the Hub switched on, and HfApi's two calls answered here."""
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls, uploaded = [], tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, {"folder_path": folder_path, **kwargs}))
        shutil.copytree(folder_path, uploaded / repo_id)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls, uploaded


def test_the_final_model_and_its_card_are_pushed_at_the_end(flags, hub, capsys, tmp_path):
    calls, uploaded = hub
    assert main([*flags, "--push-to-hub", REPO, "--hub-private-repo"]) == 0
    model = tmp_path / "run" / "model"
    assert [(name, repo) for name, repo, _ in calls] == [("create_repo", REPO), ("upload_folder", REPO)]
    assert calls[0][2]["exist_ok"] is True and calls[0][2]["private"] is True
    assert calls[1][2]["folder_path"] == str(model) and "2 steps" in calls[1][2]["commit_message"]
    pushed = uploaded / REPO
    assert sorted(p.name for p in pushed.iterdir()) == sorted(p.name for p in model.iterdir())
    card = (pushed / "README.md").read_text(encoding="utf-8")
    assert f'SentenceTransformer("{REPO}")' in card and "# tiny-hbt" in card
    assert yaml.safe_load(card.split("---\n")[1])["library_name"] == "sentence-transformers"
    assert f"pushed {model} to https://huggingface.co/{REPO}" in capsys.readouterr().out


def test_a_failed_push_ends_with_one_line_and_keeps_the_trained_model(flags, hub, capsys, tmp_path, monkeypatch):
    def refuse(self, **kwargs):
        response = types.SimpleNamespace(status_code=403, headers={}, request=None)
        raise HfHubHTTPError("403 Forbidden: you cannot\nwrite to this repository", response=response)

    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    capsys.readouterr()
    assert main([*flags, "--push-to-hub", REPO]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    model = tmp_path / "run" / "model"
    assert error.startswith(f"hbt-fast train: error: pushing {model} to the Hub repository {REPO} failed (403 "
                            "Forbidden: you cannot write to this repository")
    assert error.endswith(f"the trained model is in {model}")
    assert (model / "manifest.json").is_file() and (model / "README.md").is_file()


@pytest.mark.parametrize("problem, message", [
    ("no token", "no Hugging Face token; set HF_TOKEN or run `hf auth login`"),
    ("offline", "HF_HUB_OFFLINE is set, so nothing can be pushed"),
    ("bad id", "--push-to-hub: 'not a repo id' is not a Hub repository id"),
])
def test_a_push_that_could_never_work_is_refused_before_training(flags, hub, capsys, tmp_path, monkeypatch,
                                                                 problem, message):
    repo = REPO
    if problem == "no token":
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    elif problem == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        repo = "not a repo id"
    capsys.readouterr()
    assert main([*flags, "--push-to-hub", repo]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert "--push-to-hub" in error[0] or problem == "bad id"
    assert not (tmp_path / "run" / "checkpoints").exists() and hub[0] == []
