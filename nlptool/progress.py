"""A one-line progress count on standard error for work that takes a while
(decoding a test set, scoring a long text), shown only on a terminal so that
logs and pipes get no control characters."""

import sys
import time


class Progress:
    """`Progress(total, "sentences decoded")`; `update(done)` redraws the line, `close()` ends it."""

    def __init__(self, total, what, stream=None, every_seconds=0.5):
        self.total, self.what = total, what
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.every = every_seconds
        self.started = self._shown = time.monotonic()

    def update(self, done):
        now = time.monotonic()
        if not self.enabled or (now - self._shown < self.every and done < self.total):
            return
        self._shown = now
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(f"\r{done:,}/{self.total:,} {self.what} ({rate:,.0f}/s)")
        self.stream.flush()
        if done >= self.total:
            self.close()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False
