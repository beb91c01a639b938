"""backend="auto": the choice rule on given times, and the real start-up (timing, parity, /health, the CLI's log)."""

import pytest
import requests

from course_lib.apps.image_api import backend_of, create_app
from course_lib.servers import serve, serve_script
from course_lib.vision import MODEL_ENV, sample_images
from course_lib.vision.auto_backend import INT8_MARGIN, BackendChoice, auto_backend, choose


@pytest.mark.parametrize(
    ("p50_ms", "chosen"),
    [
        ({"torch": 10.0, "onnx": 6.0, "onnx-int8": 5.8}, "onnx"),  # int8 3 % faster: not worth its accuracy cost
        ({"torch": 10.0, "onnx": 6.0, "onnx-int8": 5.4}, "onnx-int8"),  # exactly 10 % faster: chosen
        ({"torch": 10.0, "onnx": 6.0, "onnx-int8": 5.41}, "onnx"),  # just under 10 % faster: not chosen
        ({"torch": 5.0, "onnx": 6.0, "onnx-int8": 5.6}, "torch"),  # int8 beats onnx, not the fastest fp32 (torch)
        ({"torch": 5.0, "onnx": 6.0}, "torch"),  # fp32 only: the faster one, whichever runtime
        ({"torch": 7.0, "onnx": 6.0, "onnx-int8": 9.0}, "onnx"),  # int8 slower than fp32 (no VNNI, S8S8…)
        ({"onnx-int8": 9.0}, "onnx-int8"),  # the only backend that started
    ],
)
def test_the_fastest_fp32_backend_wins_unless_int8_is_clearly_faster(p50_ms, chosen):
    name, reason = choose(p50_ms)
    assert name == chosen, (p50_ms, reason)
    assert chosen in reason


def test_the_reason_names_the_times_it_compared():
    _, reason = choose({"torch": 10.0, "onnx": 6.0, "onnx-int8": 5.8})
    assert "onnx was the fastest fp32 backend (6.0 ms; onnx-int8 5.8 ms, torch 10.0 ms)" in reason
    assert f"not at least {INT8_MARGIN:.0%} faster" in reason


def test_no_timed_backend_is_an_error():
    with pytest.raises(ValueError, match="no backend could be timed"):
        choose({})


def test_auto_is_the_default_times_every_backend_and_reports_its_choice_in_health(classifier):
    app = create_app(classifier)  # no backend named: auto
    choice = backend_of(app).choice
    assert isinstance(choice, BackendChoice)
    assert set(choice.p50_ms) == {"torch", "onnx", "onnx-int8"} and choice.excluded == {}
    assert all(ms > 0 for ms in choice.p50_ms.values())
    assert choice.chosen == choose(choice.p50_ms)[0]  # the rule applied to what it measured
    with serve(app) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        answer = requests.post(
            server.url + "/predict", files={"file": ("d.png", sample_images()["digit_1.png"])}, timeout=60
        )
    assert health["backend"] == choice.chosen and health["backend_choice"] == choice.as_dict()
    assert answer.status_code == 200 and answer.json()["backend"] == choice.chosen


def test_a_backend_that_fails_its_parity_check_is_never_chosen(classifier):
    backend = auto_backend(classifier, int8_min_agreement=1.01)  # no int8 model can agree on more than 100 %
    assert backend.choice.chosen in ("torch", "onnx")
    assert set(backend.choice.p50_ms) == {"torch", "onnx"}
    assert backend.choice.excluded["onnx-int8"].startswith("QuantizationParityError")


def test_a_named_backend_reports_no_choice(classifier):
    with serve(create_app(classifier, backend="onnx")) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
    assert health["backend"] == "onnx" and health["backend_choice"] is None


def test_the_cli_chooses_by_default_and_says_which_backend_and_why(classifier):
    command = "python -m course_lib serve image-api --port {port}"  # no --backend: auto
    with serve_script(command, env={MODEL_ENV: "digits"}, ready_path="/health", timeout=300) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        log = server.log()
    chosen = health["backend_choice"]["chosen"]
    assert health["backend"] == chosen, health
    assert f"backend auto → {chosen}: " in log and "median of one image: " in log, log
