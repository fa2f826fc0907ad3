"""The `web` process: a wasi:http incoming handler.

Greets with the GREETING config var and counts visits in the key-value add-on, so the
count survives restarts and deploys and is exact across dynos.
"""

import os

import humanize
from wit_world import exports
from wit_world.imports import atomics, wasi_keyvalue_store
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        greeting = os.environ.get("GREETING", "Hello")
        visits = atomics.increment(wasi_keyvalue_store.open(""), "visits", 1)
        text = f"{greeting} from Python! Visit number {humanize.intcomma(visits)}\n"
        print(f"visit {visits} to {request.path_with_query()}")

        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text.encode())
        OutgoingBody.finish(body, None)
