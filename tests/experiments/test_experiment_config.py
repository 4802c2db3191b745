"""EXPERIMENT.toml: every bad file gets one error naming the key and its line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from poisonlab.experiments import ConfigError, load_config, parse_config
from poisonlab.experiments.config import key_lines
from poisonlab.experiments.runner import check_grid

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = """\
name = "flips"
datasets = ["breast_cancer"]
models = ["logreg"]
budgets = [5, 0.1]
seeds = [0, 1]

[[attacks]]
name = "feature-backdoor"
target_label = "malignant"

[[attacks]]
name = "label-flip"
strategy = ["random", "targeted"]
source_label = "benign"
target_label = "malignant"
"""


def test_a_good_file_expands_into_cells_with_content_keys() -> None:
    cfg = parse_config(GOOD, source="x.toml")
    # a list-valued attack parameter is one more axis: 1 + 2 attacks x 2 budgets x 2 seeds
    assert [a.label for a in cfg.attacks][1:] == [
        "label-flip (source_label='benign', strategy='random')",
        "label-flip (source_label='benign', strategy='targeted')"]
    cells = cfg.cells()
    assert len(cells) == 3 * 2 * 2
    assert len({c["key"] for c in cells}) == len(cells)
    assert {c["budget"]["n_poison"] for c in cells if "n_poison" in c["budget"]} == {5}
    assert {c["budget"]["poison_rate"] for c in cells if "poison_rate" in c["budget"]} == {0.1}
    # the key is a function of the content: the same cell parses to the same key again
    assert [c["key"] for c in parse_config(GOOD).cells()] == [c["key"] for c in cells]


def test_key_lines_follow_tables_and_arrays_of_tables() -> None:
    lines = key_lines(GOOD)
    assert lines[("budgets",)] == 4
    assert lines[("attacks", 0)] == 7
    assert lines[("attacks", 1, "strategy")] == 13


@pytest.mark.parametrize(("edit", "line", "key", "words"), [
    (("budgets = [5, 0.1]", "budgets = [5, -2]"), 4, "budgets", "counts"),
    (("budgets = [5, 0.1]", "budgets = [5, 1.5]"), 4, "budgets", "rates"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), 5, "seeds", "more than once"),
    (("models = [\"logreg\"]", "models = [\"forest\"]"), 3, "models", "nb-text"),
    (("strategy = [\"random\", \"targeted\"]", "strategey = \"random\""), 13, "attacks[1].strategey",
     "takes no parameter"),
    (("name = \"label-flip\"", "name = \"label-flop\""), 12, "attacks[1].name", "label-flip"),
    (("target_label = \"malignant\"\n\n", "target_label = \"malignant\"\nn_poison = 3\n\n"), 10,
     "attacks[0].n_poison", "set by the grid"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nmeasures = [\"detection\"]"), 6, "measures", "needs 'detectors'"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nworkers = 3"), 6, "workers", "unknown key"),
    (("datasets = [\"breast_cancer\"]", "datasets = [\"no/such.csv\"]"), 2, "datasets[0]", "neither"),
])
def test_bad_values_name_the_key_and_the_line(edit: tuple[str, str], line: int, key: str, words: str) -> None:
    text = GOOD.replace(*edit, 1)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="exp.toml")
    message = str(info.value)
    assert message.startswith(f"exp.toml, line {line}: {key}: "), message
    assert words in message
    assert "\n" not in message


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('datasets = ["digits"\nmodels = ["logreg"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml, line 2: not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(("edit", "line", "key", "words"), [
    (("target_label = \"malignant\"", "target_label = \"healthy\""), 9, "attacks[0].target_label",
     "must be one of ['malignant', 'benign']"),
    (("budgets = [5, 0.1]", "budgets = [5, 500]"), 4, "budgets", "eligible"),
    (("models = [\"logreg\"]", "models = [\"nb-text\"]"), 3, "models[0]", "trains on text data"),
])
def test_values_that_do_not_fit_the_data_are_caught_before_anything_runs(
        edit: tuple[str, str], line: int, key: str, words: str) -> None:
    cfg = parse_config(GOOD.replace(*edit, 1), source="exp.toml")
    with pytest.raises(ConfigError) as info:
        check_grid(cfg)
    assert str(info.value).startswith(f"exp.toml, line {line}: {key}: "), str(info.value)
    assert words in str(info.value)


def test_a_dict_config_gets_the_same_checks_without_lines() -> None:
    with pytest.raises(ConfigError, match=r"^the experiment: attacks\[0\]\.name: must be one of"):
        parse_config({"datasets": ["wine"], "models": ["logreg"], "attacks": [{"name": "nope"}]})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_parses_and_fits_its_data(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.cells()
    check_grid(cfg)


def test_there_are_five_examples() -> None:
    assert len(list(EXAMPLES.glob("*.toml"))) == 5
