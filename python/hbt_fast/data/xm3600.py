"""Crossmodal-3600 (XM3600) captions: 3,600 images captioned by people in 36 languages, read as
text only (the images are not needed).

Layout, as distributed (``captions.zip`` at https://google.github.io/crossmodal-3600/): one
``captions.jsonl`` whose lines are one image each::

    {"image/key": "000411001ff7dd4f", "ar": {"caption": ["...", "..."], "caption/tokenized": [...],
     ...}, "bn": {...}, ... (36 languages)}

The ``caption`` list (the raw captions) is read; the tokenized variants are not. The captions of
one image, in every language, form one group: they describe the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast.data.files import json_record, text_lines
from hbt_fast.data.locations import DATA_SOURCES, check_languages, resolve_data_dir

__all__ = ["CAPTIONS_FILE", "IMAGE_KEY", "XM3600Data", "load_xm3600"]

CAPTIONS_FILE = "captions.jsonl"
IMAGE_KEY = "image/key"


@dataclass
class XM3600Data:
    """Per language, every caption and the image (its line number in file order, from 0) it
    describes."""

    folder: Path
    languages: list
    image_keys: list
    captions: dict  # language -> list of captions
    images: dict  # language -> int64 array, the image of each caption


def _captions(record: dict, language: str, where: str) -> list:
    entry = record.get(language)
    if entry is None:
        raise ValueError(f"{where}: no captions in language {language!r}")
    captions = entry.get("caption") if isinstance(entry, dict) else None
    if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip()
                                                 for c in captions):
        raise ValueError(f"{where}: {language!r} must be an object whose 'caption' is a list of "
                         "non-empty strings")
    return captions


def load_xm3600(data_dir=None, languages: Optional[Sequence[str]] = None) -> XM3600Data:
    """The captions of ``languages`` (default: every language of the first image, sorted) from
    ``captions.jsonl`` in ``data_dir`` (default ``$HBT_DATA_DIR/xm3600``)."""
    folder = resolve_data_dir(data_dir, "xm3600", "xm3600")
    path = folder / CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; obtain {CAPTIONS_FILE} from "
                                f"{DATA_SOURCES['xm3600']}")
    if languages is not None:
        languages = check_languages(languages)
    keys, captions, images, seen = [], {}, {}, {}
    for line_number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        record = json_record(line, where)
        key = record.get(IMAGE_KEY)
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: no string {IMAGE_KEY!r}")
        if key in seen:
            raise ValueError(f"{where}: image {key!r} already on line {seen[key]}")
        seen[key] = line_number
        if languages is None:
            languages = sorted(name for name in record if name != IMAGE_KEY)
        for language in languages:
            texts = _captions(record, language, where)
            captions.setdefault(language, []).extend(texts)
            images.setdefault(language, []).extend([len(keys)] * len(texts))
        keys.append(key)
    if not keys:
        raise ValueError(f"{path}: no image in the file")
    empty = [lang for lang in languages if not captions.get(lang)]
    if empty:
        raise ValueError(f"{path}: no caption in language(s) {empty}")
    return XM3600Data(folder, list(languages), keys, captions,
                      {lang: np.asarray(images[lang], dtype=np.int64) for lang in languages})
