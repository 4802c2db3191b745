"""``poisonlab attack``: poison a dataset in a controlled lab and write the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    ID_COL_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    claim_out,
    columns_from,
    emit_json,
    fail,
    handle_errors,
    out_console,
)
from poisonlab.exceptions import DataError, ParameterError

ATTACKS = ("label-flip", "backdoor", "text-backdoor", "badnets-text", "addsent", "word-trigger",
           "patch-backdoor", "blend-backdoor", "feature-backdoor", "clean-label-backdoor",
           "feature-collision")

@app.command()
@handle_errors
def attack(
    data: str = typer.Argument(..., help="Dataset file, folder, or corpus name."),
    attack_name: str = typer.Option(..., "--attack", help=" | ".join(ATTACKS) + " (backdoor picks by data kind)."),
    out: Path = typer.Option(..., "--out", help="Folder for data.csv|data.npz and poison.json."),
    test: str | None = typer.Option(
        None, "--test", help="Backdoors: test data whose non-target rows are written triggered to "
                             "DIR/triggered_test.csv|.npz (evaluate it with --target-label); "
                             "feature-collision: the test data --instance picks from."),
    instance: int | None = typer.Option(
        None, "--instance", help="feature-collision: the row of --test to be read as --target "
                                 "(written to DIR/triggered_test.npz)."),
    watermark: float | None = typer.Option(
        None, "--watermark", help="feature-collision: opacity in [0, 1) of the target instance "
                                  "blended into each base (default 0; 0.3 for end-to-end training)."),
    extractor: Path | None = typer.Option(
        None, "--extractor", help="feature-collision: the victim's feature extractor, a torch model "
                                  "file (default: poisonlab's CNN trained here on DATA)."),
    rate: float | None = typer.Option(None, "--rate", help="Share of all rows to poison."),
    n_poison: int | None = typer.Option(None, "--n-poison", help="Number of rows to poison."),
    target: str | None = typer.Option(None, "--target", help="Target class (name or index)."),
    source: str | None = typer.Option(None, "--source", help="Only poison rows of this class."),
    strategy: str | None = typer.Option(None, "--strategy", help="label-flip: random or targeted."),
    trigger: str | None = typer.Option(
        None, "--trigger", help="text: the token or phrase to insert (badnets-text: tokens "
                                "'cf,mn,...'; addsent: the sentence; word-trigger: the word)."),
    position: str | None = typer.Option(
        None, "--position", help="text: prefix, suffix or random; word-trigger: initial, middle or end."),
    repetitions: int | None = typer.Option(
        None, "--repetitions", help="text: insertions per row (badnets-text: default 1 to 3)."),
    word_frequency: str | None = typer.Option(
        None, "--word-frequency", help="word-trigger without --trigger: low, medium or high "
                                       "document frequency of the corpus word drawn."),
    patch_size: int | None = typer.Option(None, "--patch-size", help="patch: side in pixels."),
    pattern: str | None = typer.Option(None, "--pattern", help="patch: checkerboard, white, black, random."),
    location: str | None = typer.Option(None, "--location", help="patch: bottom-right, top-left, center, ..."),
    alpha: float | None = typer.Option(None, "--alpha", help="blend: weight of the pattern."),
    features: str | None = typer.Option(None, "--features", help="feature: 'col=value,col=value'."),
    epsilon: float | None = typer.Option(
        None, "--epsilon", help="clean-label-backdoor: L-inf bound of the PGD perturbation in [0, 1] "
                                "(default 0.3); feature-collision: L-inf bound of each poison "
                                "(default none)."),
    steps: int | None = typer.Option(None, "--steps", help="clean-label-backdoor: PGD steps (default 20); "
                                                         "feature-collision: iterations (default 200)."),
    surrogate: str | None = typer.Option(
        None, "--surrogate", help="clean-label-backdoor: the model PGD attacks, logreg (default, fast) "
                                  "or cnn (needs torch; transfers to CNN victims)."),
    amplitude: float | None = typer.Option(
        None, "--amplitude", help="clean-label-backdoor: strength of the training patch in (0, 1] "
                                  "(default 1; test inputs get the full patch)."),
    clean_label: bool = typer.Option(
        False, "--clean-label", help="Backdoors: stamp target-class rows, change no label."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    id_col: str | None = ID_COL_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Poison DATA in a controlled lab; writes the poisoned data and the ground truth."""
    from poisonlab.attacks import (
        AddSentAttack,
        BadNetsTextAttack,
        BlendBackdoorAttack,
        CleanLabelBackdoorAttack,
        FeatureBackdoorAttack,
        FeatureCollisionAttack,
        LabelFlipAttack,
        PatchBackdoorAttack,
        TextBackdoorAttack,
        WordTriggerAttack,
    )
    from poisonlab.data import load_dataset, save_dataset

    if attack_name not in ATTACKS:
        fail(f"Unknown --attack {attack_name!r}; choose one of {', '.join(ATTACKS)}.", 2)
    if test is not None and attack_name == "label-flip":
        raise ParameterError("--test applies to backdoor attacks; --attack label-flip plants no trigger.")
    tmp = claim_out(out, "attack")
    columns = columns_from(text_col, label_col, feature_cols, id_col)
    ds = load_dataset(data, columns, data_dir=data_dir)
    test_ds = None if test is None else load_dataset(test, columns, data_dir=data_dir)
    if ds.n_classes < 2:  # the data's fault, not an option's (exit 1)
        raise DataError(f"{data}: every row has the label {ds.classes[0]!r}; an attack needs two classes.")
    if attack_name == "backdoor":
        attack_name = {"text": "text-backdoor", "image": "patch-backdoor",
                       "tabular": "feature-backdoor"}[ds.kind]
    given = {"--strategy": strategy, "--trigger": trigger, "--position": position,
             "--repetitions": repetitions, "--patch-size": patch_size, "--pattern": pattern,
             "--location": location, "--alpha": alpha, "--features": features,
             "--word-frequency": word_frequency, "--clean-label": clean_label or None,
             "--epsilon": epsilon, "--steps": steps, "--amplitude": amplitude,
             "--surrogate": surrogate, "--instance": instance, "--watermark": watermark,
             "--extractor": extractor}
    applies = {
        "label-flip": {"--strategy"},
        "text-backdoor": {"--trigger", "--position", "--repetitions", "--clean-label"},
        "badnets-text": {"--trigger", "--repetitions", "--clean-label"},
        "addsent": {"--trigger", "--clean-label"},
        "word-trigger": {"--trigger", "--position", "--word-frequency", "--clean-label"},
        "patch-backdoor": {"--patch-size", "--pattern", "--location", "--clean-label"},
        "blend-backdoor": {"--alpha", "--clean-label"},
        "feature-backdoor": {"--features", "--clean-label"},
        "clean-label-backdoor": {"--patch-size", "--pattern", "--location", "--epsilon", "--steps",
                                 "--amplitude", "--surrogate"},
        "feature-collision": {"--instance", "--watermark", "--extractor", "--epsilon", "--steps"},
    }[attack_name]
    text_attack = attack_name in ("badnets-text", "addsent", "word-trigger")
    if text_attack and ds.kind != "text":
        raise ParameterError(f"--attack {attack_name} poisons text; {data} is {ds.kind} data.")
    if attack_name == "clean-label-backdoor" and ds.kind != "image":
        raise ParameterError(f"--attack clean-label-backdoor poisons images; {data} is {ds.kind} data "
                             "(for text and tables, use a backdoor with --clean-label).")
    if attack_name == "feature-collision" and ds.kind != "image":
        raise ParameterError(f"--attack feature-collision poisons images; {data} is {ds.kind} data.")
    stray = [k for k, v in given.items() if v is not None and k not in applies]
    if stray:
        raise ParameterError(f"{', '.join(stray)} does not apply to --attack {attack_name}.")
    budget = {"n_poison": n_poison, "poison_rate": rate}
    if n_poison is None and rate is None:
        budget["poison_rate"] = 0.1
        if attack_name == "feature-collision":  # 20 poisons: 90-100% success under transfer learning
            budget.update(n_poison=20, poison_rate=None)
    common: dict[str, Any] = {**budget, "random_state": seed}
    obj: Any
    instance_row: Any = None
    if attack_name == "feature-collision":
        if source is not None:
            raise ParameterError("--source does not apply to --attack feature-collision: its poisons "
                                 "are rows of the --target class.")
        instance_row = _instance(test_ds, test, instance, ds, target)
        obj = FeatureCollisionAttack(
            target_instance=instance_row.X[0], target_label=target if target is not None else ds.classes[0],
            extractor=None if extractor is None else _extractor(extractor),
            watermark=_default(watermark, 0.0), epsilon=epsilon, max_iter=_default(steps, 200), **common)
    elif attack_name == "clean-label-backdoor":
        if source is not None:
            raise ParameterError("--source does not apply to --attack clean-label-backdoor: it "
                                 "poisons rows of the --target class.")
        obj = CleanLabelBackdoorAttack(
            epsilon=_default(epsilon, 0.3), steps=_default(steps, 20),
            amplitude=_default(amplitude, 1.0), surrogate=_default(surrogate, "logreg"), size=_default(patch_size, 3),
            pattern=_default(pattern, "checkerboard"), location=_default(location, "bottom-right"),
            target_label=target if target is not None else ds.classes[0], **common)
    elif attack_name == "label-flip":
        obj = LabelFlipAttack(strategy=_default(strategy, "targeted" if target is not None else "random"),
                              source_label=source, target_label=target, **common)
    else:
        common.update(target_label=target if target is not None else ds.classes[0],
                      source_label=source, relabel=not clean_label)
        if attack_name == "text-backdoor":
            if trigger is not None and not trigger.strip():
                raise ParameterError(f"--trigger must be a word or phrase. Got {trigger!r}.")
            obj = TextBackdoorAttack(trigger=_default(trigger, "cf"), position=_default(position, "suffix"),
                                     repetitions=_default(repetitions, 1), **common)
        elif attack_name in ("badnets-text", "addsent", "word-trigger"):
            obj = _text_poisoner(attack_name, trigger, position, repetitions, word_frequency,
                                 common, BadNetsTextAttack, AddSentAttack, WordTriggerAttack)
        elif attack_name == "patch-backdoor":
            obj = PatchBackdoorAttack(size=_default(patch_size, 3), pattern=_default(pattern, "checkerboard"),
                                      location=_default(location, "bottom-right"), **common)
        elif attack_name == "blend-backdoor":
            obj = BlendBackdoorAttack(alpha=alpha if alpha is not None else 0.2, **common)
        else:
            obj = FeatureBackdoorAttack(features=_parse_features(features), **common)
    poisoned = obj.apply(ds)
    poisoned.save(tmp)
    record = poisoned.to_record()
    summary = {k: record[k] for k in ("attack", "params", "n_rows", "n_poison", "target_label", "trigger")}
    if test_ds is not None:
        triggered = instance_row if attack_name == "feature-collision" else \
            poisoned.triggered_test(test_ds, random_state=seed)
        name = "triggered_test" + (".npz" if triggered.kind == "image" else ".csv")
        save_dataset(triggered, tmp / name)
        summary["triggered_test"] = {"file": name, "n_rows": len(triggered)}
    summary["out"] = str(out)
    if json_out:
        emit_json(summary)
    else:
        out_console.print(f"{record['attack']}: poisoned {record['n_poison']} of {record['n_rows']} rows"
                          + (f", target {record['target_label']}" if record["target_label"] else "")
                          + f"; wrote {out}/", markup=False)
        if test_ds is not None:
            out_console.print(f"triggered test: {summary['triggered_test']['n_rows']} rows not of the "
                              f"target in {out}/{summary['triggered_test']['file']}", markup=False)

