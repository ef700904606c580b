"""The runtime's exception tree.

MeshRuntimeError
├── ConfigurationError   settings or secrets are missing or invalid
└── RegistryError        the NATS service registry could not be read or written
"""


class MeshRuntimeError(Exception):
    """Root of every error raised by :mod:`sutazai.runtime`."""


class ConfigurationError(MeshRuntimeError):
    """Settings or secrets are missing or invalid."""


class RegistryError(MeshRuntimeError):
    """The service registry could not be read or written."""
