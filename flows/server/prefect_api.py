"""The Prefect server a command talks to, checked before anything starts: one line, exit 2, within seconds.

Prefect's client would otherwise retry a server that is down, print tracebacks for one that asks
for an auth string, or wait for ever on a work pool nobody serves. Checked here: that the URL
answers as a Prefect API (``/health`` answers ``true``: not the MLflow server, whose ``/health``
says ``OK``), that it takes our auth string (``/admin/version`` needs it when the server has one),
and that a named work pool exists (listed through the REST API: no Prefect import).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from bpcore.errors import InputError
from flows.runtime.http import basic, request


def configured() -> tuple[str | None, str | None]:
    """The Prefect API URL and auth string of this process's settings (environment or profile). Both in the
    environment of a process that has not imported Prefect: read from there, as Prefect would (its environment
    wins over profiles and files), so a refusal does not wait for Prefect's imports."""
    url, auth = os.environ.get("PREFECT_API_URL"), os.environ.get("PREFECT_API_AUTH_STRING")
    if url and auth is not None and "prefect" not in sys.modules:
        return url, auth or None
    from prefect.settings import get_current_settings

    settings = get_current_settings().api
    auth = settings.auth_string.get_secret_value() if settings.auth_string else None
    return (str(settings.url) if settings.url else None), auth


def require(why: str) -> tuple[str, str | None]:
    """The configured API (URL, auth string), checked; an InputError saying ``why`` one is needed when none is."""
    url, auth = configured()
    if not url:
        raise InputError(f"PREFECT_API_URL is not set: {why} (bp stack up starts one and prints the lines to "
                         "export)")
    check(url, auth)
    return url, auth


def headers(auth: str | None) -> dict[str, str]:
    return basic(auth) if auth else {}


def check(url: str, auth: str | None, timeout: float = 5) -> None:
    """None if ``url`` is a Prefect API that accepts ``auth``; else an InputError naming what is wrong."""
    where = f"PREFECT_API_URL {url}"
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed [IPv6 address], a port that is not a number
        valid = False
    if not valid:
        raise InputError(f"PREFECT_API_URL {url!r}: not an http(s) URL; the API URL ends in /api, e.g. "
                         "http://127.0.0.1:4200/api")
    base = url.rstrip("/")
    status, answer = request("GET", f"{base}/health", timeout=timeout)
    if status == 0:
        raise InputError(f"{where}: no server answers there (is the Prefect server running?)")
    if status != 200 or answer is not True:
        hint = " (that looks like the MLflow server)" if answer == "OK" or _mlflow(base, timeout) else ""
        raise InputError(f"{where}: not a Prefect API{hint}: GET /health answered HTTP {status}; the API URL "
                         "ends in /api, e.g. http://127.0.0.1:4200/api")
    status, _ = request("GET", f"{base}/admin/version", headers(auth), timeout=timeout)
    if status == 401:
        raise InputError(f"{where}: the server refuses the PREFECT_API_AUTH_STRING given" if auth else
                         f"{where}: the server asks for an auth string: set PREFECT_API_AUTH_STRING (bp stack up "
                         "prints it)")
    if status != 200:
        raise InputError(f"{where}: GET /admin/version answered HTTP {status}")


def _mlflow(base: str, timeout: float) -> bool:
    root = base.removesuffix("/api")
    return request("GET", f"{root}/health", timeout=timeout) == (200, "OK")


def pool_names(url: str, auth: str | None, timeout: float = 10) -> list[str]:
    """The names of the work pools on the server at ``url`` (its REST API's filter, which Prefect's client reads
    too: a refusal needs no Prefect import)."""
    status, answer = request("POST", f"{url.rstrip('/')}/work_pools/filter", headers(auth), body={}, timeout=timeout)
    if status != 200 or not isinstance(answer, list):
        raise InputError(f"PREFECT_API_URL {url}: could not list its work pools (POST /work_pools/filter answered "
                         f"HTTP {status})")
    return sorted(pool["name"] for pool in answer)


def require_pool(url: str, auth: str | None, name: str, option: str = "--pool", hint: str = "") -> None:
    """An InputError naming the pools that exist on the server at ``url`` (``auth``: what ``require`` returned) when
    ``name`` is not one of them."""
    existing = pool_names(url, auth)
    if name not in existing:
        known = ", ".join(repr(p) for p in existing) if existing else "none"
        raise InputError(f"{option} {name!r}: no such work pool on {url} (work pools: {known}){hint}")