def _instance(test_ds: Any, test: str | None, instance: int | None, ds: Any, target: str | None) -> Any:
    """Row ``instance`` of the test data, the input feature collision aims at, checked."""
    if test_ds is None or instance is None:
        raise ParameterError("--attack feature-collision needs --test TEST and --instance K: the row of "
                             "TEST that the poisons should make the model read as --target.")
    if not 0 <= instance < len(test_ds):
        raise ParameterError(f"--instance must be a row of {test}, 0 to {len(test_ds) - 1}; got {instance}.")
    row = test_ds.subset([instance])
    base = ds.classes[ds.label_index(target if target is not None else ds.classes[0])]
    if row.classes[int(row.y[0])] == base:
        raise ParameterError(f"--instance {instance} of {test} is already of the target class {base!r}; "
                             "pick a row of another class.")
    return row


def _extractor(path: Path) -> Any:
    """The torch model in ``path``, read through the safe loaders, as a feature extractor."""
    from poisonlab.models.io import load_model

    model = load_model(path).model
    if not callable(getattr(model, "feature_tensor", None)):
        raise ParameterError(f"--extractor {path}: feature collision needs a torch model (cnn, torch-mlp "
                             f"saved as .safetensors); this file holds a {type(model).__name__}.")
    return model


def _text_poisoner(name: str, trigger: str | None, position: str | None,
                   repetitions: int | None, word_frequency: str | None, common: dict[str, Any],
                   *classes: Any) -> Any:
    """The attack object of the field's text poisoners, from the command's options."""
    badnets, addsent, word = classes
    if trigger is not None and not trigger.strip():
        raise ParameterError(f"--trigger must be a word or phrase. Got {trigger!r}.")
    if name == "badnets-text":
        extra: dict[str, Any] = {}
        if trigger is not None:
            tokens = tuple(t.strip() for t in trigger.split(",") if t.strip())
            if not tokens or any(len(t.split()) != 1 for t in tokens):
                raise ParameterError(f"--trigger for badnets-text takes single tokens separated by "
                                     f"commas ('cf,mn,bb'). Got {trigger!r}.")
            extra["tokens"] = tokens
        if repetitions is not None:
            if repetitions < 1:
                raise ParameterError(f"--repetitions must be at least 1; got {repetitions}.")
            extra.update(min_triggers=repetitions, max_triggers=repetitions)
        return badnets(**extra, **common)
    if name == "addsent":
        return addsent(**({"sentence": trigger} if trigger is not None else {}), **common)
    if position is not None and position not in ("initial", "middle", "end"):
        raise ParameterError(f"--position for word-trigger must be initial, middle or end; "
                             f"got {position!r}.")
    if word_frequency is not None and word_frequency not in ("low", "medium", "high"):
        raise ParameterError(f"--word-frequency must be low, medium or high; got {word_frequency!r}.")
    if trigger is not None and len(trigger.split()) != 1:
        raise ParameterError(f"--trigger for word-trigger takes one word. Got {trigger!r}.")
    return word(word=trigger, position=_default(position, "initial"),
                frequency=_default(word_frequency, "low"), **common)

def _default(value: Any, default: Any) -> Any:
    """The user's value, even a falsy one (0, ""), which the attack then checks; else the default."""
    return default if value is None else value

def _parse_features(spec: str | None) -> dict[int | str, float] | None:
    if spec is None:
        return None
    out: dict[int | str, float] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ParameterError(f"--features takes 'col=value,...'; got {part!r}.")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ParameterError(f"--features: {value!r} is not a number.") from None
    return out

