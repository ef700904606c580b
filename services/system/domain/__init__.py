"""The system service's logic, without I/O: what the mesh's health, traffic and inventory are.

:mod:`.status` judges probe outcomes, :mod:`.fanout` hands the latest state to watchers,
:mod:`.traffic` turns Envoy's statistics into rates, :mod:`.inventory` puts the registry, the
probes, Envoy's endpoints and each instance's metrics together per service. The modules get
their inputs (payloads, outcomes) from the caller and never do transport I/O themselves.
"""

from sutazai.services.system.domain.status import (
    CRITICAL_COMPONENTS,
    ComponentStatus,
    Health,
    Kind,
    MeshStatus,
    Overall,
    ProbeOutcome,
    StatusBoard,
    overall_of,
)

__all__ = [
    "CRITICAL_COMPONENTS",
    "ComponentStatus",
    "Health",
    "Kind",
    "MeshStatus",
    "Overall",
    "ProbeOutcome",
    "StatusBoard",
    "overall_of",
]
