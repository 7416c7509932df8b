"""Where evaluation data lives: an explicit folder, or ``$HBT_DATA_DIR/<task>``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DATA_SOURCES", "check_languages", "resolve_data_dir"]

DATA_ENV = "HBT_DATA_DIR"

DATA_SOURCES = {
    "xquad-r": "https://github.com/google-research-datasets/lareqa (folder xquad-r/)",
    # LAReQA published MLQA-R and removed it five days later (commit b91469b); it lives on in
    # the repository's history.
    "mlqa-r": "https://github.com/google-research-datasets/lareqa/tree/"
              "354d67d1cd066854cdfbf5ad0e6105528976141d/mlqa-r (folder mlqa-r/ of commit 354d67d, "
              "removed from the current tree)",
    "tatoeba": "https://github.com/facebookresearch/LASER/tree/main/data/tatoeba/v1",
    "miracl": "https://github.com/project-miracl/miracl (or any BEIR-layout dataset)",
    "mewsli-x": "https://github.com/google-research/google-research/tree/master/"
                "dense_representations_for_entity_retrieval/mel (get-mewsli-x.sh; or XTREME-R's "
                "scripts/download_data.sh, https://github.com/google-research/xtreme)",
    "xm3600": "https://google.github.io/crossmodal-3600/ (captions.zip holds captions.jsonl)",
    "miracl-train": "https://huggingface.co/datasets/miracl/miracl (topics, qrels) and "
                    "https://huggingface.co/datasets/miracl/miracl-corpus (passages)",
}


#: Other names a data folder goes by, tried in order when the first is absent: the LAReQA
#: repository named MLQA-R's folder mlqa-dev-r/ at first, XTREME-R's download script writes
#: Mewsli-X to mewslix/, so copies made by either work as they are.
FOLDER_NAMES = {"mlqa-r": ("mlqa-r", "mlqa-dev-r"), "mewsli-x": ("mewsli-x", "mewslix")}


def resolve_data_dir(data_dir, task: str, subdir: str) -> Path:
    """Return the task's data folder: ``data_dir`` if given, else ``$HBT_DATA_DIR/<subdir>``
    (or the first of ``FOLDER_NAMES[subdir]`` that exists).

    Raises FileNotFoundError saying where to obtain the data when the folder is missing.
    """
    source = DATA_SOURCES.get(task, "")
    if data_dir is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise FileNotFoundError(
                f"no data directory given for {task} and ${DATA_ENV} is not set; pass data_dir= "
                f"or set {DATA_ENV} to a folder holding {subdir}/. Obtain the data from {source}"
            )
        names = FOLDER_NAMES.get(subdir, (subdir,))
        data_dir = next((Path(root) / name for name in names if (Path(root) / name).is_dir()),
                        Path(root) / names[0])
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{task} data directory {str(path)!r} does not exist. Obtain the data from {source}"
        )
    return path


def check_languages(languages, *, found=None) -> list:
    """A non-empty list of distinct language codes (strings)."""
    if isinstance(languages, (str, bytes)):
        raise TypeError("languages must be a list of language codes, not a single string")
    try:
        languages = list(languages)
    except TypeError:
        raise TypeError(f"languages must be a list of language codes, got {languages!r}") from None
    if not languages:
        raise ValueError("languages must not be empty (leave it out to use every language found)")
    for language in languages:
        # A code names a file or folder inside the data folder: "..", "/" or "\\" would leave it.
        if (not isinstance(language, str) or language.strip(".") == ""
                or any(c in language for c in "/\\\0")):
            raise ValueError(f"languages: {language!r} is not a language code (it names a "
                             "file or folder inside the data folder)")
    duplicates = sorted({lang for lang in languages if languages.count(lang) > 1})
    if duplicates:
        raise ValueError(f"languages lists {duplicates} more than once")
    return languages
