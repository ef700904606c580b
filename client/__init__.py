"""The Python client of the mesh: one place that knows channels, tokens, deadlines, reconnects.

The dashboard (``sutazai.tui``) and the CLI (``sutazai.ops.cli``) reach the mesh only through
it, through Envoy like any other client.
"""
