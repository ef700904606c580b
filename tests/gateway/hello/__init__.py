"""A minimal service made by the steps of docs/architecture.md "Adding a service".

Its contract is ``protos/sutazai/hello/v1/hello_service.proto`` here, compiled when the test
runs (``sutazai.hello.v1`` is importable only then), so the real tree stays as it is.
"""
