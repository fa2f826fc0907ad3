"""A test guest: a worker that imports wasi:http/types as `types` and componentize-py's
`poll_loop`, as a worker making outgoing requests with `poll_loop.send` would.

It prepares a request (without sending it: a test has nowhere to send it), logs a line
about it, then waits for its stdin to close, the platform's way of stopping it.
"""

import poll_loop
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import poll, stdin, types
from wit_world.imports.streams import StreamError_Closed


class Run(exports.Run):
    def run(self) -> None:
        request = types.OutgoingRequest(types.Fields.from_list([("accept", b"text/plain")]))
        request.set_path_with_query("/status")
        assert poll_loop.READ_SIZE > 0
        print(f"python-compat worker ready to GET {request.path_with_query()}", flush=True)
        input = stdin.get_stdin()
        while True:
            poll.poll([input.subscribe()])
            try:
                input.read(4096)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    return
                raise
