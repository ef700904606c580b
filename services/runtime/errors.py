"""The runtime's exception tree.

    RuntimeFault
    ├── ConfigurationError   settings or secrets are missing or invalid
    └── RegistryError        the NATS service registry could not be read or written
"""


class RuntimeFault(Exception):
    """Root of every error raised by :mod:`sutazai.services.runtime`."""


class ConfigurationError(RuntimeFault):
    """Settings or secrets are missing or invalid."""


class RegistryError(RuntimeFault):
    """The service registry could not be read or written."""
