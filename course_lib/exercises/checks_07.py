"""Checks for the exercises of notebook 07 (scaling out with Ray Serve): a retrying client against a real server that
fails on purpose, a Serve config file validated by Ray's own schema, and a replica count by Little's law.

None of them starts Ray: a check must answer in seconds, and Ray takes tens of seconds to start on 2 cores. The
config check builds the application the config names (`build_image_app(args)` binds a deployment without Ray).
"""

from __future__ import annotations

import importlib
import itertools
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import requests
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from urllib3.util.retry import Retry

# ray_serving imports Ray quietly: without the PydanticDeprecatedSince20 warning of Ray's config models (the checks
# import those later, inside functions) and without the notebook-only noise of Ray's import.
from course_lib import ray_serving
from course_lib.servers import free_port, serve

# --- exercise 1: a client that retries with backoff -----------------------------------------------------------------

ATTEMPTS = 3
BACKOFF_S = 0.05  # small, so the whole check takes a few seconds
SLOW_BACKOFF_S = 0.2  # for the backoff case: large enough that its waits stand out from the time a request takes
RETRIED = (503, 500, 502, 504)  # a full queue (503), a replica killed with the request in flight (500), proxies
NOT_RETRIED = (400, 404, 413, 415, 422)  # the client's fault: the same request fails the same way again
NOT_FIXED_BY_RETRYING = (501, 505)  # server errors all the same, but no replica implements the method next time
RETRY_AFTER_S = 1
TIMEOUT_S = 10.0


def flaky_app() -> tuple[FastAPI, dict[str, list[float]]]:
    """A server that fails on purpose, and when each call arrived (time.monotonic) per key.

    POST /flaky/{key}?failures=N&status=S[&retry_after=R] answers S (a JSON error, with Retry-After: R if given)
    the first N times for that key, then 200 JSON.
    """
    app = FastAPI()
    calls: dict[str, list[float]] = defaultdict(list)

    @app.post("/flaky/{key}")
    async def flaky(key: str, failures: int = 0, status: int = 503, retry_after: int | None = None) -> JSONResponse:
        calls[key].append(time.monotonic())  # async route: one event loop, so no lock is needed
        call = len(calls[key])
        if call <= failures:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            body = {"error": "failing on purpose", "detail": f"call {call} of {failures} failing"}
            return JSONResponse(body, status_code=status, headers=headers)
        return JSONResponse({"label": "7", "call": call})

    return app, calls


class Flaky:
    """Posts to a running flaky_app with a session; each post uses a new key, so its calls are counted alone."""

    def __init__(self, url: str, calls: dict[str, list[float]]) -> None:
        self.url, self.calls = url, calls

    def post(
        self, session: requests.Session, failures: int, status: int = 503, retry_after: int | None = None
    ) -> tuple[int, list[float]]:
        """The status the caller finally sees and the times of the calls the server received."""
        key = uuid.uuid4().hex
        params = {"failures": failures, "status": status}
        if retry_after is not None:
            params["retry_after"] = retry_after
        try:
            response = session.post(f"{self.url}/flaky/{key}", params=params, json={"image": "..."}, timeout=TIMEOUT_S)
        except requests.exceptions.RetryError:
            raise AssertionError(
                f"{failures} 回続けて {status} を返すサーバーで、再試行を使い切ったところで例外（RetryError）に"
                "なりました。"
                f"最後の応答（{status}）をそのまま返してください: Retry(..., raise_on_status=False)。"
                "呼び出し側が 503 を見て、待つか諦めるかを決められるように"
            ) from None
        return response.status_code, self.calls[key]


def _session(retrying_session: Callable[[int, float], Any], attempts: int, backoff_s: float) -> requests.Session:
    """The learner's session for these settings, or a clear message when it is something else."""
    session = retrying_session(attempts, backoff_s)
    assert isinstance(session, requests.Session), (
        f"requests.Session を返してください（{type(session).__name__} でした）"
    )
    return session


