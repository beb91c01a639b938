"""Checks for the exercises of notebook 04 (model serialization): each runs the learner's code on real files."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from copy import deepcopy
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows, iris_split
from course_lib.models import train_iris_forest
from course_lib.serialization import (
    FORMATS,
    Measurement,
    library_versions,
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


class LoadRecordingForest(RandomForestClassifier):
    """The source's forest, counting how often a file holding it was unpickled (joblib.load, pickle.load)."""

    loads = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Count the load, then restore as usual (pickle calls this while loading the file)."""
        type(self).loads += 1
        super().__setstate__(state)


@lru_cache(maxsize=1)
def recording_forest() -> LoadRecordingForest:
    """A LoadRecordingForest trained like the source's forest (n_estimators=100, random_state=42)."""
    split = iris_split()
    return LoadRecordingForest(n_estimators=100, random_state=42).fit(split.X_train, split.y_train)


def deeper_net(seed: int = 0) -> nn.Module:
    """A different iris network for exercise 1: 4 → 32 → 32 → 3 with GELU, seeded random weights."""
    with torch.random.fork_rng():  # leave the caller's RNG state untouched
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 3)).eval()


# --- exercise 1: ONNX parity ----------------------------------------------------------------------------------


def _file_parity(path: Path, model: nn.Module) -> tuple[float, bool]:
    """Max |ONNX − PyTorch| and whether argmax labels agree, over batch 1 and batch 50 of X, for the learner's file."""
    session = onnx_session(path)
    batch_axis = session.get_inputs()[0].shape[0]
    assert not isinstance(batch_axis, int), (
        f"バッチの軸が {batch_axis} に固定されています。dynamic_shapes でバッチの軸を可変にしてください"
    )
    reference = torch_predictor(model)
    worst, labels_equal = 0.0, True
    for n in (1, len(X)):
        got, want = onnx_run(session, X[:n])[0], reference(X[:n])
        assert got.shape == (n, 3), f"バッチ {n} の出力の形が {got.shape} です（({n}, 3) を期待）"
        worst = max(worst, float(np.abs(got - want).max()))
        labels_equal = labels_equal and bool((got.argmax(1) == want.argmax(1)).all())
    return worst, labels_equal


def mirrored(model: nn.Sequential) -> nn.Sequential:
    """A copy of the network whose last layer has negated weights and bias, so its output is exactly −model(x).

    Negating a factor negates a product exactly and sums round symmetrically, so every ONNX − PyTorch difference
    of its export is the original one with the sign flipped: whichever sign the largest one has on this CPU, one of
    the two models has it negative, and a signed maximum (instead of the maximum of |difference|) shows.
    """
    copy = deepcopy(model)
    with torch.no_grad():
        copy[-1].weight.neg_()
        copy[-1].bias.neg_()
    return copy


def check_onnx_parity(export_with_parity: Callable[[nn.Module, Path], dict[str, Any]]) -> None:
    """Exercise 1: the file has a dynamic batch axis, and the reported parity is exactly what the check measures."""
    for model in (deeper_net(), mirrored(deeper_net())):
        _check_one_export(export_with_parity, model)


