"""SessionLink keeps one bridge link per grant's agent process: a new link only when the
grant names another process (a replaced bridge) or the link closed, never because the
bridge reports a pid of its own numbering (a runner's pid behind a coordinator's handle)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ashd.actors.messages import TurnGrant
from ashd.runtime.links import SessionLink
from ashd.runtime.offload import Offload
from ashd.wire import protocol


def test_a_link_is_kept_while_the_grant_names_the_same_process(tmp_path: Path) -> None:
    sock = str(tmp_path / "bridge.sock")
    accepted: list[asyncio.StreamWriter] = []

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # the bridge reports the pid it has where it runs: 4242
        writer.write(protocol.encode(protocol.Ready(4242, "s1")))
        await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(bridge, sock)
        links = SessionLink(store=None, offload=Offload())  # type: ignore[arg-type]  # no transcript here
        handle = TurnGrant("t", "s1", "s1", sock, 1 << 32)  # a remote process: a handle number
        try:
            first = await links.get(handle)
            assert await links.get(handle) is first and len(accepted) == 1
            replaced = await links.get(TurnGrant("t", "s1", "s1", sock, (1 << 32) + 1))
            assert replaced is not first and first.closed and len(accepted) == 2
            replaced.close()
            assert await links.get(TurnGrant("t", "s1", "s1", sock, (1 << 32) + 1)) is not replaced
            assert len(accepted) == 3
        finally:
            links.drop()
            for writer in accepted:
                writer.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
