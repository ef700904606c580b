"""The inference tests' real OpenAI-compatible server lives in the harness (shared with chat)."""

from tests.harness.llama import LlamaServer

__all__ = ["LlamaServer"]
