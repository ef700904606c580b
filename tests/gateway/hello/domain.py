"""What the hello service knows: how to greet, and how many greetings it gave."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Greeter:
    """Greets by name and counts the greetings."""

    greetings: int = 0

    def greet(self, name: str) -> str:
        """The greeting for ``name`` (the world when empty)."""
        self.greetings += 1
        return f"Hello, {name or 'world'}!"
