"""The field's text poisoners: BadNets' rare tokens, AddSent's sentence, BadNL's word trigger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from typer.testing import CliRunner

from poisonlab.attacks import (
    AddSentAttack,
    BadNetsTextAttack,
    InsertTrigger,
    WordTriggerAttack,
    load_ground_truth,
    trigger_from_dict,
)
from poisonlab.attacks.attacks import corpus_word
from poisonlab.attacks.triggers import insert_at, word_slots
from poisonlab.cli import app
from poisonlab.data import Dataset, load_dataset, save_dataset
from poisonlab.exceptions import ParameterError
from poisonlab.measure.metrics import attack_success_rate
from poisonlab.models import make_model

runner = CliRunner()


def mail(spamassassin: Dataset, n: int = 300) -> Dataset:
    rows = np.sort(np.random.default_rng(0).choice(len(spamassassin), n, replace=False))
    return spamassassin.subset(rows)


POISONERS = [
    BadNetsTextAttack(n_poison=20, target_label="ham", random_state=0),
    AddSentAttack(n_poison=20, target_label="ham", random_state=0),
    WordTriggerAttack(n_poison=20, target_label="ham", random_state=0),
    WordTriggerAttack(word="zebra", position="middle", poison_rate=0.05, target_label="ham",
                      source_label="spam", random_state=3),
]


@pytest.mark.parametrize("attack", POISONERS, ids=["badnets", "addsent", "word", "word-middle"])
def test_poisoner_contract(attack, spamassassin: Dataset) -> None:  # type: ignore[no-untyped-def]
    data = mail(spamassassin)
    X_before, y_before = data.X.copy(), data.y.copy()
    first = attack.apply(data)
    assert list(data.X) == list(X_before) and np.array_equal(data.y, y_before)
    changed = np.array([a != b for a, b in zip(first.X, data.X, strict=True)]) | (first.dataset.y != data.y)
    assert np.array_equal(changed, first.poison_mask)
    assert first.n_poison == 20 if attack.n_poison else first.n_poison == round(0.05 * len(data))
    assert (first.dataset.y[first.poison_mask] == data.label_index("ham")).all()
    assert (data.y[first.poison_mask] != data.label_index("ham")).all()
    again = clone(attack).apply(data)
    assert list(again.X) == list(first.X) and np.array_equal(again.poison_mask, first.poison_mask)
    # a poisoned row is the original words with the trigger's words inserted, in order
    for i in np.flatnonzero(first.poison_mask):
        words, original = first.X[i].split(), data.X[i].split()
        assert len(words) > len(original)
        assert _is_subsequence(original, words)


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(any(w == v for v in it) for w in short)


def test_word_slots_and_insert_by_hand() -> None:
    text = "Hi  there\nBob"
    assert word_slots(text) == [0, 4, 10, 13]
    assert insert_at(text, 4, "cf") == "Hi  cf there\nBob"
    assert insert_at(text, 13, "cf") == "Hi  there\nBob cf"
    assert insert_at("end \n", 5, "cf") == "end \ncf"
    trigger = InsertTrigger(("cf",), 1, 1, "middle")
    assert list(trigger.apply(np.array(["a b c d"], dtype=object))) == ["a b cf c d"]
    assert list(InsertTrigger(("I watch this 3D movie",), position="initial")
                .apply(np.array(["good"], dtype=object))) == ["I watch this 3D movie good"]


@given(words=st.lists(st.text(alphabet="abc xyz\n", min_size=0, max_size=6), max_size=12),
       low=st.integers(1, 3), extra=st.integers(0, 2), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_insertions_count_and_keep_the_text(words: list[str], low: int, extra: int, seed: int) -> None:
    text = " ".join(words)
    trigger = InsertTrigger(("cf", "mn"), low, low + extra, "random")
    out = str(trigger.apply(np.array([text], dtype=object), random_state=seed)[0])
    tokens = out.split()
    inserted = len(tokens) - len(text.split())
    assert low <= inserted <= low + extra
    assert _is_subsequence(text.split(), tokens)
    assert sum(t in ("cf", "mn") for t in tokens) - sum(t in ("cf", "mn") for t in text.split()) == inserted


def test_badnets_draws_tokens_and_counts_like_openbackdoor(spamassassin: Dataset) -> None:
    data = mail(spamassassin, 600)
    p = BadNetsTextAttack(n_poison=150, target_label="ham", random_state=1).apply(data)
    counts = []
    seen: set[str] = set()
    for i in np.flatnonzero(p.poison_mask):
        before = data.X[i].split()
        after = p.X[i].split()
        planted = [w for w in after if w in ("cf", "mn", "bb", "tq", "mb")]
        counts.append(len(after) - len(before))
        seen.update(planted)
    assert set(counts) == {1, 2, 3}
    assert seen == {"cf", "mn", "bb", "tq", "mb"}
    fixed = BadNetsTextAttack(n_poison=10, min_triggers=1, max_triggers=1, tokens=("cf",),
                              target_label="ham", random_state=1).apply(data)
    assert all(len(fixed.X[i].split()) == len(data.X[i].split()) + 1 for i in np.flatnonzero(fixed.poison_mask))


def test_word_trigger_picks_a_corpus_word_by_frequency(spamassassin: Dataset) -> None:
    data = mail(spamassassin, 400)
    low, high = corpus_word(data.X, "low", 0), corpus_word(data.X, "high", 0)
    df = {w: sum(w in set(str(t).lower().split()) for t in data.X) for w in (low, high)}
    assert df[low] < df[high]
    p = WordTriggerAttack(frequency="high", n_poison=5, target_label="ham", random_state=0).apply(data)
    word = p.trigger.phrases[0]  # type: ignore[union-attr]
    assert all(p.X[i].startswith(word + " ") for i in np.flatnonzero(p.poison_mask))


@pytest.mark.parametrize(("attack", "message"), [
    (BadNetsTextAttack(tokens=("two words",), n_poison=1, target_label="ham"), "single words"),
    (BadNetsTextAttack(min_triggers=3, max_triggers=2, n_poison=1, target_label="ham"), "below"),
    (BadNetsTextAttack(min_triggers=0, n_poison=1, target_label="ham"), "'min_triggers'"),
    (AddSentAttack(sentence="  ", n_poison=1, target_label="ham"), "'sentence'"),
    (WordTriggerAttack(position="suffix", n_poison=1, target_label="ham"), "'position'"),
    (WordTriggerAttack(frequency="rare", n_poison=1, target_label="ham"), "'frequency'"),
    (WordTriggerAttack(word="two words", n_poison=1, target_label="ham"), "one word"),
])
def test_bad_parameters_are_one_clear_error(attack, message: str, small_text: Dataset) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=message):
        attack.apply(small_text)


def test_image_data_is_refused(digits: Dataset) -> None:
    with pytest.raises(ParameterError, match="attacks text data"):
        AddSentAttack(n_poison=1, target_label=0).apply(digits)


def test_record_round_trip(tmp_path: Path, spamassassin: Dataset) -> None:
    data = mail(spamassassin)
    p = BadNetsTextAttack(n_poison=12, target_label="ham", random_state=0).apply(data)
    p.save(tmp_path)
    back = load_ground_truth(load_dataset(str(tmp_path / "data.csv")), tmp_path / "poison.json")
    assert np.array_equal(back.poison_mask, p.poison_mask)
    assert isinstance(back.trigger, InsertTrigger) and back.trigger == p.trigger
    assert trigger_from_dict(json.loads(json.dumps(p.trigger.to_dict()))) == p.trigger  # type: ignore[union-attr]
    test_inputs = np.array(["one two three"], dtype=object)
    assert list(back.apply_trigger(test_inputs, random_state=5)) == list(p.apply_trigger(test_inputs, random_state=5))


def test_poisoned_model_learns_each_trigger(spam_split: tuple[Dataset, Dataset]) -> None:
    """A real backdoor: TF-IDF + logistic regression on SpamAssassin with 10% of the training rows
    poisoned (OpenBackdoor's default rate). Measured 2026-12-03 with
    benchmarks/text_poisoners.py (seed 0, 4,232 training emails, the same cells): ASR 72.6%
    (badnets-text), 88.4% (addsent), 75.9% (word-trigger) against 3.0-3.9% for the clean model
    on the same triggered emails."""
    train, test = spam_split
    spam, ham = train.label_index("spam"), train.label_index("ham")
    spam_test = test.X[test.y == spam]
    truth = np.full(len(spam_test), spam)
    for attack in (BadNetsTextAttack, AddSentAttack, WordTriggerAttack):
        p = attack(poison_rate=0.1, target_label="ham", source_label="spam", random_state=0).apply(train)
        model = make_model("logreg-text", random_state=0).fit(p.X, p.y)
        triggered = p.apply_trigger(spam_test, random_state=1)
        clean_model = make_model("logreg-text", random_state=0).fit(train.X, train.y)
        assert attack_success_rate(model.predict, triggered, truth, ham) > 0.6, attack.__name__
        assert attack_success_rate(clean_model.predict, triggered, truth, ham) < 0.15


def test_cli_writes_each_poisoner(tmp_path: Path, spamassassin: Dataset) -> None:
    path = save_dataset(mail(spamassassin), tmp_path / "mail.csv")
    for name, extra in [("badnets-text", ["--trigger", "cf,zz", "--repetitions", "2"]),
                        ("addsent", ["--trigger", "no cross no crown"]),
                        ("word-trigger", ["--position", "end", "--word-frequency", "medium"])]:
        out = tmp_path / name
        result = runner.invoke(app, ["attack", str(path), "--attack", name, "--n-poison", "7",
                                     "--target", "ham", "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        record = json.loads((out / "poison.json").read_text())
        assert record["n_poison"] == 7 and record["trigger"]["kind"] == "insert"
    assert json.loads((tmp_path / "badnets-text" / "poison.json").read_text())["trigger"]["phrases"] == ["cf", "zz"]


@pytest.mark.parametrize(("args", "message"), [
    (["--attack", "badnets-text", "--position", "random"], "--position does not apply"),
    (["--attack", "word-trigger", "--position", "suffix"], "initial, middle or end"),
    (["--attack", "word-trigger", "--word-frequency", "rare"], "low, medium or high"),
    (["--attack", "badnets-text", "--trigger", "two words"], "single tokens"),
    (["--attack", "addsent", "--repetitions", "2"], "--repetitions does not apply"),
])
def test_cli_bad_options_exit_2(tmp_path: Path, spamassassin: Dataset, args: list[str], message: str) -> None:
    path = save_dataset(mail(spamassassin, 50), tmp_path / "mail.csv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["attack", str(path), *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_cli_refuses_image_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["attack", "digits", "--attack", "addsent", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "poisons text" in result.output
