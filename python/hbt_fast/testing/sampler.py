"""Plain numpy reference for HybridSampler: the same semantics, written for reading.

It follows the rules in ``hbt_fast.sampler.sampler``'s docstring step by step with numpy's
Generator (so its random numbers differ from the C++ sampler's; tests compare invariants
and frequencies, not exact rows). Per-row work is plain Python on purpose: this is the
oracle and the benchmark baseline, not a second implementation to optimise.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    exact = weights * total
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in range(total - counts.sum()):
        counts[order[i % len(order)]] += 1
    return counts


class ReferenceHybridSampler:
    def __init__(self, languages, groups, batch_size, *, mode="hybrid", alpha=0.5,
                 lang_exponent=0.0, seed=0, rank=0, world_size=1, drop_last=True):
        self.batch_size, self.rank = batch_size, rank
        self.mode, self.alpha, self.seed = mode, alpha, seed
        self.global_batch = batch_size * world_size
        self.rows_by_language = defaultdict(list)
        self.rows_by_group = defaultdict(dict)  # group -> {language: row}
        for row, (language, group) in enumerate(zip(languages.tolist(), groups.tolist())):
            self.rows_by_language[language].append(row)
            self.rows_by_group[group][language] = row
        self.xx_languages = sorted(
            lang for lang, rows in self.rows_by_language.items() if len(rows) >= self.global_batch
        )
        sizes = np.array([len(self.rows_by_language[lang]) for lang in self.xx_languages], float)
        self.weights = sizes**lang_exponent / np.sum(sizes**lang_exponent) if len(sizes) else sizes
        self.cross_groups = sorted(g for g, rows in self.rows_by_group.items() if len(rows) >= 2)
        xx_pairs = int(sizes.sum())
        xy_pairs = sum(len(self.rows_by_group[g]) for g in self.cross_groups)
        pairs = {"xx": xx_pairs, "xy": xy_pairs,
                 "hybrid": alpha * xx_pairs + (1 - alpha) * xy_pairs, "mixed": len(languages)}[mode]
        rounding = math.floor if drop_last else math.ceil
        self.num_batches = max(1, rounding(pairs / self.global_batch))

    def __len__(self):
        return self.num_batches

    def epoch_batches(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        if self.mode == "hybrid":
            is_xx = rng.random(self.num_batches) < self.alpha
        else:
            is_xx = np.full(self.num_batches, self.mode == "xx")
        quotas = largest_remainder(self.weights, int(is_xx.sum()))
        language_order = rng.permutation(np.repeat(self.xx_languages, quotas).astype(np.int64))
        xx_streams = {lang: self._language_stream(lang, rng) for lang in self.xx_languages}
        # Mode "mixed" has no X-X batches; its batches come from layers over all groups.
        xy_stream = self._mixed_stream(rng) if self.mode == "mixed" else self._cross_stream(rng)
        next_language = iter(language_order.tolist())
        for xx in is_xx:
            rows = next(xx_streams[next(next_language)]) if xx else next(xy_stream)
            yield tuple(r[self.rank * self.batch_size:(self.rank + 1) * self.batch_size] for r in rows)

    def _language_stream(self, language, rng):
        rows = np.array(self.rows_by_language[language])
        while True:
            order = rng.permutation(rows)
            for start in range(0, len(order) - self.global_batch + 1, self.global_batch):
                chunk = order[start:start + self.global_batch]
                yield chunk, chunk

    def _cross_stream(self, rng):
        """X-Y batches: per group the layer's query row and a row in another language."""
        def pair(rows, query):
            partner = (query + 1 + int(rng.integers(len(rows) - 1))) % len(rows)
            return rows[query], rows[partner]
        return self._layer_stream(rng, self.cross_groups, pair)

    def _mixed_stream(self, rng):
        """Mixed batches: per group the layer's row as query and passage, over all groups
        (including those in one language), so the languages of a batch are shuffled together."""
        return self._layer_stream(rng, sorted(self.rows_by_group), lambda rows, query: (rows[query],) * 2)

    def _layer_stream(self, rng, groups, pair):
        """Layer r holds the groups with more than r languages, and a group's query in layer
        r is its ((offset + r) mod count)-th language, so one pass over all layers makes each
        pair of those groups the query once. Each batch is cut from one layer (distinct
        groups); the batches of all layers come in a random order. ``pair(rows, query)``
        gives the (query row, passage row) of a group whose rows (by language) are ``rows``."""
        languages_of = {g: sorted(self.rows_by_group[g]) for g in groups}
        depth = max(len(langs) for langs in languages_of.values())
        layers = [[g for g in groups if len(languages_of[g]) > r] for r in range(depth)]
        batch_ids = [(r, s) for r, layer in enumerate(layers) for s in range(len(layer) // self.global_batch)]
        while True:
            query_offset = {g: int(rng.integers(len(languages_of[g]))) for g in groups}
            layer_orders = [rng.permutation(layer) for layer in layers]
            for index in rng.permutation(len(batch_ids)):
                layer, slot = batch_ids[index]
                queries, passages = [], []
                chunk = layer_orders[layer][slot * self.global_batch:(slot + 1) * self.global_batch]
                for group in chunk.tolist():
                    rows = [self.rows_by_group[group][lang] for lang in languages_of[group]]
                    query_row, passage_row = pair(rows, (query_offset[group] + layer) % len(rows))
                    queries.append(query_row)
                    passages.append(passage_row)
                yield np.array(queries, dtype=np.int64), np.array(passages, dtype=np.int64)