def _retry_of(session: requests.Session, url: str) -> Retry:
    """The Retry of the adapter the session uses for url (requests turns max_retries=int into a Retry)."""
    retry = getattr(session.get_adapter(url), "max_retries", None)
    assert isinstance(retry, Retry), (
        'http:// に HTTPAdapter(max_retries=Retry(...)) をマウントしてください: session.mount("http://", adapter)'
    )
    return retry


def _why_not_retried(retry: Retry, status: int) -> str:
    """The likely reason a status was answered after one call, from the session's Retry."""
    if not retry.total:
        return (
            "再試行の設定がありません（素の requests.Session は再試行しません）。"
            'Retry(total=attempts, ...) を HTTPAdapter(max_retries=...) に渡し、session.mount("http://", adapter) で'
            "付けてください"
        )
    if retry.allowed_methods is not None and "POST" not in retry.allowed_methods:
        return (
            "POST が再試行されていません。urllib3 の Retry は既定では POST を再試行しません（送り直すと二重に処理される"
            "かもしれないため）。/predict は同じ画像に同じ答えを返す（冪等な）ので、allowed_methods=None"
            '（すべてのメソッド）か "POST" を含む集合にしてください'
        )
    if status not in retry.status_forcelist:
        return (
            f"{status} が再試行されていません: status_forcelist を 500, 502, 503, 504 にしてください"
            "（500 は止まったレプリカで処理中だったリクエスト、503 はキューがいっぱいのとき、502・504 は途中の"
            "プロキシの答えです）"
        )
    return f"{status} が 1 回目のまま返ってきました（Retry の設定を見直してください）"


def _check_recovers(session: requests.Session, flaky: Flaky, url: str, status: int) -> None:
    """A status of RETRIED answered twice, then 200: the caller sees 200 after exactly 3 calls."""
    got, calls = flaky.post(session, failures=2, status=status)
    if got == status and len(calls) == 1:
        raise AssertionError(_why_not_retried(_retry_of(session, url), status))
    assert (got, len(calls)) == (200, 3), (
        f"{status} を 2 回返してから 200 を返すサーバーに attempts={ATTEMPTS} で送ると、3 回目で 200 になるはずが、"
        f"{len(calls)} 回目で {got} でした（Retry(total=attempts, ...)）"
    )


def _check_gives_up(retrying_session: Callable[[int, float], Any], flaky: Flaky) -> None:
    """More failures than attempts: the caller sees the last 503 after exactly attempts + 1 calls."""
    for attempts in (ATTEMPTS, 1):
        session = _session(retrying_session, attempts, BACKOFF_S)
        got, calls = flaky.post(session, failures=attempts + 1)
        expected = attempts + 1  # the first call and `attempts` retries
        assert len(calls) <= expected, (
            f"attempts={attempts} なのに {len(calls)} 回送りました（再試行が {len(calls) - expected} 回多すぎます）。"
            "Retry(total=attempts) は「最初の 1 回に加えて、再試行を attempts 回まで」です"
        )
        assert len(calls) == expected, (
            f"attempts={attempts} なら最初の 1 回と再試行 {attempts} 回で {expected} 回送るはずが、{len(calls)} 回で"
            "諦めました。Retry(total=attempts) にしてください"
        )
        assert got == 503, f"再試行を使い切ったら最後の応答（503）を返してください（{got} でした）"


def _check_client_errors(session: requests.Session, flaky: Flaky) -> None:
    """A 4xx is the client's fault, a 501 or 505 the server's for good: answered after one call, never sent again."""
    for status in NOT_RETRIED:
        got, calls = flaky.post(session, failures=1, status=status)
        assert len(calls) == 1 and got == status, (
            f"{status} を再試行しました（{len(calls)} 回送って {got}）。4xx はクライアントの誤り（壊れた画像、"
            "大きすぎる本文、ないパス…）で、何度送っても同じ答えです。status_forcelist は 500, 502, 503, 504 だけに"
            "してください"
        )
    for status in NOT_FIXED_BY_RETRYING:
        got, calls = flaky.post(session, failures=1, status=status)
        assert len(calls) == 1 and got == status, (
            f"{status} を再試行しました（{len(calls)} 回送って {got}）。5xx でも、501（Not Implemented: そのメソッドを"
            "サーバーが持っていない）や 505（HTTP Version Not Supported）は、どのレプリカに送り直しても同じ答えで、"
            "待つ時間と負荷が増えるだけです。5xx をすべてではなく、500, 502, 503, 504 だけを再試行してください"
        )


