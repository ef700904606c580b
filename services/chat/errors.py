"""The chat service's exception tree, and its refusals (built by :mod:`sutazai.runtime.faults`).

ChatError                   root of every error raised by :mod:`sutazai.services.chat`
└── ConversationFullError   store: the conversation holds its maximum of messages

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class ChatError(Exception):
    """Root of every error raised by :mod:`sutazai.services.chat`."""


class ConversationFullError(ChatError):
    """The conversation already holds the most messages one may hold."""

    def __init__(self, conversation_id: str, limit: int) -> None:
        super().__init__(
            f"conversation {conversation_id} holds {limit} messages, the most allowed: "
            "start a new conversation"
        )
        self.conversation_id = conversation_id
        self.limit = limit
