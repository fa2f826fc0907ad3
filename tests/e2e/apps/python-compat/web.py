"""A test guest: a `web` process written the way componentize-py's examples and the
libraries built on them are, for the world wasi:http/proxy.

`types` is wasi:http/types, and componentize-py's bundled `poll_loop` (which imports it
that way) reads the request body (`poll_loop.Stream`) and writes the response body
(`poll_loop.Sink`). The answer echoes the body and shows what else a dyno has: a count
in the key-value add-on, the DYNO variable, and a file written to the ephemeral
filesystem and read back through CPython's own `open`.
"""

import asyncio
import os

import poll_loop
from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import atomics, types, wasi_keyvalue_store


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: types.IncomingRequest, response_out: types.ResponseOutparam) -> None:
        loop = poll_loop.PollLoop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(answer(request, response_out))


async def answer(request: types.IncomingRequest, response_out: types.ResponseOutparam) -> None:
    body = b""
    stream = poll_loop.Stream(request.consume())
    while True:
        chunk = await stream.next()
        if chunk is None:
            break
        body += chunk

    with open("/scratch.txt", "w") as f:
        f.write("disk ok")
    with open("/scratch.txt") as f:
        disk = f.read()
    hits = atomics.increment(wasi_keyvalue_store.open(""), "hits", 1)
    text = f"echo={body.decode()} hits={hits} dyno={os.environ.get('DYNO')} {disk}\n"

    response = types.OutgoingResponse(types.Fields.from_list([("content-type", b"text/plain")]))
    sink = poll_loop.Sink(response.body())
    types.ResponseOutparam.set(response_out, Ok(response))
    await sink.send(text.encode())
    sink.close()
