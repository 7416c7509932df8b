"""Tatoeba test sets (LASER layout): ``tatoeba.<xxx>-eng.<xxx>`` and ``tatoeba.<xxx>-eng.eng``.

The two files of a language are line-aligned: line ``i`` of one is the translation of line
``i`` of the other. Tatoeba names languages by ISO 639-3 codes; :func:`tatoeba_code` maps the
ISO 639-1 codes other data sets use (XQuAD-R's ``de``, MIRACL's ``sw``) onto them.

Low-resource languages (:data:`TATOEBA_LOW_RESOURCE`): the 40 languages with fewer than 1,000
pairs in LASER's Tatoeba v1 test set. LASER took 1,000 English sentences and their translations
wherever Tatoeba had them, so fewer pairs means Tatoeba itself holds fewer than 1,000
translations of English sentences into that language. The list is frozen from those upstream
files, so a held-out part of them (``convert-tatoeba``), with fewer lines, classifies alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hbt_fast.data.files import text_lines
from hbt_fast.data.locations import check_languages, resolve_data_dir

__all__ = ["ISO_639_1_TO_TATOEBA", "LOW_RESOURCE_PAIRS", "TATOEBA_LOW_RESOURCE", "TatoebaData",
           "load_tatoeba", "tatoeba_code", "tatoeba_languages"]

_PAIR = re.compile(r"^tatoeba\.([a-z]+)-eng\.\1$")

#: Fewer pairs than this in LASER's test set makes a language low-resource (see the module doc).
LOW_RESOURCE_PAIRS = 1000
TATOEBA_LOW_RESOURCE = (
    "amh", "ang", "arq", "arz", "ast", "awa", "bos", "ceb", "cha", "csb", "cym", "dsb", "fao",
    "fry", "gla", "gsw", "hsb", "hye", "jav", "kat", "kaz", "khm", "kur", "mal", "max", "mon",
    "nov", "orv", "pms", "slv", "swg", "swh", "tam", "tel", "tha", "tuk", "tzl", "uzb", "xho",
    "yid",
)

#: ISO 639-1 code -> the code of the same language in Tatoeba's file names. Where ISO 639-3
#: splits a macrolanguage, Tatoeba names the individual language: zh -> cmn (Mandarin),
#: fa -> pes, ms -> zsm, lv -> lvs, sw -> swh, no/nb -> nob; fil (ISO 639-2, as XM3600 spells
#: Filipino) -> tgl. Tatoeba languages with no ISO 639-1 code (ang, arq, yue, ...) have no entry.
ISO_639_1_TO_TATOEBA = {
    "af": "afr", "am": "amh", "ar": "ara", "az": "aze", "be": "bel", "bg": "bul", "bn": "ben",
    "br": "bre", "bs": "bos", "ca": "cat", "ch": "cha", "cs": "ces", "cy": "cym", "da": "dan",
    "de": "deu", "el": "ell", "en": "eng", "eo": "epo", "es": "spa", "et": "est", "eu": "eus",
    "fa": "pes", "fi": "fin", "fil": "tgl", "fo": "fao", "fr": "fra", "fy": "fry", "ga": "gle",
    "gd": "gla", "gl": "glg", "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "hye",
    "ia": "ina", "id": "ind", "ie": "ile", "io": "ido", "is": "isl", "it": "ita", "ja": "jpn",
    "jv": "jav", "ka": "kat", "kk": "kaz", "km": "khm", "ko": "kor", "ku": "kur", "kw": "cor",
    "la": "lat", "lt": "lit", "lv": "lvs", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar",
    "ms": "zsm", "nb": "nob", "nl": "nld", "nn": "nno", "no": "nob", "oc": "oci", "pl": "pol",
    "pt": "por", "ro": "ron", "ru": "rus", "sk": "slk", "sl": "slv", "sq": "sqi", "sr": "srp",
    "sv": "swe", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tk": "tuk", "tl": "tgl",
    "tr": "tur", "tt": "tat", "ug": "uig", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie",
    "xh": "xho", "yi": "yid", "zh": "cmn",
}


def tatoeba_code(language: str) -> str:
    """Tatoeba's code for ``language``: an ISO 639-1 code mapped, anything else as it is."""
    return ISO_639_1_TO_TATOEBA.get(language, language)


@dataclass
class TatoebaData:
    """Per language, the sentences in that language and their English translations."""

    folder: Path
    languages: list
    sentences: dict  # language -> list of sentences
    english: dict  # language -> list of English sentences, line-aligned with ``sentences``


def tatoeba_languages(folder) -> list:
    """Language codes with a ``tatoeba.<xxx>-eng.<xxx>`` file in ``folder``, sorted."""
    return sorted(m.group(1) for p in Path(folder).iterdir() if (m := _PAIR.match(p.name)))


def _read_lines(path: Path, language: str) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"language {language!r}: file {path} does not exist")
    return [line for _, line in text_lines(path)]


def _load_pair(folder: Path, language: str):
    source = _read_lines(folder / f"tatoeba.{language}-eng.{language}", language)
    english = _read_lines(folder / f"tatoeba.{language}-eng.eng", language)
    if len(source) != len(english):
        raise ValueError(
            f"language {language!r}: {len(source)} lines in tatoeba.{language}-eng.{language} but "
            f"{len(english)} in tatoeba.{language}-eng.eng (files must be line-aligned)"
        )
    if not source:
        raise ValueError(f"language {language!r}: tatoeba files are empty")
    return source, english


def load_tatoeba(data_dir=None, languages: Optional[Sequence[str]] = None) -> TatoebaData:
    """Read the given languages (default: every pair of files in the folder)."""
    folder = resolve_data_dir(data_dir, "tatoeba", "tatoeba")
    if languages is None:
        languages = tatoeba_languages(folder)
        if not languages:
            raise FileNotFoundError(f"no tatoeba.<xxx>-eng.<xxx> files in {folder}")
    else:
        languages = check_languages(languages)
    sentences, english = {}, {}
    for language in languages:
        sentences[language], english[language] = _load_pair(folder, language)
    return TatoebaData(folder, list(languages), sentences, english)
