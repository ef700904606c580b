"""The resource service: leases of the host's capacity under per-resource policies."""
