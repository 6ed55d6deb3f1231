"""What the model proxy writes itself rather than relays: its error replies (Anthropic's error
shape), its answer to the CLI's ``/api/hello`` probe, the head of a relayed reply with the
connection's own keep-alive, and the SSE ``error`` event that ends a stream the budget stopped."""

from __future__ import annotations

import asyncio
import json

from ashd.proxy import http1
from ashd.proxy.meter import Meter
from ashd.proxy.route import Route


def ends_by_framing(resp: http1.Head) -> bool:
    """The reply ends by its own framing (so its connection can carry another request)."""
    return (resp.start.startswith("HTTP/1.1 ") and "close" not in (resp.get("connection") or "").lower()
            and (resp.chunked or resp.length is not None))


def client_head(resp: http1.Head, keep: bool) -> bytes:
    value = "keep-alive" if keep else "close"
    return http1.encode_head(resp.start, [*resp.without("connection", "keep-alive"), ("connection", value)])


async def end_stream(writer: asyncio.StreamWriter, resp: http1.Head, meter: Meter, message: str) -> None:
    """End a stream the budget stopped with an SSE ``error`` event, when the framing allows."""
    if not meter.at_boundary or (not resp.chunked and resp.length is not None):
        return  # mid-event, or a length-framed body: cutting it is all that is safe
    data = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    event = f"event: error\ndata: {data}\n\n".encode()
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event) if resp.chunked else event)
    await writer.drain()


async def answer_hello(writer: asyncio.StreamWriter, where: Route) -> bool:
    """The CLI's connectivity probe, answered here: the upstream is never asked. False: the
    connection closes (the probe's body, if any, is not read)."""
    body = b"" if where.method == "HEAD" else b"{}"
    writer.write(http1.encode_head("HTTP/1.1 200 OK", [
        ("content-type", "application/json"), ("content-length", "2"), ("connection", "close")]) + body)
    await writer.drain()
    return False


async def refuse_connection(writer: asyncio.StreamWriter, cap: int) -> None:
    """Over the sandbox's cap: a 429 at once, no request read, and the connection closed."""
    try:
        await reply(writer, 429, "rate_limit_error",
                     f"too many open connections to the model proxy from this sandbox (at most {cap})", retry=True)
    except OSError:
        pass
    finally:
        writer.close()


async def reply(writer: asyncio.StreamWriter, status: int, kind: str, message: str, retry: bool = False) -> bool:
    """An error reply, and False: the connection closes (the request's body may be unread)."""
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    writer.write(http1.encode_head(f"HTTP/1.1 {status} ashd", [
        ("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close"),
        ("x-should-retry", "true" if retry else "false")]) + body)
    await writer.drain()
    return False
