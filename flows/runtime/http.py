"""Every HTTP request bp makes itself, with the standard library only: the checks made before anything starts
(is a server there, does it take our credentials, does a work pool exist) and ``bp stack``'s calls; and a
URL fit for a message, its password hidden.

The standard library, not httpx or requests (which Prefect and MLflow bring): these requests run in the command's
first second, before either library is imported, and one at a time; urllib needs no import of its own beyond what
Python loads anyway (httpx's import alone takes about a tenth of a second).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the rest as given, even when it does not parse further)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url.replace(f":{password}@", ":***@", 1) if password else url


def basic(credentials: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth for ``user:password`` (Prefect's auth string is one)."""
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def request(method: str, url: str, headers: dict | None = None, body=None, timeout: float = 3) -> tuple[int, object]:
    """(status, parsed JSON or text) of one request; status 0 when nothing answers."""
    status, text, _ = exchange(method, url, headers, body, timeout)
    if status == 0:
        return 0, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def exchange(method: str, url: str, headers: dict | None = None, body=None, timeout: float = 3,
             context: ssl.SSLContext | None = None) -> tuple[int, str, BaseException | None]:
    """(status, body text, None) of one request that was answered, any status; (0, "", why) when none was:
    the refused connection, timeout, unknown host, untrusted certificate or broken answer."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
    try:
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # ValueError: a malformed URL
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return response.status, response.read().decode(errors="replace"), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), None
    except urllib.error.URLError as exc:
        return 0, "", exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # a reset, a bad port, not HTTP
        return 0, "", exc
