"""Hostile and broken ``.safetensors`` and ``.pt`` files: one line each, nothing built from a bad spec."""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.exceptions import ModelError, UntrustedModelError
from poisonlab.models.io import load_model, save_model

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.torch


def _model() -> Any:
    from poisonlab.models.torch import TorchClassifier, build_network

    model = TorchClassifier(arch="cnn", random_state=0)
    model.net_ = build_network("cnn", (1, 8, 8), 2).eval()
    model.input_shape_ = (1, 8, 8)
    model.n_classes_ = 2
    model.classes_ = np.arange(2)
    return model


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return save_model(_model(), tmp_path / "cnn", classes=("ham", "spam"), spec="cnn")


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> Path:
    """Copy a poisonlab safetensors file with its tensors and its metadata edited."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as handle:
        meta = json.loads(handle.metadata()["poisonlab"])
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    edit(meta, state)
    safetensors_torch.save_file(state, str(dst), metadata={"poisonlab": json.dumps(meta)})
    return dst


def _spec(key: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def edit(meta: dict[str, Any], state: dict[str, Any]) -> None:
        meta["torch"][key] = value
    return edit


def _double(meta: dict[str, Any], state: dict[str, Any]) -> None:
    name = next(iter(state))
    state[name] = state[name].double()


def _three_classes(meta: dict[str, Any], state: dict[str, Any]) -> None:
    meta["classes"] = ["a", "b", "c"]
    meta["torch"]["n_classes"] = 3


EDITS: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], None], str]] = {
    "unexpected-key": (lambda m, s: m.update(evil="x"), "unexpected keys ['evil']"),
    "unexpected-spec-key": (_spec("hook", "os.system"), "unexpected ['hook']"),
    "huge-input": (_spec("input_shape", [1, 100_000, 100_000]), "input_shape"),
    "negative-input": (_spec("input_shape", [1, -8, 8]), "input_shape"),
    "input-not-numbers": (_spec("input_shape", ["1", "8", "8"]), "input_shape"),
    "huge-n-classes": (_spec("n_classes", 10**9), "n_classes"),
    "unknown-arch": (_spec("arch", "resnet"), "unknown architecture 'resnet'"),
    "dtype-mismatch": (_double, "torch.float64"),
    "shape-mismatch": (_three_classes, "needs torch.float32 (3, 64)"),
    "param-not-a-scalar": (lambda m, s: m["params"].update(evil={"a": [1]}),
                           "parameter 'evil' has a value of the wrong kind"),
    "param-name-not-a-name": (lambda m, s: m["params"].update({"__import__('os')": 1}), "not a short identifier"),
    "negative-epochs": (lambda m, s: m["params"].update(max_epochs=-1), "'max_epochs' is -1"),
    "bad-device": (lambda m, s: m["params"].update(device="cuda; rm -rf"), "'device'"),
    "classes-not-names": (lambda m, s: m.update(classes=[{"a": 1}, 2]), "'classes'"),
    "format-version-text": (lambda m, s: m.update(format_version="9"), "format version"),
}


def _assert_one_line(path: Path, expected: str, data: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    result = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, X=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    return path


def test_a_saved_cnn_loads(saved: Path) -> None:
    loaded = load_model(saved)
    assert loaded.classes == ("ham", "spam")
    assert loaded.model.predict_proba(np.zeros((3, 8, 8))).shape == (3, 2)


@pytest.mark.parametrize("case", sorted(EDITS))
def test_bad_safetensors_metadata_is_one_line(case: str, saved: Path, tmp_path: Path, data: Path) -> None:
    edit, expected = EDITS[case]
    _assert_one_line(_rewrite(saved, tmp_path / f"{case}.safetensors", edit), expected, data)


def test_a_header_that_claims_more_than_the_file_is_one_line(saved: Path, tmp_path: Path, data: Path) -> None:
    raw = saved.read_bytes()
    path = tmp_path / "huge-header.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + raw[8:])
    _assert_one_line(path, "its header claims 1099511627776 bytes", data)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    _assert_one_line(short, "shorter than its 8-byte header length", data)


def test_metadata_that_is_not_json_is_one_line(saved: Path, tmp_path: Path, data: Path) -> None:
    path = tmp_path / "notjson.safetensors"
    safetensors_torch.save_file({"w": torch.zeros(2)}, str(path), metadata={"poisonlab": "{nope"})
    _assert_one_line(path, "not valid JSON", data)


def test_pt_file_with_a_pickled_call_is_refused(tmp_path: Path, data: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "poisonlab": Evil()}))
    with pytest.raises(UntrustedModelError, match="weights_only=True"):
        load_model(path)
    _assert_one_line(path, "not a weights-only torch file", data)
    assert not marker.exists()


def test_pt_file_whose_spec_is_not_text_is_one_line(saved: Path, tmp_path: Path, data: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as handle:
        meta = json.loads(handle.metadata()["poisonlab"])
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    path = tmp_path / "dict-spec.pt"
    torch.save({"state_dict": state, "poisonlab": meta}, path)
    _assert_one_line(path, "not JSON text", data)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": state, "poisonlab": json.dumps(meta)}, good)
    assert load_model(good).classes == ("ham", "spam")
    wrong = tmp_path / "state-list.pt"
    torch.save({"state_dict": [1, 2], "poisonlab": json.dumps(meta)}, wrong)
    _assert_one_line(wrong, "expected a dict with 'state_dict'", data)
