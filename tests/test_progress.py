"""The progress line: counts on a terminal, nothing in a pipe or a log."""

import io

from nlptool.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_sees_the_count_and_a_final_newline():
    stream = Terminal()
    progress = Progress(10, "inputs decoded", stream=stream, every_seconds=0)
    for done in range(1, 11):
        progress.update(done)
    lines = stream.getvalue().split("\r")
    assert lines[1].startswith("1/10 inputs decoded (")
    assert lines[-1].startswith("10/10 inputs decoded (") and lines[-1].endswith("/s)\n")
    progress.update(10)  # closed: nothing more
    assert stream.getvalue().count("\n") == 1


def test_a_pipe_sees_nothing():
    stream = io.StringIO()
    progress = Progress(3, "tokens scored", stream=stream, every_seconds=0)
    for done in (1, 2, 3):
        progress.update(done)
    progress.close()
    assert stream.getvalue() == ""
