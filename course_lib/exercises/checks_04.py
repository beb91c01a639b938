"""Checks for the exercises of notebook 04 (model serialization): each runs the learner's code on real files."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.models import train_iris_forest
from course_lib.serialization import (
    Measurement,
    get_format,
    metadata_path,
    onnx_run,
    onnx_session,
    torch_predictor,
)

X = iris_rows(50, seed=4)


@lru_cache(maxsize=1)
def _forest() -> Any:
    """The source's forest, trained once per kernel."""
    return train_iris_forest()[0]


def deeper_net(seed: int = 0) -> nn.Module:
    """A different iris network for exercise 1: 4 → 32 → 32 → 3 with GELU, seeded random weights."""
    with torch.random.fork_rng():  # leave the caller's RNG state untouched
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 3)).eval()


def check_onnx_parity(export_with_parity: Callable[[nn.Module, Path], dict[str, Any]]) -> None:
    """Exercise 1: the exported file has a dynamic batch axis and the reported parity is what onnxruntime gives."""
    model = deeper_net()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deeper.onnx"
        report = export_with_parity(model, path)
        assert isinstance(report, dict), f"dict を返してください（{type(report).__name__} でした）"
        for key in ("max_abs_diff", "labels_equal"):
            assert key in report, f"返り値に \"{key}\" がありません: {report}"
        assert path.exists(), f"{path.name} が作られていません（引数の path に保存してください）"
        session = onnx_session(path)
        batch_axis = session.get_inputs()[0].shape[0]
        assert not isinstance(batch_axis, int), (
            f"バッチの軸が {batch_axis} に固定されています。dynamic_shapes でバッチの軸を可変にしてください"
        )
        reference = torch_predictor(model)
        worst = 0.0
        for n in (1, 50):
            got = onnx_run(session, X[:n])[0]
            assert got.shape == (n, 3), f"バッチ {n} の出力の形が {got.shape} です（({n}, 3) を期待）"
            worst = max(worst, float(np.abs(got - reference(X[:n])).max()))
    diff = report["max_abs_diff"]
    assert isinstance(diff, (float, np.floating)) and math.isfinite(diff), f"max_abs_diff は有限の float に: {diff!r}"
    assert diff < 1e-4, f"max_abs_diff が {diff:.2e} です。元のモデルと ONNX の出力がずれています"
    assert worst < 1e-4, f"チェック側で測った最大誤差が {worst:.2e} です（1e-4 未満を期待）"
    assert abs(diff - worst) <= 1e-5, (
        f"報告された max_abs_diff ({diff:.2e}) が、チェック側で測ったバッチ 1 と 50 の最大誤差 ({worst:.2e}) と合いません"
    )
    assert report["labels_equal"] is True, "labels_equal が True ではありません（argmax のラベルを比べてください）"


def check_metadata_guard(
    save_model: Callable[[Any, Path, dict[str, float]], Path], load_model_checked: Callable[[Path], Any]
) -> None:
    """Exercise 2: a metadata file beside the model; loading refuses a version mismatch and a missing file."""
    model = _forest()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "iris_model.joblib"
        returned = save_model(model, path, {"accuracy": 1.0})
        assert path.exists(), "モデルのファイルが保存されていません"
        meta_file = metadata_path(path)
        assert meta_file.exists(), f"メタデータのファイル {meta_file.name} がありません（metadata_path(path) に保存）"
        assert returned == meta_file, f"save_model はメタデータのパス {meta_file.name} を返してください"
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        for key in ("versions", "feature_names", "class_names", "trained_at", "metrics"):
            assert key in meta, f"メタデータに \"{key}\" がありません: {sorted(meta)}"
        assert "scikit-learn" in meta["versions"], "versions に scikit-learn のバージョンを入れてください"
        assert meta["feature_names"] == IRIS_FEATURES, "feature_names が IRIS_FEATURES と違います"
        assert meta["class_names"] == IRIS_CLASSES, "class_names が IRIS_CLASSES と違います"
        assert meta["metrics"] == {"accuracy": 1.0}, f"metrics には渡された値を保存してください: {meta['metrics']}"

        loaded = load_model_checked(path)
        assert np.array_equal(loaded.predict(X), model.predict(X)), "読み込んだモデルの予測が元と違います"

        meta["versions"]["scikit-learn"] = "0.24.2"
        meta_file.write_text(json.dumps(meta), encoding="utf-8")
        try:
            load_model_checked(path)
        except ValueError as error:
            assert "scikit-learn" in str(error), f"エラーメッセージにライブラリ名 scikit-learn を入れてください: {error}"
        else:
            raise AssertionError("scikit-learn のバージョンが違うのに読み込めてしまいました（ValueError を期待）")

        meta_file.unlink()
        try:
            load_model_checked(path)
        except (FileNotFoundError, ValueError):
            pass
        else:
            raise AssertionError("メタデータのファイルがないのに読み込めてしまいました")


def check_my_format(measure_my_format: Callable[[Any, Path], Measurement]) -> None:
    """Exercise 3: a compressed format, measured with measure_format: smaller than plain joblib, exact round trip."""
    model = _forest()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.joblib"
        get_format("joblib").save(model, plain)
        folder = Path(tmp) / "mine"
        m = measure_my_format(model, folder)
        assert isinstance(m, Measurement), f"measure_format の返り値（Measurement）を返してください（{type(m).__name__} でした）"
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.exists() else []
        assert files, "folder の中にモデルのファイルがありません（measure_format(fmt, model, folder, X) の folder に渡してください）"
        assert m.format not in {"pickle", "joblib"}, f"{m.format!r} は本文で測った形式です。圧縮を使う新しい形式にしてください"
        plain_kb = plain.stat().st_size / 1024
        assert m.size_kb < plain_kb, f"圧縮なしの joblib（{plain_kb:.0f} KB）より小さくなっていません（{m.size_kb:.0f} KB）"
        assert m.size_kb == files[0].stat().st_size / 1024, "size_kb が保存したファイルの大きさと合いません"
    assert m.labels_equal and m.max_abs_diff == 0.0, (
        f"読み込んだモデルの確率が元と違います（max_abs_diff={m.max_abs_diff}）。可逆な圧縮なら差は 0 のはずです"
    )
    assert m.load_ms > 0 and m.p50_batch1_ms > 0 and m.p50_batch64_ms > 0, f"時間が測られていません: {m}"
