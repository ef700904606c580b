"""The runtime every SutazAI service process shares.

A service is `server -> handlers -> domain`: its `server` module builds a
:class:`~sutazai.runtime.server.ServiceHost` from the servicers it made and runs it with
:func:`~sutazai.runtime.server.serve_until_stopped`; the host adds everything else a mesh
citizen needs (health, reflection, rich errors, metrics, request-id logging, deadlines,
registry heartbeat, drain).
"""
