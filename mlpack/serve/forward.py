"""Two ways to reach a server in a network namespace of its own, besides inheriting fd 3.

``Forwarder``: for a server that cannot take a socket (``python -m http.server``, a custom
server). It keeps its namespace with nothing but loopback and listens on 127.0.0.1:PORT there;
mlpack accepts on the host's listening socket and, for each client, connects from a thread that
has joined the container's network namespace (``setns``; root only). A copy through this
process per byte: the fallback, not the default.

``Courier``: the Docker engine cannot pass a file descriptor into a container. A courier hands
the host's listening socket over a Unix socket bind-mounted into the container (SCM_RIGHTS),
and ``COURIER_SHIM`` (run by the image's Python as the container's command) receives it as
fd 3 and execs the server: socket activation on Docker, with ``--network none`` and no proxy.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from pathlib import Path
from typing import Final

from mlpack.errors import ServeError

# Runs inside the container: argv = [socket path, server command...].
COURIER_SHIM: Final = (
    "import os,socket,sys\n"
    "s=socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "fds=socket.recv_fds(s,1,1)[1]\n"
    "s.close()\n"
    "os.dup2(fds[0],3)\n"
    "os.execvp(sys.argv[2],sys.argv[2:])\n"
)
COURIER_DIR: Final = "/run/mlpack-serve"  # where the courier's folder is mounted
COURIER_SOCKET: Final = "listen.sock"
_CHUNK: Final = 65536


def _copy(src: socket.socket, dst: socket.socket) -> None:
    """Copy until EOF, then pass the half-close on."""
    with contextlib.suppress(OSError):
        while data := src.recv(_CHUNK):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def connect_in(netns: Path, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` made inside the network namespace ``netns``.

    Call from a thread of its own: ``setns`` moves the calling thread, for good.
    """
    from mlpack.oslib import linux

    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.NAMESPACES["network"])
    finally:
        os.close(fd)
    return socket.create_connection(("127.0.0.1", port), timeout=5)


class Forwarder:
    """Forwards each connection on ``listener`` to 127.0.0.1:``port`` in a container's netns.

    Connections wait in the listener's backlog while no container runs (between restarts).
    """

    def __init__(self, listener: socket.socket, port: int) -> None:
        self.listener, self.port = listener, port
        self.netns: Path | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="mlpack-forward", daemon=True)
        self.thread.start()

    def target(self, pid: int | None) -> None:
        """Forward into the network namespace of process ``pid`` (None: hold connections)."""
        self.netns = Path(f"/proc/{pid}/ns/net") if pid else None

    def close(self) -> None:
        """Stop accepting (open connections finish on their own)."""
        self.closed.set()
        self.thread.join(timeout=2)

    def _accept(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            while not self.closed.is_set():
                netns = self.netns
                if netns is None or not sel.select(timeout=0.1):
                    self.closed.wait(0.05 if netns is None else 0)
                    continue
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    client, _ = self.listener.accept()
                    threading.Thread(target=self._serve, args=(client, netns), daemon=True).start()

    def _serve(self, client: socket.socket, netns: Path) -> None:
        try:
            server = connect_in(netns, self.port)
        except OSError:
            client.close()  # refused: the server does not listen (yet); the client sees EOF
            return
        server.settimeout(None)
        back = threading.Thread(target=_copy, args=(server, client), daemon=True)
        back.start()
        _copy(client, server)
        back.join()
        client.close()
        server.close()


class Courier:
    """Hands ``listener`` to every process that connects to ``folder``/listen.sock."""

    def __init__(self, listener: socket.socket, folder: Path, owner: tuple[int, int]) -> None:
        self.listener = listener
        self.folder = folder
        self.path = folder / COURIER_SOCKET
        self.unix = socket.socket(socket.AF_UNIX)
        try:
            self.unix.bind(str(self.path))
            # The server runs as the invoking user: it must be able to connect.
            os.chown(self.path, *owner)
            self.unix.listen(8)
        except OSError as exc:
            self.unix.close()
            msg = f"cannot open the socket that hands the port to the container: {exc}"
            raise ServeError(msg, hint=f"check that {folder} is writable") from exc
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._hand, name="mlpack-courier", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop handing the socket out and remove the Unix socket."""
        self.closed.set()
        self.thread.join(timeout=2)
        self.unix.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _hand(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.unix, selectors.EVENT_READ)
            while not self.closed.is_set():
                if not sel.select(timeout=0.1):
                    continue
                with contextlib.suppress(OSError):
                    conn, _ = self.unix.accept()
                    with conn:
                        socket.send_fds(conn, [b"L"], [self.listener.fileno()])


def courier_command(command: tuple[str, ...]) -> tuple[str, ...]:
    """``command`` run by ``COURIER_SHIM`` once it holds the listening socket as fd 3."""
    return ("python3", "-c", COURIER_SHIM, f"{COURIER_DIR}/{COURIER_SOCKET}", *command)
