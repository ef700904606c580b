"""The runtime's exception tree: every exception :mod:`sutazai.runtime` defines, by module.

MeshRuntimeError                  root of every error raised by the runtime
├── ConfigurationError            errors: settings or secrets are missing or invalid
│   └── LegacyKeyRingError        key_files: the private key file is an older release's HS256 ring
├── RegistryError                 errors: the NATS service registry could not be read or written
├── MigrationError                migrations: malformed migrations, or a history that differs
├── InvalidTokenError             tokens: malformed, forged, expired or foreign token
├── RevocationsUnknownError       revocations: the mirror was never filled; trust no token yet
├── RevocationStoreError          revocations: the bucket cannot be written; nothing was revoked
├── MalformedRevocationError      revocations: a bucket entry that is not a revocation
└── RpcStatusError                faults: a refusal answered with a precise gRPC status

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""


class MeshRuntimeError(Exception):
    """Root of every error raised by :mod:`sutazai.runtime`."""


class ConfigurationError(MeshRuntimeError):
    """Settings or secrets are missing or invalid."""


class RegistryError(MeshRuntimeError):
    """The service registry could not be read or written."""
