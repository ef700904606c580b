"""xDS control plane that configures the Envoy edge from the live service registry."""
