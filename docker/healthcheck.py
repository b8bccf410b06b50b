"""The compose healthchecks' probe: exit 0 when the service answers within 5 s, 1 otherwise.

    healthcheck.py http://HOST:PORT/PATH     an HTTP answer 2xx
    healthcheck.py tls://HOST:PORT CERTS     a Dask connection to the sweep pool's scheduler, with the
                                             pool's certificates in CERTS (TLS both ways, then Dask's
                                             handshake), closed at once

The project image has Python but neither curl nor wget, and this needs nothing else.
"""

import sys
import urllib.request


def http(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return 0 if 200 <= response.status < 300 else 1


def dask(address: str, certs: str) -> int:
    # Dask's whole handshake, not a bare TCP connect: the scheduler logs every connection that hangs
    # up before the TLS handshake as a warning (a failed handshake), and this one not at all.
    import asyncio
    from pathlib import Path

    from distributed.comm import connect

    from flows.sweep.tls import security

    async def probe() -> None:
        comm = await connect(address, timeout=5, **security(Path(certs)).get_connection_args("client"))
        await comm.close()

    asyncio.run(probe())
    return 0


try:
    target = sys.argv[1]
    sys.exit(dask(target, sys.argv[2]) if target.startswith("tls://") else http(target))
except Exception as error:  # any failure is "unhealthy"; Docker keeps the message in `docker inspect`
    print(f"{' '.join(sys.argv[1:])}: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
