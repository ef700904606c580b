"""The runtime every SutazAI service process shares.

A service is `server -> handlers -> domain`: its `server` module calls :func:`run_service` with
the servicers it built, and the runtime adds everything else a mesh citizen needs (health,
reflection, rich errors, metrics, request-id logging, deadlines, registry heartbeat, drain).
"""
