"""Running the app on uvicorn until SIGTERM or Ctrl-C, then draining within a bound and returning (exit 0).

On SIGTERM (or SIGINT) uvicorn stops listening at once, closes idle connections and waits for
the requests in flight to finish, for at most `drain_timeout` seconds; past that it cancels them
(each cancelled request frees its batch slot), and the app's lifespan stops the batch engine.
"""

from __future__ import annotations

import logging
import signal
import socket
from typing import Any

from llm_lit.errors import UserError

log = logging.getLogger("llm_lit.serve")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: a free one); `UserError` when the address cannot be taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"Cannot listen on {host}:{port} ({e.strerror}); pass another --port or --host.") from None
    sock.set_inheritable(True)
    return sock


def run_server(app: Any, sock: socket.socket, drain_timeout: float) -> None:
    """Serve `app` on the bound `sock` until SIGTERM or Ctrl-C, then drain for at most `drain_timeout` seconds."""
    import uvicorn

    config = uvicorn.Config(app, timeout_graceful_shutdown=max(drain_timeout, 0.01), access_log=False,
                            log_config=None, lifespan="on", http="h11", ws="none", server_header=False)
    server = uvicorn.Server(config)
    # uvicorn handles the signals while it runs, then raises each one again once it has shut down, for the
    # handler that was there before: ours does nothing, so a drained server returns and the command exits 0.
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise UserError("The server did not start (see the lines above); fix the problem they name and retry.")
    log.info("llm_lit serve stopped")


def _drained(signum: int, frame: Any) -> None:
    """The signal uvicorn raises again after its graceful shutdown: nothing is left to do."""
