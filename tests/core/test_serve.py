"""`siyu serve --workers N`: per-process SO_REUSEPORT listeners on a port nobody else holds."""

from __future__ import annotations

import errno
import socket
import sys

import pytest
from typer.testing import CliRunner

from siyu.cli import _own_listener, _PortReservation, app

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _reuseport_listener() -> socket.socket:
    """What a running `siyu serve --workers 2` holds: a SO_REUSEPORT listener."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_each_process_gets_a_listener_of_its_own_on_the_reserved_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reservation = _PortReservation.reserve("127.0.0.1", port)
    with (
        reservation,
        _own_listener("127.0.0.1", port) as one,
        _own_listener("127.0.0.1", port) as two,
    ):
        one.listen()
        two.listen()
        assert one.getsockname() == two.getsockname() == ("127.0.0.1", port)


def test_a_port_another_serve_listens_on_is_refused_not_shared():
    with _reuseport_listener() as running:
        port = running.getsockname()[1]
        with pytest.raises(OSError, match="in use") as refused:
            _PortReservation.reserve("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
        result = CliRunner().invoke(app, ["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"])
    assert result.exit_code == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
