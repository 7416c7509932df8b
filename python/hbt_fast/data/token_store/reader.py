"""Reading a token store: memory-mapped columns, checked against the manifest on opening."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import numpy as np

from hbt_fast._checks import is_integer
from hbt_fast.data.files import read_manifest
from hbt_fast.data.pairs import cross_lingual_languages
from hbt_fast.data.token_store.format import (
    ARRAYS, FORMAT, GROUP_NAMES, MANIFEST, NPY_HEADER_BYTES, VERSION, file_sha256, ranges,
    tokenizer_fingerprint)

__all__ = ["TokenStore", "is_token_store"]

SETTINGS = ("query_prefix", "passage_prefix", "max_query_length", "max_passage_length")
# Read only when a batch is gathered, never by the sampler: what ``verify(background=True)``
# may check while the sampler and the model are built (most of a store's bytes are tokens).
GATHERED = ("tokens.npy", "text_offsets.npy", "negatives.npy", "negative_groups.npy")


def is_token_store(path) -> bool:
    """Whether ``path`` is a folder with a token store manifest (complete or not)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


class TokenStore:
    """A prepared store (see :mod:`hbt_fast.data.token_store.format`), memory-mapped.

    Opening checks the manifest and every file's size and header (fast); ``verify=True`` also
    compares every file's SHA-256 with the manifest (one sequential read of the store; see
    :meth:`verify` for checking in the background). A store that fails a check is refused with a
    ``ValueError`` naming the file.

    Serves the trainer as a corpus does: ``language_ids`` / ``group_ids`` (int64, memory-mapped)
    for the sampler, ``language_names``, ``len()``, and token ids of texts by text id."""

    def __init__(self, path, *, verify: bool = False):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"token store {self.path} does not exist")
        if not (self.path / MANIFEST).is_file():
            raise ValueError(f"{self.path} is not a token store (no {MANIFEST}); "
                             "write one with hbt-fast prepare")
        self.manifest = _checked_manifest(self.path / MANIFEST)
        self._verifying: Optional[threading.Thread] = None
        self._verify_error: Optional[str] = None
        self.arrays = {name: self._open(name) for name in ARRAYS}
        self._check_lengths()
        if verify:
            self.verify()
        a = self.arrays
        self.language_ids, self.group_ids = a["languages"], a["groups"]
        self.query_text_ids, self.passage_text_ids = a["queries"], a["passages"]
        self.negative_offsets, self.negative_text_ids = a["negative_offsets"], a["negatives"]
        self.negative_groups = a["negative_groups"]
        self.tokens, self.text_offsets = a["tokens"], a["text_offsets"]
        self.language_names = list(self.manifest["languages"])
        self.num_groups = int(self.manifest["counts"]["groups"])

    # ------------------------------------------------------------------ checks
    def _open(self, name: str) -> np.ndarray:
        file = f"{name}.npy"
        path, entry = self.path / file, self.manifest["files"][file]
        if not path.is_file():
            raise ValueError(f"token store {self.path}: {file} is missing")
        expected = NPY_HEADER_BYTES + entry["length"] * np.dtype(ARRAYS[name]).itemsize
        if path.stat().st_size != expected or entry["bytes"] != expected:
            raise ValueError(f"token store {self.path}: {file} has {path.stat().st_size} bytes, the "
                             f"manifest says {entry['bytes']} ({expected} for {entry['length']} "
                             "values): the file is truncated or damaged; prepare the store again")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"token store {self.path}: {file} is not a readable .npy file "
                             f"({error}); prepare the store again") from None
        if array.dtype != np.dtype(ARRAYS[name]) or array.shape != (entry["length"],):
            raise ValueError(f"token store {self.path}: {file} holds {array.dtype} {array.shape}, the "
                             f"manifest says {ARRAYS[name]} ({entry['length']},); prepare the store again")
        return array

    def _check_lengths(self) -> None:
        counts, a = self.manifest["counts"], self.arrays
        expected = {"queries": counts["pairs"], "passages": counts["pairs"], "languages": counts["pairs"],
                    "groups": counts["pairs"], "negative_offsets": counts["pairs"] + 1,
                    "text_offsets": counts["texts"] + 1, "tokens": counts["tokens"],
                    "negatives": counts["negatives"], "negative_groups": counts["negatives"]}
        for name, length in expected.items():
            if len(a[name]) != length:
                raise ValueError(f"token store {self.path}: {name}.npy has {len(a[name])} values, the "
                                 f"manifest's counts need {length}; prepare the store again")
        ends = {"text_offsets": len(a["tokens"]), "negative_offsets": len(a["negatives"])}
        for name, end in ends.items():
            if a[name][0] != 0 or a[name][-1] != end:
                raise ValueError(f"token store {self.path}: {name}.npy must run from 0 to {end}, "
                                 f"got {a[name][0]} .. {a[name][-1]}; prepare the store again")
        if len(self.manifest["languages"]) != counts["languages"]:
            raise ValueError(f"token store {self.path}: {MANIFEST} lists {len(self.manifest['languages'])} "
                             f"languages, its counts say {counts['languages']}")

    def verify(self, *, background: bool = False) -> None:
        """Compare every file's SHA-256 with the manifest's (reads the whole store once).

        ``background=True`` checks the per-pair columns (what the sampler reads) now and the
        files read only when a batch is gathered (token ids, text offsets, negatives: most of
        the bytes) in a thread, so that the check overlaps building the sampler and loading the
        model. Gathering token ids waits for that thread and raises its error, and
        :meth:`wait_verified` does so explicitly (a trainer calls it before its first step)."""
        files = list(self.manifest["files"])
        later = [file for file in files if file in GATHERED] if background else []
        self._check_digests([file for file in files if file not in later])
        if later:
            self._verifying = threading.Thread(target=self._check_in_background, args=(later,),
                                               name="hbt-token-store-verify", daemon=True)
            self._verifying.start()

    def wait_verified(self) -> None:
        """Wait for a background :meth:`verify`; raise its ``ValueError`` if a file failed."""
        thread = self._verifying
        if thread is not None:
            thread.join()
        if self._verify_error is not None:
            raise ValueError(self._verify_error)

    def _check_in_background(self, files: list) -> None:
        try:
            self._check_digests(files)
        except ValueError as error:
            self._verify_error = str(error)
        except Exception as error:  # e.g. a file removed while being read: never an unchecked pass
            self._verify_error = (f"token store {self.path}: checking its SHA-256 failed "
                                  f"({type(error).__name__}: {error}); prepare the store again")

    def _check_digests(self, files: list) -> None:
        for file in files:
            path, entry = self.path / file, self.manifest["files"][file]
            if not path.is_file():
                raise ValueError(f"token store {self.path}: {file} is missing")
            if file_sha256(path) != entry["sha256"]:
                raise ValueError(f"token store {self.path}: {file} does not match the SHA-256 in "
                                 f"{MANIFEST} (changed or damaged); prepare the store again")

    def check_tokenization(self, tokenizer, settings, *, run: str = "this run") -> None:
        """Refuse the store when ``tokenizer`` or ``settings`` (prefixes, maximum lengths: an
        :class:`hbt_fast.models.EncoderSettings`) differ from those it was prepared with,
        naming each difference."""
        recorded = self.manifest["settings"]
        differences = [f"{name} {recorded[name]!r} (store) vs {getattr(settings, name)!r} ({run})"
                       for name in SETTINGS if recorded[name] != getattr(settings, name)]
        if tokenizer_fingerprint(tokenizer) != self.manifest["tokenizer"]["fingerprint"]:
            differences.insert(0, f"tokenizer: the store was prepared with {self.tokenizer_name!r}'s "
                                  f"tokenizer, {run} has a different one (vocabulary or rules)")
        if differences:
            raise ValueError(f"token store {self.path} does not match {run}: " + "; ".join(differences)
                             + "; prepare the store again with this model and these settings")

    # ------------------------------------------------------------------ corpus interface
    def __len__(self) -> int:
        return int(self.manifest["counts"]["pairs"])

    @property
    def tokenizer_name(self) -> str:
        return self.manifest["tokenizer"]["name"]

    @property
    def source_digest(self) -> str:
        return self.manifest["source"]["digest"]

    @property
    def digest(self) -> str:
        """What ``--resume`` compares: the pairs' content digest, the one
        :class:`hbt_fast.data.PairCorpus` has for the same pairs read in memory (so a run does
        not depend on how its data was read); for a store written before it was recorded, the
        inputs' bytes and column mapping the store was made from."""
        return self.manifest["source"].get("content_digest") or self.source_digest

    @property
    def has_negatives(self) -> bool:
        return len(self.negative_text_ids) > 0

    def cross_lingual_languages(self) -> set:
        """Languages that share at least one group with another language."""
        return cross_lingual_languages(self.language_ids, self.group_ids, self.language_names)

    def group_names(self) -> list:
        """The group labels in id order (reads ``group_names.jsonl``)."""
        import json

        with open(self.path / GROUP_NAMES, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    # ------------------------------------------------------------------ token ids
    def _gather(self, text_ids) -> tuple:
        self.wait_verified()
        text_ids = np.asarray(text_ids, dtype=np.int64)
        starts = np.asarray(self.text_offsets[text_ids])
        lengths = np.asarray(self.text_offsets[text_ids + 1]) - starts
        return np.asarray(self.tokens[ranges(starts, lengths)], dtype=np.int64), lengths

    def token_ids(self, text_ids) -> list:
        """Token ids (int64 arrays) of ``text_ids``, in order: what ``TextEncoder.embed_ids`` takes."""
        flat, lengths = self._gather(text_ids)
        return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []

    def padded(self, text_ids, pad_id: Optional[int], *, left: bool = False) -> dict:
        """``input_ids`` / ``attention_mask`` (torch int64) of ``text_ids``, padded to the longest
        row as ``hbt_fast.models.encoder.pad_ids`` pads (``left`` for left-padding tokenizers)."""
        import torch

        if pad_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token")
        flat, lengths = self._gather(text_ids)
        longest = int(lengths.max()) if len(lengths) else 0
        rows = np.repeat(np.arange(len(lengths)), lengths)
        columns = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        if left:
            columns += np.repeat(longest - lengths, lengths)
        input_ids = np.full((len(lengths), longest), pad_id, dtype=np.int64)
        mask = np.zeros((len(lengths), longest), dtype=np.int64)
        input_ids[rows, columns] = flat
        mask[rows, columns] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def _checked_manifest(path: Path) -> dict:
    return read_manifest(path, kind="token store", format_name=FORMAT, version=VERSION,
                         remedy="prepare the store again", check=_check_manifest_entries)


def _check_manifest_entries(manifest: dict) -> None:
    files, counts = manifest["files"], manifest["counts"]
    for name in ARRAYS:
        entry = files[f"{name}.npy"]
        if not all(is_integer(entry[key]) and entry[key] >= 0 for key in ("length", "bytes")):
            raise TypeError(f"{name}.npy")
        if not isinstance(entry["sha256"], str):
            raise TypeError(f"{name}.npy")
    for key in ("pairs", "texts", "tokens", "negatives", "groups", "languages"):
        if not is_integer(counts[key]) or counts[key] < 0:
            raise TypeError(f"counts.{key}")
    if not isinstance(files[GROUP_NAMES]["sha256"], str):
        raise TypeError(GROUP_NAMES)
    settings = manifest["settings"]
    for name in SETTINGS:
        settings[name]  # noqa: B018 - presence
    if not isinstance(manifest["tokenizer"]["fingerprint"], str) or not isinstance(manifest["languages"], list):
        raise TypeError("tokenizer/languages")
    manifest["source"]["digest"]  # noqa: B018 - presence
