"""Writers of small LAReQA-layout folders for tests (SQuAD format with ``sentences``)."""

import json

import numpy as np


def paragraph(sentences, qas, breaks=True):
    """A paragraph whose context is the sentences joined by single spaces; ``qas`` holds
    ``(id, question, answer_start)``."""
    context = " ".join(sentences)
    result = {"context": context, "sentences": sentences, "qas": [
        {"id": qid, "question": q, "answers": [{"answer_start": start, "text": "x"}]}
        for qid, q, start in qas]}
    if breaks:
        starts = np.cumsum([0] + [len(s) + 1 for s in sentences[:-1]])
        result["sentence_breaks"] = [[int(s), int(s) + len(t)] for s, t in zip(starts, sentences)]
    return result


def write_language(folder, language, *paragraphs, title="t"):
    path = folder / f"{language}.json"
    path.write_text(json.dumps({"version": "1.1", "data": [
        {"title": title, "paragraphs": list(paragraphs)}]}), encoding="utf-8")
    return path
