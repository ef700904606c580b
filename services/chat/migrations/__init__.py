"""SQL migrations of the chat service's schema ``chat`` (applied by the runtime's runner)."""