def _check_retry_after(session: requests.Session, flaky: Flaky) -> None:
    """A 503 with Retry-After: the retry waits as long as the server asked, not the (short) backoff."""
    got, calls = flaky.post(session, failures=1, retry_after=RETRY_AFTER_S)
    assert got == 200 and len(calls) == 2, f"Retry-After 付きの 503 の後、再試行で 200 になりませんでした（{got}）"
    waited = calls[1] - calls[0]
    assert waited >= 0.9 * RETRY_AFTER_S, (
        f"503 の Retry-After: {RETRY_AFTER_S}（秒）に従っていません（{waited:.2f} 秒で送り直しました）。"
        "サーバーが待ってほしい時間を言っているので、respect_retry_after_header は True（既定）のままにしてください"
    )


def _check_backoff_factor(retrying_session: Callable[[int, float], Any]) -> None:
    """backoff_factor is the asked backoff_s (read from the Retry: a wait far too long is not worth timing)."""
    for backoff_s in (BACKOFF_S, SLOW_BACKOFF_S):
        factor = _retry_of(_session(retrying_session, ATTEMPTS, backoff_s), "http://127.0.0.1").backoff_factor
        if factor and not math.isclose(factor, backoff_s):  # 0 is the missing backoff, which the timing shows
            waits = ", ".join(f"{factor * 2 ** (n - 1):g}" for n in range(2, ATTEMPTS + 1))
            wanted = ", ".join(f"{backoff_s * 2 ** (n - 1):g}" for n in range(2, ATTEMPTS + 1))
            raise AssertionError(
                f"backoff_s={backoff_s} のセッションの backoff_factor が {factor:g} でした。引数の backoff_s を"
                f"そのまま渡してください（backoff_factor=backoff_s）。このままでは 2 回目以降の再試行の前に {waits} 秒"
                f"待ちます（{wanted} 秒のはず）。決まった値や、backoff_s に掛けた値ではなく、呼び出し側が決めた間隔です"
            )


def _check_backoff(retrying_session: Callable[[int, float], Any], flaky: Flaky) -> None:
    """Exponential backoff as urllib3 2 does it: the first retry at once, then backoff_s × 2^(n-1) before retry n."""
    _check_backoff_factor(retrying_session)
    session = _session(retrying_session, ATTEMPTS, SLOW_BACKOFF_S)
    got, calls = flaky.post(session, failures=ATTEMPTS)
    assert got == 200 and len(calls) == ATTEMPTS + 1, f"503 を {ATTEMPTS} 回返した後の 200 になりませんでした（{got}）"
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    for retry in (2, 3):
        # 3/4 of the wait: a loaded machine only makes the gap longer, and a backoff of 0 leaves ~0 s
        wanted = SLOW_BACKOFF_S * 2 ** (retry - 1)
        assert gaps[retry - 1] >= 0.75 * wanted, (
            f"再試行の間隔が指数的に延びていません（backoff_s={SLOW_BACKOFF_S} で、再試行の前に待った秒数: "
            + ", ".join(f"{gap:.2f}" for gap in gaps)
            + f"。{retry} 回目の前は約 {wanted:.1f} 秒のはず）。backoff_factor=backoff_s にしてください"
            "（urllib3 2 は 1 回目をすぐ送り、n 回目の前に backoff_s × 2^(n-1) 秒待ちます）"
        )


