"""The notebook-07 exercise checks accept the solutions notebook's answers (run from solutions/07 itself, so the test
and the notebook cannot drift apart), reject each likely wrong answer with its Japanese message, and report
unfinished ones. Exercise 1's check runs a real server over real HTTP; none of the checks starts Ray."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import requests
from helpers import solution_namespace
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from course_lib.clients import retrying_session
from course_lib.exercises import checks_07

SOLUTION_NAMES = ("retrying_session", "serve_config", "autoscaling_for")


@pytest.fixture(scope="module")
def solution(tmp_path_factory) -> dict[str, Any]:
    """The solutions notebook's definitions, run in a scratch folder (one cell writes artifacts/serve_config.yaml)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("solutions_07"))
        return solution_namespace("07", SOLUTION_NAMES)


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented():
    for call in (
        lambda: checks_07.check_retrying_session(not_implemented),
        lambda: checks_07.check_serve_config(not_implemented),
        lambda: checks_07.check_autoscaling_for(not_implemented),
    ):
        with pytest.raises(NotImplementedError, match="^$"):
            call()


def test_every_exercise_accepts_the_solution(solution):
    checks_07.check_retrying_session(solution["retrying_session"])
    checks_07.check_serve_config(solution["serve_config"])
    checks_07.check_autoscaling_for(solution["autoscaling_for"])


def test_the_checks_do_not_start_ray(solution):
    import ray

    checks_07.check_serve_config(solution["serve_config"])
    checks_07.check_autoscaling_for(solution["autoscaling_for"])
    assert not ray.is_initialized()


# Exercise 1: a client that retries with backoff


def with_retry(retrying_session: Callable[[int, float], requests.Session], **changes: Any):
    """The solution's session with its Retry changed (a value, or a function of attempts): one wrong answer each."""

    def make(attempts: int, backoff_s: float) -> requests.Session:
        session = retrying_session(attempts, backoff_s)
        retry = session.get_adapter("http://").max_retries
        values = {key: value(attempts) if callable(value) else value for key, value in changes.items()}
        session.mount("http://", HTTPAdapter(max_retries=retry.new(**values)))
        return session

    return make


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(status_forcelist={503}), "500 が再試行されていません"),
        (dict(status_forcelist={400, 500, 502, 503, 504}), "400 を再試行しました"),
        (dict(status_forcelist=set(range(400, 600))), "4xx はクライアントの誤り"),
        (dict(status_forcelist=set(range(500, 600))), "501 を再試行しました"),
        (dict(status_forcelist={500, 502, 503, 504, 505}), "505 を再試行しました"),
        (dict(allowed_methods=Retry.DEFAULT_ALLOWED_METHODS), "POST が再試行されていません"),
        (dict(raise_on_status=True), "raise_on_status=False"),
        (dict(respect_retry_after_header=False), "Retry-After: 1（秒）に従っていません"),
        (dict(backoff_factor=0), "指数的に延びていません"),
        (dict(total=lambda attempts: attempts + 1), "1 回多すぎます"),
        (dict(total=lambda attempts: attempts - 1), "諦めました"),
        (dict(total=lambda attempts: 3), "多すぎます"),  # attempts ignored: right only for attempts=3
        (dict(connect=0), "読み取りのエラーも再試行"),
        (dict(read=False), "読み取りのエラーも再試行"),
    ],
    ids=[
        "only-503",
        "retries-400",
        "retries-all-errors",
        "retries-every-5xx",
        "retries-505",
        "post-not-allowed",
        "raises-at-the-end",
        "ignores-retry-after",
        "no-backoff",
        "one-retry-too-many",
        "one-retry-too-few",
        "fixed-total",
        "no-connect-retry",
        "no-read-retry",
    ],
)
def test_retrying_session_rejects_wrong_retries(solution, changes, message):
    with pytest.raises(AssertionError, match=message):
        checks_07.check_retrying_session(with_retry(solution["retrying_session"], **changes))


def with_backoff(retrying_session: Callable[[int, float], requests.Session], factor_of: Callable[[float], float]):
    """The solution's session with backoff_factor=factor_of(backoff_s)."""

    def make(attempts: int, backoff_s: float) -> requests.Session:
        session = retrying_session(attempts, backoff_s)
        retry = session.get_adapter("http://").max_retries
        session.mount("http://", HTTPAdapter(max_retries=retry.new(backoff_factor=factor_of(backoff_s))))
        return session

    return make


