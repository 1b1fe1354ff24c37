import gzip
import random
from collections import defaultdict

import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.translate.lexicon import NULL, IBMModel1, load_lexicon, save_lexicon


def model1_by_loops(pairs, iterations):
    """IBM Model 1 EM written as in Brown et al. (1993) / Koehn (2010, fig. 4.3): dictionaries
    and loops over every pair, NULL word included."""
    t = {}
    for src, tgt in pairs:
        for e in [NULL, *src]:
            for f in tgt:
                t[e, f] = None
    partners = defaultdict(int)
    for e, _ in t:
        partners[e] += 1
    t = {(e, f): 1.0 / partners[e] for e, f in t}
    for _ in range(iterations):
        count, total = defaultdict(float), defaultdict(float)
        for src, tgt in pairs:
            for f in tgt:
                z = sum(t[e, f] for e in [NULL, *src])
                for e in [NULL, *src]:
                    count[e, f] += t[e, f] / z
                    total[e] += t[e, f] / z
        t = {(e, f): count[e, f] / total[e] for e, f in t}
    return t


def test_matches_the_textbook_loops_on_a_random_corpus():
    rng = random.Random(0)
    src_words, tgt_words = [f"e{i}" for i in range(12)], [f"f{i}" for i in range(15)]
    pairs = [([rng.choice(src_words) for _ in range(rng.randint(0, 6))],
              [rng.choice(tgt_words) for _ in range(rng.randint(1, 6))]) for _ in range(60)]
    want = model1_by_loops(pairs, iterations=4)
    model = IBMModel1.fit(pairs, iterations=4)
    assert len(model.prob) == len(want)
    for (e, f), p in want.items():
        assert model.probability(f, e) == pytest.approx(p, rel=1e-12)
    assert model.probability("f0", "no-such-word") == 0.0
    for e in {e for e, _ in want}:  # each t(. | e) is a distribution
        assert sum(p for (s, _), p in want.items() if s == e) == pytest.approx(1.0)


def test_learns_the_word_translations_of_a_small_corpus():
    pairs = [(s.split(), t.split()) for s, t in [
        ("the house", "la casa"), ("the book", "el libro"), ("a book", "un libro"),
        ("a house", "una casa"), ("the flower", "la flor"), ("a flower", "una flor"),
        ("the green house", "la casa verde"), ("the book is green", "el libro es verde"),
    ]]
    model = IBMModel1.fit(pairs, iterations=20)
    best = model.best_translations()
    assert best["house"] == "casa" and best["book"] == "libro" and best["flower"] == "flor"
    assert best["green"] == "verde"
    assert NULL not in best
    assert model.probability("casa", "house") > 0.8


def test_save_and_load_round_trip_and_bad_files(tmp_path):
    table = {"house": "casa", "señor": "mister"}
    path = save_lexicon(table, tmp_path / "lexicon.json.gz")
    assert load_lexicon(path) == table
    bad = tmp_path / "bad.json.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as fh:
        fh.write('["house", "casa"]')
    with pytest.raises(DataError, match="expected a JSON object"):
        load_lexicon(bad)


def test_bad_arguments():
    with pytest.raises(DataError, match="non-empty target"):
        IBMModel1.fit([(["a"], [])])
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        IBMModel1.fit([(["a"], ["b"])], iterations=0)