def _check_one_export(export_with_parity: Callable[[nn.Module, Path], dict[str, Any]], model: nn.Module) -> None:
    """Export model with the learner's function and compare its report with what the check measures on the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deeper.onnx"
        report = export_with_parity(model, path)
        assert isinstance(report, dict), f"dict を返してください（{type(report).__name__} でした）"
        for key in ("max_abs_diff", "labels_equal"):
            assert key in report, f'返り値に "{key}" がありません: {report}'
        assert path.exists(), f"{path.name} が作られていません（引数の path に保存してください）"
        worst, labels_equal = _file_parity(path, model)
    assert worst < 1e-4, (
        f"チェックが同じファイルで測った最大誤差が {worst:.2e} です（1e-4 未満を期待）。"
        "渡された model を書き出してください"
    )
    diff = report["max_abs_diff"]
    assert isinstance(diff, (float, np.floating)) and math.isfinite(diff), f"max_abs_diff は有限の float に: {diff!r}"
    # The learner's numbers come from the same file, rows and model, so they match to the last bit.
    assert math.isclose(diff, worst, rel_tol=1e-6, abs_tol=1e-12), (
        f"報告された max_abs_diff ({diff:.3e}) が、チェックが同じファイルで測った最大絶対誤差 ({worst:.3e}) と"
        "合いません。iris_rows(50, seed=4) の最初の 1 行（バッチ 1）と 50 行全部（バッチ 50）の両方で"
        " np.abs(差).max() を測り、大きいほうを返してください（符号付きの差の最大ではなく、絶対値の最大です）"
    )
    reported_labels = report["labels_equal"]
    assert isinstance(reported_labels, (bool, np.bool_)), f"labels_equal は True / False に: {reported_labels!r}"
    assert bool(reported_labels) == labels_equal, (
        f"labels_equal が {reported_labels} ですが、チェックが測ると {labels_equal} でした"
        "（argmax のラベルを比べてください）"
    )


# --- exercise 2: metadata guard -------------------------------------------------------------------------------


def _assert_refused(
    load_model_checked: Callable[[Path], Any], path: Path, expected: tuple[type, ...], why: str, hint: str = ""
) -> str:
    """Call the loader where it must refuse: it raises one of expected, without unpickling the model first."""
    loads_before = LoadRecordingForest.loads
    try:
        load_model_checked(path)
    except expected as error:
        message = str(error)
    except Exception as error:  # noqa: BLE001 - a wrong exception type is the learner's mistake to report
        names = " か ".join(e.__name__ for e in expected)
        raise AssertionError(f"{why}のに {type(error).__name__} が出ました（{names} を期待）: {error}") from error
    else:
        raise AssertionError(f"{why}のに、読み込めてしまいました（エラーになりませんでした）{hint}")
    assert LoadRecordingForest.loads == loads_before, (
        f"{why}のに、確かめる前に joblib.load でモデルのファイルを読み込んでいます。"
        "読み込んだ時点でファイルの中のコードは動いてしまうので、メタデータを先に確かめてから読み込んでください"
    )
    return message


def _write_versions(meta_file: Path, meta: dict[str, Any], **versions: str) -> None:
    """Write meta to meta_file with some library versions replaced."""
    changed = dict(meta, versions=dict(meta["versions"], **versions))
    meta_file.write_text(json.dumps(changed), encoding="utf-8")


def _check_saved_metadata(meta_file: Path) -> dict[str, Any]:
    """The metadata file holds the five fields the exercise asks for; return it."""
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    for key in ("versions", "feature_names", "class_names", "trained_at", "metrics"):
        assert key in meta, f'メタデータに "{key}" がありません: {sorted(meta)}'
    assert "scikit-learn" in meta["versions"], "versions に scikit-learn のバージョンを入れてください"
    assert meta["feature_names"] == IRIS_FEATURES, "feature_names が IRIS_FEATURES と違います"
    assert meta["class_names"] == IRIS_CLASSES, "class_names が IRIS_CLASSES と違います"
    assert meta["metrics"] == {"accuracy": 1.0}, f"metrics には渡された値を保存してください: {meta['metrics']}"
    return meta


def check_metadata_guard(
    save_model: Callable[[Any, Path, dict[str, float]], Path], load_model_checked: Callable[[Path], Any]
) -> None:
    """Exercise 2: metadata beside the model; a version mismatch or missing metadata is refused before loading."""
    model = recording_forest()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "iris_model.joblib"
        returned = save_model(model, path, {"accuracy": 1.0})
        assert path.exists(), "モデルのファイルが保存されていません"
        meta_file = metadata_path(path)
        assert meta_file.exists(), f"メタデータのファイル {meta_file.name} がありません（metadata_path(path) に保存）"
        assert returned == meta_file, f"save_model はメタデータのパス {meta_file.name} を返してください"
        meta = _check_saved_metadata(meta_file)

        loaded = load_model_checked(path)
        assert np.array_equal(loaded.predict(X), model.predict(X)), "読み込んだモデルの予測が元と違います"

        _write_versions(meta_file, meta, **{"scikit-learn": "0.24.2"})
        message = _assert_refused(load_model_checked, path, (ValueError,), "scikit-learn のバージョンが違う")
        for part, what in (
            ("scikit-learn", "ライブラリ名"),
            ("0.24.2", "保存したときのバージョン"),
            (library_versions()["scikit-learn"], "今のバージョン"),
        ):
            assert part in message, f"エラーメッセージに{what} {part} を入れてください: {message}"

        _write_versions(meta_file, meta, numpy="1.0.0")
        _assert_refused(
            load_model_checked,
            path,
            (ValueError,),
            "numpy のバージョンが違う",
            "。scikit-learn だけでなく、versions にあるすべてのライブラリを確かめてください",
        )

        meta_file.unlink()
        _assert_refused(load_model_checked, path, (FileNotFoundError, ValueError), "メタデータのファイルがない")


# --- exercise 3: a new format ---------------------------------------------------------------------------------


def _notebook_files(model: Any, tmp: Path) -> dict[str, bytes]:
    """The bytes each of the notebook's scikit-learn formats writes for model."""
    files = {}
    for fmt in FORMATS:
        if fmt.family == "sklearn":
            path = tmp / f"notebook_{len(files)}{fmt.suffix}"
            fmt.save(model, path)
            files[fmt.name] = path.read_bytes()
    return files


