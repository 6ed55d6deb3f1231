"""Open bridge links by sandbox, on the IOLoop (loop thread only)."""

from __future__ import annotations

from ashd.actors.messages import TurnGrant
from ashd.bridge.link import BridgeLink


class Links:
    def __init__(self) -> None:
        self._links: dict[str, BridgeLink] = {}

    async def get(self, grant: TurnGrant) -> BridgeLink:
        """The link for a grant's sandbox; reconnects if closed or the bridge was replaced.

        Raises BridgeGone.
        """
        link = self._links.get(grant.sandbox_id)
        if link is not None and (link.closed or link.ready.pid != grant.pid):
            link.close()
            link = None
        if link is None:
            link = await BridgeLink.connect(grant.socket_path)
            self._links[grant.sandbox_id] = link
        return link

    def drop(self, sandbox_id: str) -> None:
        link = self._links.pop(sandbox_id, None)
        if link is not None:
            link.close()

    def close_all(self) -> None:
        for sandbox_id in list(self._links):
            self.drop(sandbox_id)
