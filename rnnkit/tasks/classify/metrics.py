"""Classification metrics: accuracy, per-class precision/recall/F1, macro-F1, the confusion matrix.

Precision of class c: of the texts predicted c, the share that are c; recall: of the texts
that are c, the share predicted c; F1 their harmonic mean (0 when both are 0).  Macro-F1 is
the unweighted mean of the per-class F1 over the classes that occur in the gold labels or the
predictions (a class absent from both says nothing about this split), so that every class
counts alike however rare it is (e.g. Manning, Raghavan & Schütze 2008, *Introduction to
Information Retrieval*, ch. 13.6).
"""

from __future__ import annotations

from typing import Optional, Sequence


def confusion(gold: Sequence[Optional[str]], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts ``[gold][predicted]`` in the order of ``labels`` (pairs with another label: left out)."""
    at = {label: i for i, label in enumerate(labels)}
    table = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        if g in at and p in at:
            table[at[g]][at[p]] += 1
    return table


def classification_metrics(gold: Sequence[Optional[str]], predicted: Sequence[str],
                           labels: Sequence[str]) -> dict:
    """``acc``, ``macro_f1``, ``per_class`` {label: support, precision, recall, f1},
    ``confusion`` (rows gold, columns predicted, in the order of ``labels``) and ``examples``."""
    table = confusion(gold, predicted, labels)
    total = sum(map(sum, table))
    right = sum(table[i][i] for i in range(len(labels)))
    per_class, f1s = {}, []
    for i, label in enumerate(labels):
        support = sum(table[i])
        guessed = sum(row[i] for row in table)
        precision = table[i][i] / guessed if guessed else 0.0
        recall = table[i][i] / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"support": support, "precision": precision, "recall": recall, "f1": f1}
        if support or guessed:
            f1s.append(f1)
    return {"acc": right / total if total else 0.0, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "per_class": per_class, "confusion": table, "examples": total}
