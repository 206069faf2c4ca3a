"""Keep stdout for the command's own output while node bodies run in this process.

A Python node body that calls print() writes to the process's stdout, which would corrupt
`run --json` and the tables. Node bodies run on worker threads; the command writes from the
main thread. While a command works, writes from any other thread go to stderr instead.
"""

from __future__ import annotations

import contextlib
import sys
import threading


class _MainThreadOnly:
    def __init__(self, out, err):
        self._out = out
        self._err = err

    def _target(self):
        return self._out if threading.current_thread() is threading.main_thread() else self._err

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        return self._target().writelines(lines)

    def flush(self):
        for stream in (self._out, self._err):
            with contextlib.suppress(Exception):
                stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer...: those of the real stdout
        return getattr(self._out, name)


@contextlib.contextmanager
def node_output_to_stderr():
    real = sys.stdout
    sys.stdout = _MainThreadOnly(real, sys.stderr)
    try:
        yield
    finally:
        sys.stdout = real