@pytest.mark.parametrize(
    ("factor_of", "message"),
    [
        (lambda backoff_s: 0.5, "backoff_s=0.05 のセッションの backoff_factor が 0.5"),  # waits far too long
        (lambda backoff_s: checks_07.BACKOFF_S, "backoff_s=0.2 のセッションの backoff_factor が 0.05"),
        (lambda backoff_s: 2 * backoff_s, "backoff_factor が 0.1 でした"),
        (lambda backoff_s: backoff_s / 2, "backoff_factor が 0.025 でした"),
    ],
    ids=["hard-coded-long", "hard-coded-as-the-check-s-first", "doubled", "halved"],
)
def test_retrying_session_rejects_a_backoff_other_than_the_parameter(solution, factor_of, message):
    with pytest.raises(AssertionError, match=message):
        checks_07.check_retrying_session(with_backoff(solution["retrying_session"], factor_of))


def test_retrying_session_rejects_a_session_without_retries():
    with pytest.raises(AssertionError, match="再試行の設定がありません"):
        checks_07.check_retrying_session(lambda attempts, backoff_s: requests.Session())


def test_retrying_session_rejects_an_adapter_mounted_for_https_only(solution):
    def https_only(attempts: int, backoff_s: float) -> requests.Session:
        session = requests.Session()
        session.mount("https://", solution["retrying_session"](attempts, backoff_s).get_adapter("http://"))
        return session

    with pytest.raises(AssertionError, match="再試行の設定がありません"):
        checks_07.check_retrying_session(https_only)


def test_retrying_session_rejects_something_else_than_a_session(solution):
    with pytest.raises(AssertionError, match="requests.Session を返してください（HTTPAdapter でした）"):
        checks_07.check_retrying_session(lambda a, b: solution["retrying_session"](a, b).get_adapter("http://"))


# Exercise 2: a Serve config file


def edited_config(serve_config: Callable[..., dict[str, Any]], edit: Callable[..., None]):
    """The solution's config, edited in place by edit(config, deployment, cluster_cpus, cpus_per_replica, port)."""

    def make(cluster_cpus: float, cpus_per_replica: float, port: int) -> dict[str, Any]:
        config = serve_config(cluster_cpus, cpus_per_replica, port)
        edit(config, config["applications"][0]["deployments"][0], cluster_cpus, cpus_per_replica, port)
        return config

    return make


def replicas(count: Callable[[float, float], Any]) -> Callable[..., None]:
    """An edit that sets num_replicas by another formula of (cluster_cpus, cpus_per_replica)."""
    return lambda config, deployment, cpus, per_replica, port: deployment.update(num_replicas=count(cpus, per_replica))


def http(**options: Any) -> Callable[..., None]:
    """An edit of http_options (a function of the asked port, or a value)."""
    return lambda config, deployment, cpus, per_replica, port: config["http_options"].update(
        {key: value(port) if callable(value) else value for key, value in options.items()}
    )