def _measure_learners_format(measure_my_format: Callable[[Any, Path], Measurement], model: Any, folder: Path) -> Any:
    """Call the learner's function, turning a loader that returns the model (not a predictor) into a hint."""
    try:
        return measure_my_format(model, folder)
    except TypeError as error:
        if "not callable" not in str(error):
            raise
        raise AssertionError(
            "load は予測関数を返してください（sklearn_predictor(読み込んだモデル)）。"
            f"モデルそのものを返しています: {error}"
        ) from error


def check_my_format(measure_my_format: Callable[[Any, Path], Measurement]) -> None:
    """Exercise 3: a new compressed format measured with measure_format: smaller than pickle, exact round trip."""
    model = _forest()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "mine"
        m = _measure_learners_format(measure_my_format, model, folder)
        assert isinstance(m, Measurement), (
            f"measure_format の返り値（Measurement）を返してください（{type(m).__name__} でした）"
        )
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.exists() else []
        assert files, (
            "folder の中にモデルのファイルがありません"
            "（measure_format(fmt, model, folder, X) の folder に渡してください）"
        )
        file = files[0]
        assert m.format not in {fmt.name for fmt in FORMATS}, (
            f"{m.format!r} は本文で測った形式です。圧縮を使う新しい形式にしてください"
        )
        notebook_files = _notebook_files(model, tmp)
        same_as = next((name for name, content in notebook_files.items() if content == file.read_bytes()), None)
        assert same_as is None, (
            f"保存したファイルが、本文の形式 {same_as!r} と 1 バイトも違いません（名前を変えただけです）。"
            "圧縮の方式かレベルを変えた新しい形式にしてください"
        )
        uncompressed_kb = min(len(notebook_files[name]) for name in ("pickle", "joblib")) / 1024
        assert m.size_kb < uncompressed_kb, (
            f"圧縮なしの pickle / joblib（{uncompressed_kb:.0f} KiB）より小さくなっていません（{m.size_kb:.0f} KiB）。"
            "圧縮を使ってください"
        )
        assert m.size_kb == file.stat().st_size / 1024, "size_kb が保存したファイルの大きさと合いません"
    assert m.model == type(model).__name__, (
        f"渡された model（{type(model).__name__}）を測ってください（{m.model} でした）"
    )
    assert m.labels_equal and m.max_abs_diff == 0.0, (
        f"読み込んだモデルの確率が元と違います（max_abs_diff={m.max_abs_diff}）。可逆な圧縮なら差は 0 のはずです"
    )
    assert m.load_ms > 0 and m.p50_batch1_ms > 0 and m.p50_batch64_ms > 0, f"時間が測られていません: {m}"
