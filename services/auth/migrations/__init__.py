"""SQL migrations of the auth service's schema ``auth`` (applied by the runtime's runner)."""