def application(**options: Any) -> Callable[..., None]:
    """An edit of the application's entries."""
    return lambda config, deployment, cpus, per_replica, port: config["applications"][0].update(options)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (http(host="127.0.0.1"), "127.0.0.1 では、そのノードの中からしか届きません"),
        (http(host="example.org"), 'host は "0.0.0.0"'),
        (http(port=str), "port は整数"),
        (http(port=8000), "port は引数の port"),
        (replicas(lambda cpus, per_replica: round(cpus / per_replica)), "載らず"),
        (replicas(lambda cpus, per_replica: max(1, math.ceil(cpus / per_replica))), "載らず"),
        (replicas(lambda cpus, per_replica: math.floor(cpus / per_replica)), "少なくとも 1"),
        (replicas(lambda cpus, per_replica: max(1, cpus // per_replica)), "整数（int）"),
        (replicas(lambda cpus, per_replica: 1), "個のレプリカが載ります"),
        (lambda config, deployment, *case: deployment.update(name="ImageAPI"), "deployment の名前 'image_api'"),
        (lambda config, deployment, *case: deployment.pop("ray_actor_options"), "1 レプリカに 1 CPU"),
        (lambda config, deployment, *case: deployment.pop("num_replicas"), "num_replicas を書いて"),
        (application(import_path="course_lib.serving:build_image_app"), "import できません"),
        (application(import_path="course_lib.ray_serving:build_app"), "import できません"),
        (application(import_path="course_lib.ray_serving:image_api_deployment"), "Application を返すビルダー"),
        (application(import_path="build_image_app"), "ServeDeploySchema"),
        (application(args={"model": "digits"}), "args"),
        (application(route_prefix="/api"), "route_prefix"),
    ],
    ids=[
        "host-loopback",
        "host-other",
        "port-string",
        "port-8000",
        "round",
        "ceil",
        "zero-replicas",
        "float-replicas",
        "one-replica",
        "deployment-name",
        "no-num-cpus",
        "no-num-replicas",
        "module-not-found",
        "name-not-found",
        "not-a-builder",
        "no-module",
        "args",
        "route-prefix",
    ],
)
def test_serve_config_rejects_wrong_configs(solution, edit, message):
    with pytest.raises(AssertionError, match=message):
        checks_07.check_serve_config(edited_config(solution["serve_config"], edit))


def test_serve_config_rejects_something_else_than_a_dict(solution):
    with pytest.raises(AssertionError, match="辞書"):
        checks_07.check_serve_config(lambda *case: "http_options: ...")


# Exercise 3: how many replicas


def max_replicas_by(formula: Callable[[float, float, float, float, float], int]):
    """The solution with max_replicas from another formula of the five arguments."""

    def wrong(autoscaling_for: Callable[..., dict[str, Any]]):
        return lambda *case: {**autoscaling_for(*case), "max_replicas": formula(*case)}

    return wrong


def fits(cpus: float, per_replica: float) -> int:
    return math.floor(cpus / per_replica)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (max_replicas_by(lambda rps, s, t, c, p: min(fits(c, p), max(1, math.floor(rps * s / t)))), "端数の分も"),
        (max_replicas_by(lambda rps, s, t, c, p: max(1, math.ceil(rps * s / t))), "載る数"),
        (max_replicas_by(lambda rps, s, t, c, p: min(fits(c, p), max(1, math.ceil(rps / s / t)))), "リトルの法則"),
        (max_replicas_by(lambda rps, s, t, c, p: min(fits(c, p), max(1, math.ceil(rps * s)))), "target_ongoing で割り"),
        (lambda solved: lambda *case: {**solved(*case), "min_replicas": 0}, "コールドスタート"),
        (
            lambda solved: lambda *case: {k: v for k, v in solved(*case).items() if k != "target_ongoing_requests"},
            "既定値",
        ),
        (lambda solved: lambda *case: {**solved(*case), "target_ongoing_requests": 1}, "引数の target_ongoing"),
        (lambda solved: lambda *case: {**solved(*case), "max_replicas": 0}, "少なくとも 1"),
        (
            max_replicas_by(lambda rps, s, t, c, p: max(1, min(math.ceil(rps * s / t), math.ceil(c / p)))),
            r"切り捨てです（floor\(7 / 2\) = 3）",
        ),
        (
            max_replicas_by(lambda rps, s, t, c, p: max(1, min(math.ceil(rps * s / t), round(c / p)))),
            r"切り捨てです（floor\(7 / 2\) = 3）",
        ),
        (
            max_replicas_by(lambda rps, s, t, c, p: min(math.ceil(rps * s / t), fits(c, p))),
            r"cluster_cpus=1, cpus_per_replica=2 で 0 でした）。1 レプリカも載らない",
        ),
        (
            max_replicas_by(lambda rps, s, t, c, p: min(max(1, math.ceil(rps * s / t)), fits(c, p))),
            "max_replicas は少なくとも 1",
        ),
        (max_replicas_by(lambda rps, s, t, c, p: max(1, min(math.ceil(rps * s / t), c // p))), r"整数（int）.*6\.0"),
        (lambda solved: lambda *case: [solved(*case)], "辞書"),
    ],
    ids=[
        "floor",
        "no-cap",
        "rps-over-latency",
        "not-divided",
        "scale-to-zero",
        "no-target",
        "other-target",
        "zero-max",
        "fits-rounded-up",
        "fits-rounded",
        "zero-when-nothing-fits",
        "lower-bound-before-the-cap",
        "float-from-floor-division",
        "not-a-dict",
    ],
)
def test_autoscaling_for_rejects_wrong_configs(solution, wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_07.check_autoscaling_for(wrong(solution["autoscaling_for"]))


def test_the_lesson_s_retrying_session_passes_the_learner_s_check():
    """Notebook 07 sends its load through course_lib.clients.retrying_session: it must be a right answer too."""
    checks_07.check_retrying_session(retrying_session)
