"""Trainer: a Hugging Face encoder fine-tuned with hybrid batches and the fused InfoNCE loss.

One optimisation step:

1. The sampler gives this rank's ``(query_rows, passage_rows)`` of the global batch.
2. The rank embeds its queries and passages, either in one pass (keeping the graph) or, with
   ``chunk_size``, GradCache-style: chunks embedded without a graph first.
3. Embeddings are all-gathered (no autograd), every rank computes the *global* loss on the
   whole global batch and its gradient with respect to every embedding, and keeps the slice
   of its own rows.
4. The rank back-propagates that slice into the encoder (GradCache re-embeds each chunk with
   the random state of its first pass, so dropout matches), and parameter gradients are
   summed over ranks with ``torch.distributed.all_reduce``.

So the gradient equals the single-process gradient of the same global batch exactly (up to
float rounding), whatever the number of ranks or chunks. Checkpoints hold model, optimizer,
scheduler, sampler position and random states, and are written to a temporary directory
that is renamed into place, so a crash never leaves a half-written "latest" checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from hbt_fast.data import PairCorpus, read_pairs_jsonl
from hbt_fast.sampler import HybridSampler

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
LOG_FILE = "train_log.jsonl"
EVAL_TASKS = ("xquad-r", "mlqa-r")


@dataclass
class TrainConfig:
    """Every setting of a run; ``hbt-fast train`` flags and TOML keys use these names."""

    model: str
    train: str
    output: str
    preset: Optional[str] = None  # "xlmr" (mean pooling) or "labse" (CLS + dense pooler)
    mode: str = "hybrid"
    alpha: float = 0.5
    lang_exponent: float = 0.0
    batch_size: int = 100  # global batch: all ranks together
    lr: float = 3e-5
    weight_decay: float = 0.01
    temperature: float = 0.05
    symmetric: bool = False
    steps: Optional[int] = None
    epochs: Optional[float] = None
    warmup: float = 0.1  # fraction of the steps with linear warm-up
    max_grad_norm: float = 1.0
    bf16: Optional[bool] = None  # None: on for CUDA devices that support it
    gradient_checkpointing: bool = False
    chunk_size: Optional[int] = None  # GradCache chunk (rows per forward)
    prefixes: bool = False  # the study's "Query: " / "Passage: " prefixes
    max_query_length: int = 64
    max_passage_length: int = 256
    seed: int = 0
    eval: Optional[str] = None  # "xquad-r:DIR" or "mlqa-r:DIR"
    eval_every: int = 0  # steps; 0 = only at the end
    eval_metric: str = "multi/map@20"
    save_every: int = 0  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 1
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if self.mode not in ("xx", "xy", "hybrid"):
            raise ValueError(f"mode must be 'xx', 'xy' or 'hybrid', got {self.mode!r}")
        if self.preset not in (None, "xlmr", "labse"):
            raise ValueError(f"preset must be 'xlmr' or 'labse', got {self.preset!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps and epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        for name in ("batch_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.eval is not None:
            parse_eval_spec(self.eval)


def parse_eval_spec(spec: str) -> tuple[str, Path]:
    task, _, directory = spec.partition(":")
    if task not in EVAL_TASKS or not directory:
        raise ValueError(f"eval must look like 'xquad-r:DIR' or 'mlqa-r:DIR', got {spec!r}")
    return task, Path(directory)


# Metrics evaluate_lareqa reports, and whether a higher value is better.
EVAL_METRICS = {"mono/map@20": True, "mono/recall@1": True, "cross/map@20": True,
                "cross/recall@1": True, "multi/map@20": True, "multi/recall@10": True,
                "multi/rank_distance": False}


def check_eval_setup(spec: str, metric: str) -> None:
    """Fail before training when the evaluation could not run at its end."""
    from hbt_fast.evaluate import load_lareqa

    if metric not in EVAL_METRICS:
        raise ValueError(f"eval_metric must be one of {sorted(EVAL_METRICS)}, got {metric!r}")
    task, directory = parse_eval_spec(spec)
    load_lareqa(directory, task=task)  # missing files or fields raise here, naming them


def check_corpus_for_mode(corpus: PairCorpus, mode: str, alpha: float) -> None:
    """Stop before training when the mode needs X-Y batches a language cannot join."""
    needs_cross = mode == "xy" or (mode == "hybrid" and alpha < 1)
    if not needs_cross:
        return
    lonely = sorted(set(corpus.language_names) - corpus.cross_lingual_languages())
    if lonely:
        raise ValueError(
            f"mode {mode!r} builds X-Y batches, but language(s) {lonely} share no group with "
            "another language, so their pairs could never be used there; remove them or use mode 'xx'"
        )


class _RandomState:
    """The CPU and CUDA generator states, to replay dropout in GradCache's second pass."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> None:
    """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class Trainer:
    """Fine-tunes ``config.model`` on ``config.train``; see the module docstring.

    ``encoder`` and ``corpus`` may be given directly (scripts, tests); otherwise they are
    loaded from ``config.model`` and ``config.train`` (JSONL pairs).
    """

    def __init__(self, config: TrainConfig, *, encoder=None, corpus: Optional[PairCorpus] = None):
        from hbt_fast.losses import InfoNCELoss

        config.validate()
        if config.eval:
            check_eval_setup(config.eval, config.eval_metric)
        self.config = config
        init_distributed()
        self.rank, self.world_size = _distributed()
        if config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} must be divisible by the world size {self.world_size}"
            )
        self.corpus = corpus if corpus is not None else read_pairs_jsonl(config.train)
        check_corpus_for_mode(self.corpus, config.mode, config.alpha)
        self.output = Path(config.output)
        self.sampler = HybridSampler(
            self.corpus.language_ids, self.corpus.group_ids, config.batch_size // self.world_size,
            mode=config.mode, alpha=config.alpha, lang_exponent=config.lang_exponent,
            seed=config.seed, rank=self.rank, world_size=self.world_size,
        )
        self.total_steps = config.steps or math.ceil(config.epochs * len(self.sampler))
        self.device = self._pick_device()
        resume_from = self._checkpoint_to_resume()
        torch.manual_seed(config.seed + self.rank)  # before loading: seeds any fresh weights
        self.encoder = self._load_encoder(encoder, resume_from)
        self.loss_fn = InfoNCELoss(temperature=config.temperature, symmetric=config.symmetric)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.step = 0
        self.best_score: Optional[float] = None
        self.timings: dict = {}  # seconds spent in the sampler and the loss in the last step
        # Training draws (dropout) start from the seed whatever loading consumed; a resume
        # replaces this state with the checkpoint's.
        torch.manual_seed(config.seed + self.rank)
        if resume_from is not None:
            self._load_state(resume_from)

    # ------------------------------------------------------------------ set-up
    def _checkpoint_to_resume(self) -> Optional[Path]:
        if self.config.resume:
            checkpoint = self.latest_checkpoint()
            if checkpoint is None:
                raise FileNotFoundError(f"resume: no checkpoint in {self.output / CHECKPOINTS}")
            return checkpoint
        if (self.output / CHECKPOINTS).exists() or (self.output / LOG_FILE).exists():
            raise ValueError(f"output {self.output} already holds a run; pass resume to continue "
                             "it, or choose a new folder")
        return None

    def _pick_device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")

    def _load_encoder(self, encoder, resume_from: Optional[Path]):
        from hbt_fast.models import TextEncoder

        c = self.config
        if resume_from is not None:
            encoder = TextEncoder.from_pretrained(resume_from / "model", show_progress=False)
        elif encoder is None:
            encoder = TextEncoder.from_pretrained(
                c.model, preset=c.preset, prefixes=c.prefixes, show_progress=False,
                max_query_length=c.max_query_length, max_passage_length=c.max_passage_length,
            )
        if c.gradient_checkpointing:
            encoder.model.gradient_checkpointing_enable()
        encoder.to(self.device)
        encoder.train()
        return encoder

    def _make_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, parameter in self.encoder.named_parameters():
            if parameter.requires_grad:
                # Biases and normalisation weights are not decayed (as in BERT and the study).
                (no_decay if parameter.ndim < 2 else decay).append(parameter)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def _make_scheduler(self):
        from transformers import get_linear_schedule_with_warmup

        warmup_steps = int(self.config.warmup * self.total_steps)
        return get_linear_schedule_with_warmup(self.optimizer, warmup_steps, self.total_steps)

    @property
    def use_bf16(self) -> bool:
        if self.config.bf16 is not None:
            return self.config.bf16
        return self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    # ------------------------------------------------------------------ one step
    def _embed(self, texts: list, side: str) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            return self.encoder.embed(texts, side).float()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _chunks(self, texts: list) -> list:
        size = self.config.chunk_size or max(len(texts), 1)
        return [texts[i:i + size] for i in range(0, len(texts), size)]

    def _gather(self, local: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    def _embedding_gradients(self, queries: torch.Tensor, passages: torch.Tensor):
        """Global loss and its gradient with respect to this rank's embeddings."""
        all_queries = self._gather(queries.detach()).requires_grad_()
        all_passages = self._gather(passages.detach()).requires_grad_()
        self._synchronize()
        started = time.perf_counter()
        loss = self.loss_fn(all_queries, all_passages)
        loss.backward()
        self._synchronize()  # so that loss_s is the loss's own time on GPUs too
        self.timings["loss_s"] = time.perf_counter() - started
        rows = slice(self.rank * len(queries), (self.rank + 1) * len(queries))
        return loss.detach(), all_queries.grad[rows], all_passages.grad[rows]

    def _backward_chunked(self, texts: list, side: str, gradient: torch.Tensor, states: list) -> None:
        start = 0
        for chunk, state in zip(self._chunks(texts), states):
            state.restore()
            embeddings = self._embed(chunk, side)
            embeddings.backward(gradient[start:start + len(chunk)])
            start += len(chunk)

    def _embed_without_graph(self, texts: list, side: str):
        states, parts = [], []
        with torch.no_grad():
            for chunk in self._chunks(texts):
                states.append(_RandomState(self.device))
                parts.append(self._embed(chunk, side))
        return torch.cat(parts), states

    def compute_gradients(self, query_texts: list, passage_texts: list) -> float:
        """Leaves the global batch's gradient in ``.grad`` of every parameter; returns the loss."""
        if self.config.chunk_size is None:
            queries = self._embed(query_texts, "query")
            passages = self._embed(passage_texts, "passage")
            loss, query_grad, passage_grad = self._embedding_gradients(queries, passages)
            torch.autograd.backward([queries, passages], [query_grad, passage_grad])
        else:
            queries, query_states = self._embed_without_graph(query_texts, "query")
            passages, passage_states = self._embed_without_graph(passage_texts, "passage")
            loss, query_grad, passage_grad = self._embedding_gradients(queries, passages)
            self._backward_chunked(query_texts, "query", query_grad, query_states)
            self._backward_chunked(passage_texts, "passage", passage_grad, passage_states)
        if self.world_size > 1:
            for parameter in self.encoder.parameters():
                if parameter.grad is not None:
                    dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        return float(loss)

    def train_step(self, query_rows: np.ndarray, passage_rows: np.ndarray) -> float:
        query_texts, passage_texts = self.corpus.texts(query_rows, passage_rows)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_gradients(query_texts, passage_texts)
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

    # ------------------------------------------------------------------ loop
    def train(self) -> dict:
        """Run until ``total_steps``; returns the last evaluation (or an empty dict)."""
        from tqdm.auto import tqdm

        self.output.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not self.config.progress or self.rank != 0)
        last_eval: dict = {}
        while self.step < self.total_steps:
            for query_rows, passage_rows in self._timed_batches():
                started = time.perf_counter()
                batch_kind = self._batch_kind(query_rows, passage_rows)
                loss = self.train_step(query_rows, passage_rows)
                self._log({"step": self.step, "epoch": self.sampler.epoch, "loss": loss,
                           "lr": self.scheduler.get_last_lr()[0], "batch": batch_kind,
                           "seconds": time.perf_counter() - started, **self.timings})
                bar.set_postfix(loss=f"{loss:.4f}", batch=batch_kind)
                bar.update()
                last_eval = self._after_step() or last_eval
                if self.step >= self.total_steps:
                    break
            else:  # the epoch ran out before the last step
                self.sampler.set_epoch(self.sampler.epoch + 1)
        bar.close()
        last_eval = self._finish() or last_eval
        return last_eval

    def _timed_batches(self):
        """The sampler's batches, recording how long each took to produce."""
        batches = iter(self.sampler)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            self.timings["sampler_s"] = time.perf_counter() - started
            yield batch

    def _batch_kind(self, query_rows, passage_rows) -> str:
        if np.array_equal(query_rows, passage_rows):
            return f"xx:{self.corpus.language_names[self.corpus.language_ids[query_rows[0]]]}"
        return "xy"

    def _after_step(self) -> Optional[dict]:
        c = self.config
        result = None
        if c.eval and c.eval_every and self.step % c.eval_every == 0 and self.step < self.total_steps:
            result = self.evaluate()
        if c.save_every and self.step % c.save_every == 0 and self.step < self.total_steps:
            self.save_checkpoint()
        return result

    def _finish(self) -> Optional[dict]:
        # Save first: an evaluation that fails must not cost the trained model.
        self.save_checkpoint()
        if self.rank == 0:
            self._save_model_atomically(self.output / "model")
        self._barrier()
        return self.evaluate() if self.config.eval else None

    # ------------------------------------------------------------------ evaluation, logging
    def evaluate(self) -> Optional[dict]:
        """Evaluate on ``config.eval`` (rank 0), log it, and keep the best model in ``best/``."""
        if not self.config.eval:
            raise ValueError("evaluate() needs config.eval ('xquad-r:DIR' or 'mlqa-r:DIR')")
        result = None
        if self.rank == 0:
            from hbt_fast.evaluate import evaluate_lareqa

            task, directory = parse_eval_spec(self.config.eval)
            self.encoder.eval()
            result = evaluate_lareqa(self.encoder, directory, task=task)
            self.encoder.train()
            section, _, metric = self.config.eval_metric.partition("/")
            score = float(result[section][metric])
            summary = {s: {k: v for k, v in result[s].items() if isinstance(v, float)}
                       for s in ("mono", "cross", "multi") if s in result}
            self._log({"step": self.step, "eval": summary, "score": score})
            higher_is_better = EVAL_METRICS[self.config.eval_metric]
            improved = self.best_score is None or (
                score > self.best_score if higher_is_better else score < self.best_score)
            if improved:
                self.best_score = score
                self._save_model_atomically(self.output / "best")
        self._barrier()
        return result

    def _log(self, record: dict) -> None:
        if self.rank == 0 and (record.get("step", 0) % self.config.log_every == 0 or "eval" in record):
            with open(self.output / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    # ------------------------------------------------------------------ checkpoints
    def _save_model_atomically(self, target: Path) -> None:
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        self.encoder.save(temporary)
        previous = target.with_name(f".{target.name}.old")
        shutil.rmtree(previous, ignore_errors=True)
        if target.exists():
            os.replace(target, previous)
        os.replace(temporary, target)
        shutil.rmtree(previous, ignore_errors=True)

    def _random_states(self) -> dict:
        states = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-N`` (via a temporary directory) and point ``latest`` at it."""
        root = self.output / CHECKPOINTS
        final = root / f"step-{self.step:08d}"
        temporary = root / f".tmp-step-{self.step:08d}"
        if self.rank == 0:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
            self.encoder.save(temporary / "model")
            torch.save({
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "best_score": self.best_score,
                "config": dataclasses.asdict(self.config),
            }, temporary / STATE_FILE)
        self._barrier()
        torch.save(self._random_states(), temporary / f"random-rank{self.rank}.pt")
        self._barrier()
        if self.rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(temporary, final)
            _atomic_write_text(root / LATEST, final.name + "\n")
            self._prune_checkpoints(root, keep=final.name)
        self._barrier()
        return final

    def _prune_checkpoints(self, root: Path, keep: str) -> None:
        steps = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in steps[:-self.config.keep_checkpoints]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def latest_checkpoint(self) -> Optional[Path]:
        pointer = self.output / CHECKPOINTS / LATEST
        if not pointer.is_file():
            return None
        path = self.output / CHECKPOINTS / pointer.read_text(encoding="utf-8").strip()
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"{pointer} names {path}, which holds no {STATE_FILE}")
        return path

    def _load_state(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = state["step"]
        self.best_score = state["best_score"]
        random_file = checkpoint / f"random-rank{self.rank}.pt"
        states = torch.load(random_file, map_location="cpu", weights_only=True)
        torch.set_rng_state(states["torch"])
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], self.device)
        self._drop_log_after(self.step)

    def _drop_log_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: forget their old log lines."""
        log = self.output / LOG_FILE
        if self.rank != 0 or not log.exists():
            return
        kept = [line for line in log.read_text(encoding="utf-8").splitlines()
                if json.loads(line).get("step", 0) <= step]
        _atomic_write_text(log, "".join(line + "\n" for line in kept))


def train(config: TrainConfig, **kwargs) -> dict:
    """Build a :class:`Trainer` and run it (joins a torchrun process group if there is one)."""
    init_distributed()
    return Trainer(config, **kwargs).train()
