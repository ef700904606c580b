"""The mesh's gRPC services and agents, one package each (server -> handlers -> domain)."""
