"""The resource service's exception tree (its refusals are built by :mod:`sutazai.runtime.faults`).

ResourcesError   root of every error raised by :mod:`sutazai.services.resources`

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations


class ResourcesError(Exception):
    """Root of every error raised by :mod:`sutazai.services.resources`."""
