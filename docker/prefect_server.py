"""Start `prefect server start` with the given flags, after refusing a weak auth string.

The compose service `prefect-server` runs this. Its API asks every client (workers, `bp`, the
UI) for PREFECT_SERVER_API_AUTH_STRING, `user:password`: one that is short or blank would leave
the workers' shell open to anyone who guesses it, so the server does not start with it.
"""

from __future__ import annotations

import os
import sys

from flows.stack.secrets import auth_string_problem  # the rule bp stack up applies too


def main(argv: list[str] | None = None) -> None:
    problem = auth_string_problem(os.environ.get("PREFECT_SERVER_API_AUTH_STRING", ""))
    if problem:
        raise SystemExit(f"prefect_server: PREFECT_AUTH_STRING {problem}: set it in .env "
                         "(e.g. bp:<openssl rand -hex 24>)")
    os.execvp("prefect", ["prefect", "server", "start", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
