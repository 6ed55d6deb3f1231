"""The runner link over a real loopback WebSocket: mutual authentication (wrong secret on either
side, a replayed challenge), requests and events both ways, multiplexed relayed channels, and
reconnecting after the runner goes away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import ujson
from tornado import websocket

from ashd.runnerlink import auth
from ashd.runnerlink.endpoint import PATH, RunnerEnd, RunnerLinkHandler
from ashd.runnerlink.mux import Json, Mux, RequestFailed, encode_control
from ashd.runnerlink.relay import open_unix, relay
from ashd.runnerlink.table import LinkState, LinkTable
from tests.runnerlink.loopback import SECRET, Watch, client, listen, no_requests


def test_proofs_differ_by_role_runner_and_nonce() -> None:
    a, b = auth.nonce(), auth.nonce()
    proofs = {auth.coordinator_proof(SECRET, "r1", a, b), auth.runner_proof(SECRET, "r1", a, b),
              auth.coordinator_proof(SECRET, "r2", a, b), auth.coordinator_proof(SECRET, "r1", b, a),
              auth.coordinator_proof("other", "r1", a, b)}
    assert len(proofs) == 5
    with pytest.raises(auth.AuthFailed):
        auth.check(auth.coordinator_proof(SECRET, "r1", a, b), auth.coordinator_proof("other", "r1", a, b), "peer")
    with pytest.raises(auth.AuthFailed):
        auth.proof("", "role", "r1", a, b)  # no secret: fail closed


def test_requests_and_events_flow_both_ways_after_authentication() -> None:
    served: list[Mux] = []
    events: list[Json] = []

    def runner_serves(mux: Mux):  # type: ignore[no-untyped-def]
        served.append(mux)

        async def handle(mux: Mux, body: Json) -> Json | None:
            if body["op"] == "add":
                return {"sum": body["a"] + body["b"]}
            raise RequestFailed("no such op")
        return handle

    def coordinator_serves(mux: Mux):  # type: ignore[no-untyped-def]
        async def handle(mux: Mux, body: Json) -> Json | None:
            events.append(body)
            return None
        return handle

    async def scenario() -> None:
        server, port = listen(RunnerEnd(SECRET, "r1", runner_serves, generation=lambda: 7))
        watch = Watch()
        link = client(port, coordinator_serves, watch=watch)
        link.start()
        try:
            mux = await link.wait_up(30)
            assert watch.ups[0].generation == 7
            assert (await mux.request("add", a=2, b=3))["sum"] == 5
            with pytest.raises(RequestFailed, match="no such op"):
                await mux.request("nope")
            await served[0].event("exited", sandbox="sb1", code=9)
            await watch.until(lambda: bool(events))
            assert events == [{"op": "exited", "sandbox": "sb1", "code": 9}]
        finally:
            await link.stop()
            server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("side", ["coordinator", "runner"])
def test_a_wrong_secret_on_either_side_is_refused(side: str) -> None:
    served: list[Mux] = []

    class LyingRunner(RunnerLinkHandler):
        """Accepts any coordinator and proves itself with a secret it does not have."""

        async def _accept(self, body: Json) -> Mux:
            theirs = body["nonce"]
            mux = Mux(self._send, "liar", first_channel=2)
            mux.handler = no_requests
            served.append(mux)
            await self.write_message(encode_control({
                "op": "welcome", "proof": auth.runner_proof("guessed", "r1", self._nonce, theirs)}), binary=True)
            return mux

    async def scenario() -> None:
        end = RunnerEnd(SECRET, "r1", lambda mux: served.append(mux) or no_requests)  # type: ignore[func-returns-value]
        server, port = listen(end, handler=LyingRunner if side == "runner" else RunnerLinkHandler)
        watch = Watch()
        link = client(port, secret="wrong" if side == "coordinator" else SECRET, watch=watch)
        link.start()
        try:
            await watch.until(lambda: len(watch.downs) >= 2)  # refused, and refused again after the backoff
            assert not watch.ups
            assert all("handshake failed" in why for why in watch.downs), watch.downs
            if side == "coordinator":
                assert not served  # the runner served nothing to an unauthenticated peer
        finally:
            await link.stop()
            server.stop()

    asyncio.run(scenario())


def test_a_replayed_challenge_answer_is_refused() -> None:
    served: list[Mux] = []

    async def recorded_auth(port: int) -> bytes:
        conn = await websocket.websocket_connect(f"ws://127.0.0.1:{port}{PATH}")
        hello = await conn.read_message()
        assert isinstance(hello, bytes)
        theirs = ujson.loads(hello[4:])["nonce"]
        mine = auth.nonce()
        answer = encode_control({"op": "auth", "nonce": mine,
                                 "proof": auth.coordinator_proof(SECRET, "r1", theirs, mine)})
        await conn.write_message(answer, binary=True)
        assert await conn.read_message() is not None  # welcome: the genuine answer is accepted
        conn.close()
        return answer

    async def scenario() -> None:
        server, port = listen(RunnerEnd(SECRET, "r1", lambda mux: served.append(mux) or no_requests))  # type: ignore[func-returns-value]
        try:
            answer = await recorded_auth(port)
            assert len(served) == 1
            replay = await websocket.websocket_connect(f"ws://127.0.0.1:{port}{PATH}")
            assert await replay.read_message() is not None  # a fresh hello, a fresh nonce
            await replay.write_message(answer, binary=True)
            assert await replay.read_message() is None  # closed, no welcome
            assert replay.close_code == 4401
            assert len(served) == 1
            replay.close()
        finally:
            server.stop()

    asyncio.run(scenario())


def test_a_peer_that_skips_the_handshake_is_closed() -> None:
    async def scenario() -> None:
        server, port = listen(RunnerEnd(SECRET, "r1", lambda mux: no_requests))
        try:
            conn = await websocket.websocket_connect(f"ws://127.0.0.1:{port}{PATH}")
            await conn.read_message()
            await conn.write_message(encode_control({"op": "launch", "id": 1}), binary=True)
            assert await conn.read_message() is None
            assert conn.close_code == 4401
            conn.close()
        finally:
            server.stop()

    asyncio.run(scenario())


async def _echo_server(path: Path) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"echo:" + line)
            await writer.drain()
        writer.close()
    return await asyncio.start_unix_server(echo, str(path))


def test_channels_relay_frames_of_several_sockets_independently(tmp_path: Path) -> None:
    relays: list[asyncio.Future[None]] = []

    def runner_serves(mux: Mux):  # type: ignore[no-untyped-def]
        async def handle(mux: Mux, body: Json) -> Json | None:
            assert body["op"] == "open"
            channel = mux.adopt_channel(body["ch"])
            reader, writer = await open_unix(str(tmp_path / f"{body['sock']}.sock"))
            relays.append(asyncio.ensure_future(relay(reader, writer, channel)))
            return None
        return handle

    async def scenario() -> None:
        echoes = [await _echo_server(tmp_path / f"{name}.sock") for name in ("a", "b")]
        server, port = listen(RunnerEnd(SECRET, "r1", runner_serves))
        link = client(port)
        link.start()
        try:
            mux = await link.wait_up(30)
            a, b = mux.new_channel(), mux.new_channel()
            await mux.request("open", ch=a.id, sock="a")
            await mux.request("open", ch=b.id, sock="b")
            for i in range(50):
                await a.send(f'{{"n":{i},"to":"a"}}\n'.encode())
                await b.send(f'{{"n":{i},"to":"b"}}\n'.encode())
            got_a = [await a.receive() for _ in range(50)]
            got_b = [await b.receive() for _ in range(50)]
            assert got_a == [f'echo:{{"n":{i},"to":"a"}}\n'.encode() for i in range(50)]
            assert got_b == [f'echo:{{"n":{i},"to":"b"}}\n'.encode() for i in range(50)]
            a.close()
            assert await a.receive() is None
            await b.send(b'{"still":"open"}\n')
            assert await b.receive() == b'echo:{"still":"open"}\n'
        finally:
            await link.stop()
            server.stop()
            await asyncio.wait_for(asyncio.gather(*relays), 30)  # both end with the link
            for echo in echoes:
                echo.close()
                await echo.wait_closed()

    asyncio.run(scenario())


def test_the_client_reconnects_after_the_runner_comes_back() -> None:
    lost: list[Mux] = []
    open_links: list[RunnerLinkHandler] = []

    class Tracked(RunnerLinkHandler):
        async def open(self, *args: str, **kwargs: str) -> None:
            open_links.append(self)
            await super().open(*args, **kwargs)

    async def scenario() -> None:
        end = RunnerEnd(SECRET, "r1", lambda mux: no_requests, on_lost=lost.append)
        server, port = listen(end, handler=Tracked)
        watch = Watch()
        link = client(port, watch=watch)
        link.start()
        try:
            first = await link.wait_up(30)
            channel = first.new_channel()
            server.stop()  # the runner goes away: no listener, its link closed
            open_links.pop().close()
            await watch.until(lambda: len(watch.downs) >= 1)
            assert first.closed and await channel.receive() is None  # channels end with the link
            server, _ = listen(end, port, handler=Tracked)
            await watch.until(lambda: len(watch.ups) >= 2)
            second = await link.wait_up(30)
            assert second is not first and not second.closed
            assert lost == [lost[0]] and lost[0].closed  # the runner saw the first link end
        finally:
            await link.stop()
            server.stop()
            for handler in open_links:
                handler.close()

    asyncio.run(scenario())


def test_a_runner_answering_with_an_older_generation_than_the_registry_is_fenced() -> None:
    generation = [1]

    async def scenario() -> None:
        server, port = listen(RunnerEnd(SECRET, "r1", lambda mux: no_requests, generation=lambda: generation[0]))
        table = LinkTable(asyncio.get_running_loop(), SECRET, lambda mux: no_requests)
        try:
            table.open("r1", "127.0.0.1", port, generation=2)  # the registry knows a newer registration
            async with asyncio.timeout(30):
                while "r1" not in table._welcomes:
                    await asyncio.sleep(0.02)
            assert table.link_of("r1") is None and not table.state("r1").connected  # fenced

            generation[0] = 2  # the current process of r1 answers
            table.close("r1")
            table.open("r1", "127.0.0.1", port, generation=2)
            async with asyncio.timeout(30):
                while table.link_of("r1") is None:
                    await asyncio.sleep(0.02)
            assert table.state("r1") == LinkState(True, 2, 0)
        finally:
            await table.close_all()
            server.stop()

    asyncio.run(scenario())
