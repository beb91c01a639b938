"""The iris models, their state-dict files and the one inference path the apps and batch scoring share."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from course_lib.apps.iris_fastapi import TorchIrisClassifier
from course_lib.data import iris_split
from course_lib.models import SimpleNN, load_simple_nn, predict_iris, save_state_dict, train_simple_nn

ROWS = iris_split().X_test


def test_predict_iris_agrees_with_the_forests_own_predict(forest):
    predictions = predict_iris(forest, ROWS)
    assert predictions.probabilities.shape == (len(ROWS), 3)
    assert np.array_equal(predictions.class_ids, forest.predict(ROWS))
    assert np.allclose(predictions.probabilities.sum(axis=1), 1.0)


def test_predict_iris_agrees_with_the_network(net):
    predictions = predict_iris(TorchIrisClassifier(net), ROWS)
    with torch.inference_mode():
        expected = net(torch.as_tensor(ROWS, dtype=torch.float32)).argmax(1).numpy()
    assert np.array_equal(predictions.class_ids, expected)


class Reordered:
    """A model whose probability columns are classes 2, 0, 1 (scikit-learn allows any order in classes_)."""

    classes_ = np.array([2, 0, 1])

    def predict_proba(self, X):
        return np.tile([0.1, 0.7, 0.2], (len(X), 1))


def test_class_ids_come_from_classes_not_from_column_positions():
    predictions = predict_iris(Reordered(), [[5.1, 3.5, 1.4, 0.2]])
    assert predictions.best.tolist() == [1] and predictions.class_ids.tolist() == [0]


def test_training_leaves_the_callers_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train_simple_nn(epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_state_dict_round_trip_gives_the_same_network_in_eval_mode(tmp_path, net):
    path = save_state_dict(net, tmp_path / "new folder" / "iris_nn.pt")
    loaded = load_simple_nn(path)
    assert isinstance(loaded, SimpleNN) and not loaded.training
    X = torch.as_tensor(ROWS, dtype=torch.float32)
    with torch.inference_mode():
        assert torch.equal(net(X), loaded(X))
    assert set(torch.load(path, weights_only=True)) == set(net.state_dict())  # weights only, no pickled module


def test_weights_only_load_refuses_a_pickled_module(tmp_path, net):
    path = tmp_path / "whole_module.pt"
    torch.save(net, path)  # the whole object, i.e. pickled code
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_simple_nn(path)


def test_concurrent_forest_predictions_leave_the_warning_filters_alone(forest):
    """Without one prediction at a time, scikit-learn's per-call filter swap races across threads and replaces the
    process's warning filters (seen in CI: an emptied list, then a UserWarning on every later prediction)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    before = list(warnings.filters)

    def predict_many(_: int) -> None:
        for _ in range(300):
            predict_iris(forest, ROWS[:1])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(predict_many, range(8)))
    assert warnings.filters == before
