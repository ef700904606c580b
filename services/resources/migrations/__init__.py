"""SQL migrations of the resource service's schema ``resources`` (run by the runtime's runner)."""
