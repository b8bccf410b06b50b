"""``python -m flows.runtime.deathsig PARENT_PID COMMAND...``: run COMMAND, sent SIGTERM when its parent dies.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is set in this process, which then
becomes COMMAND (``execv``: the setting survives it). The kernel delivers it however the parent
ends, SIGKILL included; a parent that already died before the setting took is noticed and
COMMAND is not started. Elsewhere COMMAND simply runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
        if os.getppid() != parent:  # the parent went before the setting took: nobody is left to stop us
            sys.exit(0)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
