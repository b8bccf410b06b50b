"""Exit 0 when a URL answers 2xx within 5 s, 1 otherwise: the compose healthchecks' probe.

The project image has Python but neither curl nor wget, and this needs nothing else.
"""

import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as error:  # any failure is "unhealthy"; Docker keeps the message in `docker inspect`
    print(f"{sys.argv[1]}: {error}", file=sys.stderr)
    sys.exit(1)
