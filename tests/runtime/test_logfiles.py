"""Reading a log's end backwards: every line once, in any block size, within a window."""

import io

import pytest

from sutazai.runtime import logfiles
from sutazai.runtime.logfiles import lines_backwards

TEXTS = [b"", b"a", b"a\n", b"\n", b"\n\n", b"a\nb", b"a\nb\n", b"\nabc\n", b"ab\ncd\n\nef\n"]


@pytest.mark.parametrize("block", [1, 2, 3, 8192])
def test_lines_come_last_first_whatever_the_block_size(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfiles, "_BLOCK", block)
    for text in [*TEXTS, b"x" * 50 + b"\n" + b"y" * 3]:
        expected = text.split(b"\n")
        if expected[-1] == b"":
            expected.pop()
        assert list(lines_backwards(io.BytesIO(text)))[::-1] == expected, text


def test_a_window_drops_the_line_it_cuts() -> None:
    text = b"aaa\nbbb\nccc\n"
    assert list(lines_backwards(io.BytesIO(text), max_bytes=6)) == [b"ccc"]
    assert list(lines_backwards(io.BytesIO(text), max_bytes=8)) == [b"ccc", b"bbb"]
    assert list(lines_backwards(io.BytesIO(text), max_bytes=99)) == [b"ccc", b"bbb", b"aaa"]
    assert list(lines_backwards(io.BytesIO(text), end=8)) == [b"bbb", b"aaa"]
