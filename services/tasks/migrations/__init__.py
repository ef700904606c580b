"""SQL migrations of the task service's schema ``tasks`` (applied by the runtime's runner)."""