def _check_connection_errors(retrying_session: Callable[[int, float], Any]) -> None:
    """Connection errors are retried as often as statuses, and end in requests.ConnectionError, not another error."""
    url = f"http://127.0.0.1:{free_port()}"  # free right now: nothing listens there, the connection is refused
    session = _session(retrying_session, ATTEMPTS, BACKOFF_S)
    retry = _retry_of(session, url)
    assert retry.total == ATTEMPTS, f"Retry の total は attempts にしてください（attempts={ATTEMPTS} で {retry.total}）"
    for kind in ("connect", "read"):
        assert getattr(retry, kind) not in (0, False), (
            f"接続や読み取りのエラーも再試行してください: Retry の {kind} を 0 や False にしない（None なら total に"
            "従います）。レプリカが入れ替わる間は、接続が断られたり、答えの途中で切れたりします"
        )
    try:
        session.post(f"{url}/predict", json={"image": "..."}, timeout=TIMEOUT_S)
    except requests.ConnectionError:
        return
    raise AssertionError("誰も待ち受けていないポートに送ったのに、requests.ConnectionError になりませんでした")


def check_retrying_session(retrying_session: Callable[[int, float], Any]) -> None:
    """Exercise 1: retrying_session(attempts, backoff_s) retries 5xx and connection errors, POST too, with backoff
    and Retry-After, never a 4xx, and returns the last answer; tested against a real server over HTTP."""
    session = _session(retrying_session, ATTEMPTS, BACKOFF_S)
    app, calls = flaky_app()
    with serve(app) as server:
        flaky = Flaky(server.url, calls)
        for status in RETRIED:
            _check_recovers(session, flaky, server.url, status)
        _check_gives_up(retrying_session, flaky)
        _check_client_errors(session, flaky)
        _check_retry_after(session, flaky)
        _check_backoff(retrying_session, flaky)
    _check_connection_errors(retrying_session)


# --- exercise 2: a Serve config file ------------------------------------------------------------------------------

APP_NAME = "image_api"
IMPORT_PATH = "course_lib.ray_serving:build_image_app"
APP_ARGS = {"model": "digits", "name": "image_api"}
# (cluster_cpus, cpus_per_replica, port): exact fits, a fraction of a CPU, remainders (3/2 and 5/2: round() and
# ceil() differ from floor() there), and a replica larger than the cluster
CONFIG_CASES = ((2, 1, 8123), (4, 0.5, 8124), (3, 2, 8125), (5, 2, 8126), (8, 1.5, 8127), (1, 2, 8128))


def _only(items: Any, what: str) -> dict[str, Any]:
    """The single dict of a list (the config's one application, its one deployment)."""
    assert isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict), (
        f"{what} は辞書 1 つだけのリストにしてください（{items!r} でした）"
    )
    return items[0]


def _num_replicas(config: dict[str, Any]) -> Any:
    """num_replicas of the config's deployment, or None when the config does not have that shape."""
    try:
        return config["applications"][0]["deployments"][0].get("num_replicas")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _check_replica_count_shape(config: dict[str, Any]) -> None:
    """num_replicas is a positive int: the two mistakes Ray's schema reports without saying what to do."""
    replicas = _num_replicas(config)
    if replicas is None:
        return
    assert isinstance(replicas, int) and not isinstance(replicas, bool), (
        f"num_replicas は整数（int）にしてください（{replicas!r} でした。// は float 同士なら float を返します: "
        "4 // 0.5 == 8.0。int(...) か math.floor(...) で）"
    )
    assert replicas >= 1, (
        f"num_replicas は少なくとも 1 にしてください（{replicas} でした）。1 つのレプリカも載らないクラスターでも"
        " 0 にはしません（Serve は 0 を受け付けません）。max(1, ...) で下限を付けてください"
    )


def _validate_with_ray(config: dict[str, Any]) -> None:
    """Ray's own schema for the file `serve deploy` reads; its complaints as an AssertionError."""
    from ray.serve.schema import ServeDeploySchema  # after course_lib.ray_serving (see the import at the top)

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors(include_url=False)
        )
        raise AssertionError(f"Ray の Serve 設定のスキーマ（ServeDeploySchema）が受け付けません — {problems}") from None


