"""Who may call the gateway's own services: ADS, mesh-wide reflection and health.

Envoy routes reflection and health to the gateway and checks the token's signature there, but
Envoy cannot know about revocations. The gateway therefore judges a token like every service's
guard does (:class:`~sutazai.runtime.auth.Authenticator`: signature, issuer, expiry,
revoked ``jti``, the account's "valid after" stamp): reflection needs a token that passes,
health is public but a token sent with it must pass too. ADS (Envoy itself) needs no token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import grpc

from sutazai.runtime.auth import Authenticator
from sutazai.runtime.faults import unauthenticated
from sutazai.runtime.roles import PUBLIC, MethodAccess, standard_access

ADS_PREFIX: Final = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"


class GatewayAccess:
    """The gateway server's admission (see the module docstring); audits nothing."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def policy(self, method: str) -> MethodAccess:
        """ADS is public; the rest has the standard policy every instance applies.

        Health is public, reflection (and anything else) needs a signed-in caller
        (:data:`~sutazai.runtime.roles.STANDARD_ACCESS`).
        """
        return PUBLIC if method.startswith(ADS_PREFIX) else standard_access(method)

    async def admit(
        self, policy: MethodAccess, method: str, metadata: Mapping[str, str], peer: str
    ) -> None:
        """Refuse a bad or revoked token, and an anonymous caller of a non-public method.

        Raises:
            RpcStatusError: UNAUTHENTICATED, or UNAVAILABLE while revocations are unknown.
        """
        identity = self._authenticator.identify(metadata.get("authorization", ""))
        if identity is None and not policy.public:
            raise unauthenticated("sign in first")

    async def settle(self, method: str, policy: MethodAccess, code: grpc.StatusCode) -> None:
        """Nothing to record: the gateway's calls are not audited."""

    async def run(self) -> None:
        """Follow revocations forever."""
        await self._authenticator.run()
