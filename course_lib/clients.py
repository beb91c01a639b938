"""HTTP clients for the course's APIs: a requests session that retries what a retry can fix (notebook 07)."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRIED_STATUSES = (500, 502, 503, 504)  # a replica that died mid-request, a busy or restarting server


def retrying_session(attempts: int = 4, backoff_s: float = 0.1) -> requests.Session:
    """A session that resends a request up to `attempts` times after a 5xx above or a connection error, waiting
    longer each time (the first retry at once, then backoff_s × 2^(n-1) plus up to backoff_s of random jitter, or a
    503's Retry-After), never after a 4xx, and hands the last answer back instead of raising. For idempotent
    requests only: the course's /predict routes are."""
    retry = Retry(
        total=attempts,
        status_forcelist=RETRIED_STATUSES,
        allowed_methods=None,  # every method, POST too (urllib3 leaves POST out by default)
        backoff_factor=backoff_s,
        backoff_jitter=backoff_s,  # clients that failed together do not all come back at the same instant
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