def _check_http_options(config: dict[str, Any], port: int) -> None:
    """Each node's proxy listens on every address (the load balancer in front reaches it), at the asked port."""
    http = config.get("http_options")
    assert isinstance(http, dict), 'http_options を辞書で書いてください: {"host": "0.0.0.0", "port": port}'
    assert http.get("host") == "0.0.0.0", (
        f'host は "0.0.0.0" にしてください（{http.get("host")!r} でした）。'
        + (
            "127.0.0.1 では、そのノードの中からしか届きません。"
            if http.get("host") in ("127.0.0.1", "localhost")
            else ""
        )
        + "クラスターの各ノードのプロキシは、前に置いたロードバランサーから受けます。"
        "そのポートは、ファイアウォールでロードバランサーにだけ開けます"
    )
    got = http.get("port")
    assert isinstance(got, int) and not isinstance(got, bool), (
        f"port は整数（int）にしてください（{got!r} でした。YAML に引用符付きの文字列として書かれてしまいます）"
    )
    assert got == port, f"port は引数の port（{port}）にしてください（{got} でした。決まった値ではなく引数を使います）"


def _deployment_name_of(import_path: str, args: Any) -> str:
    """Import the builder the config names, call it with the args, and return its deployment's name (no Ray)."""
    module_name, _, attribute = import_path.rpartition(":" if ":" in import_path else ".")
    try:
        builder = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise AssertionError(
            f"import_path {import_path!r} を import できません（{type(error).__name__}: {error}）。"
            f"「モジュール:名前」で、講座のビルダー {IMPORT_PATH!r} を指してください"
        ) from None
    app = builder(args) if callable(builder) else builder
    assert isinstance(app, ray_serving.serve.Application), (
        f"import_path {import_path!r} は、args を受け取って Serve の Application を返すビルダーを指してください"
        f"（{type(app).__name__} が返りました）"
    )
    # serve.Application has no public accessor for its deployment; _bound_deployment is what serve.run deploys
    return app._bound_deployment.name


def _replica_count_message(got: Any, cluster_cpus: float, cpus_per_replica: float, expected: int) -> str:
    """What is wrong with a replica count, in the learner's terms."""
    fits = math.floor(cluster_cpus / cpus_per_replica)
    where = f"cluster_cpus={cluster_cpus}, cpus_per_replica={cpus_per_replica}"
    if got is None:
        return f"deployments に num_replicas を書いてください（{where} なら {expected}）"
    if got > expected:
        return (
            f"{where} で num_replicas={got} では、{got - expected} 個のレプリカがどのノードにも載らず、いつまでも起動"
            f"待ち（PENDING）のままです。載るのは切り捨てた数 floor({cluster_cpus} / {cpus_per_replica}) = {fits} "
            "です（round や ceil ではなく math.floor か //）"
        )
    return (
        f"{where} なら {expected} 個のレプリカが載ります（num_replicas={got} でした。"
        "floor(cluster_cpus / cpus_per_replica)）"
    )


def _check_config(
    config: Any, cluster_cpus: float, cpus_per_replica: float, port: int, deployment_names: dict[str, str]
) -> None:
    """One config: Ray's schema, then what it must say for this cluster."""
    assert isinstance(config, dict), f"設定を辞書（dict）で返してください（{type(config).__name__} でした）"
    _check_replica_count_shape(config)
    _validate_with_ray(config)
    _check_http_options(config, port)
    app = _only(config.get("applications"), "applications")
    for key, value in (("name", APP_NAME), ("route_prefix", "/"), ("args", APP_ARGS)):
        assert app.get(key) == value, f"アプリケーションの {key} は {value!r} にしてください（{app.get(key)!r} でした）"
    import_path = app["import_path"]
    if import_path not in deployment_names:  # the builder is the same for every case: build it once
        deployment_names[import_path] = _deployment_name_of(import_path, app["args"])
    built = deployment_names[import_path]
    deployment = _only(app.get("deployments"), "deployments")
    assert deployment["name"] == built, (
        f"deployments の name は、ビルダーが作る deployment の名前 {built!r} と同じにしてください"
        f"（{deployment['name']!r} でした）。違う名前だと serve deploy が「Deployment ... does not exist」で失敗します"
    )
    expected = max(1, math.floor(cluster_cpus / cpus_per_replica))
    got = deployment.get("num_replicas")
    assert got == expected, _replica_count_message(got, cluster_cpus, cpus_per_replica, expected)
    options = deployment.get("ray_actor_options") or {}
    assert options.get("num_cpus") == cpus_per_replica, (
        f'ray_actor_options を {{"num_cpus": {cpus_per_replica}}} にしてください（{options or "なし"} でした）。'
        "書かないと Serve は 1 レプリカに 1 CPU を予約し、計算したレプリカの数とクラスターが合いません"
    )


