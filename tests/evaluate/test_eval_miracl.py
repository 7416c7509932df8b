"""MIRACL/BEIR layout: nDCG@10 and Recall@100 against pytrec_eval on the same run."""

import json

import numpy as np
import pytest

from hbt_fast.evaluate import HashedNgramEncoder, evaluate_beir
from hbt_fast.evaluate.search import search

pytrec_eval = pytest.importorskip("pytrec_eval")


def _write_language(folder, rng, n_docs=150, n_queries=12, trec=True):
    folder.mkdir(parents=True)
    words = [f"w{i}" for i in range(40)]
    docs = {f"doc{i}": " ".join(rng.choice(words, 6)) for i in range(n_docs)}
    docs["q3"] = "a document whose id equals a query id"
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for docid, text in docs.items():
            handle.write(json.dumps({"docid": docid, "title": "T", "text": text}) + "\n")
    queries = {f"q{i}": " ".join(rng.choice(words, 3)) for i in range(n_queries)}
    queries["q3"] = "T " + docs["q3"]  # retrieves the document "q3" at rank 1
    (folder / "queries.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in queries.items()), encoding="utf-8")
    qrels = {q: {f"doc{d}": int(rng.integers(1, 3)) for d in rng.choice(n_docs, 3, replace=False)}
             for q in queries if q != "q5"}  # q5 has no judgement: not scored
    qrels["q3"]["q3"] = 1  # a relevant document with the query's own id must be kept
    lines = [f"{q} Q0 {d} {g}\n" if trec else f"{q}\t{d}\t{g}\n"
             for q, judged in qrels.items() for d, g in judged.items()]
    (folder / ("qrels.txt" if trec else "qrels.tsv")).write_text(
        ("" if trec else "query-id\tcorpus-id\tscore\n") + "".join(lines), encoding="utf-8")
    return docs, queries, qrels


def test_matches_pytrec_eval_and_keeps_self_ids(tmp_path):
    rng = np.random.default_rng(0)
    docs, queries, qrels = _write_language(tmp_path / "xx", rng)
    _write_language(tmp_path / "yy", rng, trec=False)
    encoder = HashedNgramEncoder(dim=64)
    r = evaluate_beir(encoder, tmp_path)
    assert r["languages"] == ["xx", "yy"]
    assert r["per_language"]["xx"]["queries"] == len(queries) - 1
    # Reference: the same exact search, handed to pytrec_eval as dicts.
    judged = [q for q in queries if q in qrels]
    doc_ids = list(docs)
    texts = [f"T {t}" for t in docs.values()]
    result = search(encoder.encode([queries[q] for q in judged]), encoder.encode(texts), 100)
    run = {q: {doc_ids[i]: float(100 - rank) for rank, i in enumerate(row)}
           for q, row in zip(judged, result.ids)}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
    assert r["per_language"]["xx"]["ndcg@10"] == pytest.approx(
        np.mean([v["ndcg_cut_10"] for v in ref.values()]), abs=1e-9)
    assert r["per_language"]["xx"]["recall@100"] == pytest.approx(
        np.mean([v["recall_100"] for v in ref.values()]), abs=1e-9)
    assert 0 < r["mean"]["ndcg@10"] < 1
    assert doc_ids[result.ids[judged.index("q3"), 0]] == "q3"
    assert ref["q3"]["ndcg_cut_10"] > 0  # counted, not silently dropped


def test_missing_files(tmp_path):
    (tmp_path / "xx").mkdir()
    with pytest.raises(FileNotFoundError, match="queries"):
        evaluate_beir(HashedNgramEncoder(), tmp_path)
    with pytest.raises(FileNotFoundError, match="'zz'"):
        evaluate_beir(HashedNgramEncoder(), tmp_path, languages=["zz"])


def test_judgements_of_documents_not_in_the_corpus_warn_with_the_count(tmp_path):
    rng = np.random.default_rng(1)
    _write_language(tmp_path / "xx", rng)
    with open(tmp_path / "xx" / "qrels.txt", "a", encoding="utf-8") as handle:
        handle.write("q1 Q0 gone1 1\nq2 Q0 gone1 2\nq2 Q0 gone2 0\n")
    with pytest.warns(UserWarning, match=r"qrels.txt: 3 judgement\(s\) name 2 document\(s\) not "
                                         r"in .*corpus.jsonl \(e.g. 'gone1'\)"):
        result = evaluate_beir(HashedNgramEncoder(dim=64), tmp_path)
    assert result["per_language"]["xx"]["recall@100"] < 1
