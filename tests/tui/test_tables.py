"""Keyed tables change only the cells a message changes."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.strip import Strip
from textual.widgets.data_table import ColumnKey

from sutazai.tui.widgets.tables import KeyedTable

COLUMNS = [("name", "Name", None), ("state", "State", 9)]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS)


def rows(*pairs: tuple[str, str]) -> dict[str, list[Text]]:
    return {name: [Text(name), Text(state)] for name, state in pairs}


async def test_sync_updates_changed_cells_in_place_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(("a", "healthy"), ("b", "healthy"), ("c", "healthy")))
        table.move_cursor(row=1)
        await pilot.pause()
        cleared: list[bool] = []
        table.clear = lambda columns=False: cleared.append(True) or table  # type: ignore[method-assign,func-returns-value]
        painted: list[int] = []
        render_line = table.render_line

        def spy(y: int) -> Strip:
            painted.append(y)
            return render_line(y)

        table.render_line = spy  # type: ignore[method-assign]
        table.sync(rows(("a", "healthy"), ("b", "unhealthy"), ("c", "healthy")))
        await pilot.pause()
        assert cleared == []
        assert table.highlighted_key() == "b"
        assert str(table.get_cell("b", "state")) == "unhealthy"
        # Only b's line is painted again (line 0 is the header), and it shows the new state.
        assert set(painted) == {2}
        assert "unhealthy" in render_line(2).text
        assert "unhealthy" not in render_line(1).text + render_line(3).text


async def test_a_wider_cell_in_a_fitted_column_widens_it() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync({"a": [Text("a"), Text("ok")]})
        await pilot.pause()
        narrow = table.columns[ColumnKey("name")].get_render_width(table)
        table.sync({"a": [Text("a much longer name"), Text("ok")]})
        await pilot.pause()
        assert table.columns[ColumnKey("name")].get_render_width(table) > narrow
        assert "a much longer name" in table.render_line(1).text


async def test_rows_that_appear_or_vanish_are_added_and_removed() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync(rows(("a", "healthy"), ("b", "healthy")))
        table.sync(rows(("a", "healthy"), ("c", "healthy")))
        assert table.keys == ["a", "c"]
        assert table.row_count == 2
        table.sync(rows(("c", "healthy"), ("a", "healthy")))  # a new order redraws
        assert table.keys == ["c", "a"]


async def test_append_drops_the_oldest_rows_beyond_the_limit() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        for n in range(5):
            table.append(str(n), [Text(str(n)), Text("ok")], limit=3)
        assert table.keys == ["2", "3", "4"]