def check_serve_config(serve_config: Callable[[float, float, int], Any]) -> None:
    """Exercise 2: serve_config(cluster_cpus, cpus_per_replica, port) is a Serve config file's dict that Ray's schema
    accepts, naming the course's builder and as many replicas as fit the cluster (at least 1); Ray is not started."""
    deployment_names: dict[str, str] = {}
    for cluster_cpus, cpus_per_replica, port in CONFIG_CASES:
        _check_config(
            serve_config(cluster_cpus, cpus_per_replica, port), cluster_cpus, cpus_per_replica, port, deployment_names
        )


# --- exercise 3: how many replicas ----------------------------------------------------------------------------------

# (peak_rps, latency_s, target_ongoing, cluster_cpus, cpus_per_replica) → max_replicas
AUTOSCALING_CASES = (
    ((40, 0.1, 2, 8, 1), 2),  # 4 in flight, 2 per replica
    ((100, 0.1, 2, 8, 1), 5),
    ((100, 0.25, 2, 8, 1), 8),  # 13 needed, 8 fit: capped by the cluster
    ((100, 0.25, 2, 8, 2), 4),  # 4 fit
    ((1, 0.01, 2, 8, 1), 1),  # almost idle: still one replica
    ((30, 0.1, 2, 8, 1), 2),  # 3 in flight / 2 = 1.5: rounded up
    ((100, 0.1, 5, 8, 1), 2),  # another target than Serve's default (2): it must be the one given
    ((100, 0.25, 2, 7, 2), 3),  # 3.5 replicas fit: only 3 whole ones (ceil and round give 4)
    ((100, 0.25, 2, 3, 0.5), 6),  # 6 fit, as an int (3 // 0.5 is the float 6.0)
    ((100, 0.1, 2, 1, 2), 1),  # not even one replica fits: still 1, Ray refuses a max_replicas of 0
)


def _likely_mistake(got: Any, case: tuple[float, ...], expected: int) -> str:
    """A hint when got is what a likely wrong formula gives for this case, else ''."""
    peak_rps, latency_s, target, cluster_cpus, cpus_per_replica = case
    fits = math.floor(cluster_cpus / cpus_per_replica)
    in_flight = peak_rps * latency_s
    hints = (
        (
            min(fits, max(1, math.floor(in_flight / target))),
            "足りない分は切り上げます（math.ceil）: 端数の分も 1 レプリカ要ります",
        ),
        (
            max(1, math.ceil(in_flight / target)),
            f"クラスターに載る数（floor(cluster_cpus / cpus_per_replica) = {fits}）を超えています",
        ),
        (
            max(1, min(math.ceil(in_flight / target), math.ceil(cluster_cpus / cpus_per_replica))),
            f"クラスターに載る数は切り捨てです（floor({cluster_cpus} / {cpus_per_replica}) = {fits}）。"
            f"{cluster_cpus / cpus_per_replica:g} を切り上げたり四捨五入したりして数えたレプリカは、1 レプリカ分の"
            " CPU がどのノードにも空いていないので、いつまでも起動待ち（PENDING）のままです",
        ),
        (
            min(fits, max(1, math.ceil(peak_rps / latency_s / target))),
            "同時に処理中のリクエストは peak_rps × latency_s（リトルの法則）です。割り算ではありません",
        ),
        (
            min(fits, max(1, math.ceil(in_flight))),
            "1 レプリカが target_ongoing 件ずつ受け持つので、処理中の数を target_ongoing で割ります",
        ),
    )
    return next((hint for value, hint in hints if value == got != expected), "")


