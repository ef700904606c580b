"""One measured series on one line: its name, its latest figure, and a bar per sample."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from sutazai.tui.format import MISSING

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 7
FIGURE_WIDTH = 30
"""Cells kept for the figure (``r 1023.9 KiB/s w 1023.9 KiB/s`` fits), so bars never move."""


def bars(values: list[float], width: int, ceiling: float | None) -> str:
    """The last ``width`` values as bars, oldest first, scaled to ``ceiling``.

    A percentage is scaled to a fixed ceiling (100), so 3% never looks like a full bar; a rate
    has none and is scaled to the largest value shown. Zero is a blank, not the lowest bar.
    """
    shown = values[-width:] if width > 0 else []
    top = ceiling if ceiling is not None else max(shown, default=0.0)
    line = []
    for value in shown:
        if value <= 0 or top <= 0:
            line.append(" ")
            continue
        level = min(len(BARS) - 1, int(value / top * len(BARS)))
        line.append(BARS[level])
    return "".join(line)


class Trend(Widget):
    """``CPU    23.4%                ▂▃▅▇█▇▆``: a series the Hardware screen follows.

    :meth:`add` appends a sample with the figure that describes it; until the first, the
    figure is a dash and there are no bars.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"trend--label", "trend--bar", "trend--high"}

    DEFAULT_CSS = """
    Trend {
        height: 1;
    }
    Trend > .trend--label {
        text-style: bold;
    }
    Trend > .trend--bar {
        color: $accent;
    }
    Trend > .trend--high {
        color: $error;
    }
    """

    def __init__(
        self,
        label: str,
        *,
        history: int,
        ceiling: float | None = None,
        high: float | None = None,
        id: str | None = None,
    ) -> None:
        """A series called ``label`` keeping ``history`` samples.

        ``ceiling`` fixes the scale (100 for percentages); ``high`` draws the bars in the
        error colour when the latest value is at or above it.
        """
        super().__init__(id=id)
        self.label = label
        self.ceiling = ceiling
        self.high = high
        self.values: deque[float] = deque(maxlen=history)
        self.figure = Text(MISSING)

    def add(self, value: float, figure: Text) -> None:
        """Append ``value``, described by ``figure``, and redraw."""
        self.values.append(value)
        self.figure = figure
        self.refresh()

    def render(self) -> Text:
        """The label, the figure, and the bars that fit the rest of the width."""
        line = Text(no_wrap=True, overflow="crop")
        line.append(self.label.ljust(LABEL_WIDTH), self.get_component_rich_style("trend--label"))
        figure = self.figure.copy()
        figure.truncate(FIGURE_WIDTH - 1, overflow="ellipsis")
        figure.pad_right(FIGURE_WIDTH - figure.cell_len)
        line.append_text(figure)
        width = self.size.width - LABEL_WIDTH - FIGURE_WIDTH
        latest = self.values[-1] if self.values else 0.0
        hot = self.high is not None and latest >= self.high
        line.append(
            bars(list(self.values), width, self.ceiling),
            self.get_component_rich_style("trend--high" if hot else "trend--bar"),
        )
        return line