def _check_max_replicas_shape(got: Any, case: tuple[float, ...]) -> None:
    """max_replicas is a positive int: the two mistakes Ray's schema reports without saying what to do."""
    cluster_cpus, cpus_per_replica = case[3:]
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return  # missing or of another type: Ray's schema says so
    assert isinstance(got, int), (
        f"max_replicas は整数（int）にしてください（cluster_cpus={cluster_cpus}, cpus_per_replica={cpus_per_replica}"
        f" で {got!r} でした。// は float 同士なら float を返します: {cluster_cpus} // {cpus_per_replica} == "
        f"{cluster_cpus // cpus_per_replica!r}。math.floor(...) なら int です）"
    )
    assert got >= 1, (
        f"max_replicas は少なくとも 1 にしてください（cluster_cpus={cluster_cpus}, cpus_per_replica={cpus_per_replica}"
        f" で {got} でした）。1 レプリカも載らないクラスターでも 0 にはしません（Ray の AutoscalingConfig は 0 を"
        "受け付けません）。載る数で頭打ちにした後に max(1, ...) で下限を付けてください"
    )


def _check_autoscaling(config: Any, case: tuple[float, ...], expected: int) -> None:
    """One autoscaling_config: Ray's schema, then min 1, the given target and Little's law's max."""
    from ray.serve.config import AutoscalingConfig  # after course_lib.ray_serving (see the import at the top)

    assert isinstance(config, dict), (
        f"autoscaling_config を辞書（dict）で返してください（{type(config).__name__} でした）"
    )
    _check_max_replicas_shape(config.get("max_replicas"), case)
    try:
        AutoscalingConfig.model_validate(config)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors(include_url=False))
        raise AssertionError(f"Ray の AutoscalingConfig が受け付けません — {problems}") from None
    target = case[2]
    assert "target_ongoing_requests" in config, (
        f"target_ongoing_requests を書いてください（引数の target_ongoing = {target}）。書かないと Serve の既定値"
        f"（{AutoscalingConfig.model_fields['target_ongoing_requests'].default}）が黙って使われ、max_replicas の"
        "計算の前提と食い違います"
    )
    assert config["target_ongoing_requests"] == target, (
        f"target_ongoing_requests は引数の target_ongoing（{target}）にしてください"
        f"（{config['target_ongoing_requests']} でした）"
    )
    assert config.get("min_replicas") == 1, (
        f"min_replicas は 1 にしてください（{config.get('min_replicas')} でした）。0 だと誰も使わない間にレプリカが"
        " 0 まで減り、次の最初のリクエストは、レプリカの起動（Ray のワーカー、torch の import、モデルの読み込み）が"
        "終わるまで数秒から十数秒待たされます（コールドスタート）"
    )
    got = config.get("max_replicas")
    names = "peak_rps, latency_s, target_ongoing, cluster_cpus, cpus_per_replica"
    assert got == expected, f"({names}) = {case} なら max_replicas は {expected} です（{got} でした）。" + (
        _likely_mistake(got, case, expected)
        or "処理中の数 = peak_rps × latency_s、÷ target_ongoing を切り上げ、クラスターに載る数で頭打ち"
    )


def check_autoscaling_for(autoscaling_for: Callable[[float, float, float, float, float], Any]) -> None:
    """Exercise 3: autoscaling_for(...) is an autoscaling_config Ray accepts: min 1, the given target, and max
    replicas from Little's law (peak_rps × latency_s in flight ÷ target, rounded up), capped by what fits."""
    for case, expected in AUTOSCALING_CASES:
        _check_autoscaling(autoscaling_for(*case), case, expected)
