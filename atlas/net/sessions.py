"""SSH to devices: netmiko for switch CLIs, plain exec channels for reads, LLDP and host commands.

The transport only: what a switch's commands are and how its answers read is its platform's
(atlas.net.platforms). Credentials come from `atlas.secrets` by the caller; nothing here logs them.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import paramiko
from netmiko import BaseConnection, ConnectHandler

from atlas.core.errors import Unreachable
from atlas.core.model import Credential, Device
from atlas.core.run import Target, poll_until, read_each
from atlas.net.lldp import Neighbours, parse_neighbours


class DeviceUnreachable(Unreachable):
    pass


def _address(device: Device) -> str:
    if device.mgmt_address is None:
        raise DeviceUnreachable(f"{device.name} has no management address in NetBox")
    return str(device.mgmt_address.ip)


@contextmanager
def switch_cli(
    device: Device, cred: Credential, device_type: str, timeout: float = 15.0
) -> Iterator[BaseConnection]:
    """An interactive CLI session, for changes; `device_type`: netmiko's driver for the platform."""
    try:
        conn = ConnectHandler(
            device_type=device_type,
            host=_address(device),
            username=cred.username,
            password=cred.password,
            conn_timeout=timeout,
            auth_timeout=timeout,
            banner_timeout=timeout,
        )
    except Exception as e:
        raise DeviceUnreachable(f"{device.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    try:
        yield conn
    finally:
        conn.disconnect()


def show(cli: BaseConnection, command: str) -> str:
    """A show command's text (netmiko can also return parsed structures; Atlas parses itself)."""
    out = cli.send_command(command)
    if not isinstance(out, str):
        raise TypeError(f"{command!r} returned {type(out).__name__}, expected text")
    return out


class _Connections:
    """SSH connections kept open while any `one_connection_per_device` block is active, keyed by
    address and credential. Shared across threads: a paramiko transport carries concurrent channels."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.open: dict[tuple[str, Credential], paramiko.SSHClient] = {}
        self.connecting: dict[tuple[str, Credential], threading.Lock] = {}


_connections = _Connections()


@contextmanager
def one_connection_per_device() -> Iterator[None]:
    """Within it, every command to a device goes over one SSH connection, opened at first use and
    closed when the outermost block ends: a run's reads cost one handshake per device, not one each."""
    with _connections.lock:
        _connections.users += 1
    try:
        yield
    finally:
        with _connections.lock:
            _connections.users -= 1
            closing = list(_connections.open.values()) if _connections.users == 0 else []
            if _connections.users == 0:
                _connections.open.clear()
                _connections.connecting.clear()
        for client in closing:
            client.close()


def _connect(address: str, cred: Credential, timeout: float) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # Lab and fresh racks have no known host keys yet; pinning keys from NetBox is a later hardening step.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
    kwargs: dict[str, Any] = {
        "username": cred.username,
        "timeout": timeout,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "look_for_keys": False,
        "allow_agent": False,
    }
    if cred.ssh_private_key:
        kwargs["pkey"] = paramiko.Ed25519Key.from_private_key(io.StringIO(cred.ssh_private_key))
    else:
        kwargs["password"] = cred.password
    sock = socket.create_connection((address, 22), timeout=timeout)
    # a command is a few small round trips; Nagle's wait on the peer's delayed ACK adds ~40 ms to each
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        client.connect(address, sock=sock, **kwargs)
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def _usable(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


@contextmanager
def _connection(address: str, cred: Credential, timeout: float) -> Iterator[paramiko.SSHClient]:
    """The kept connection to `address` if one is open and alive, else a new one (kept if a
    `one_connection_per_device` block is active, closed after use if not)."""
    key = (address, cred)
    with _connections.lock:
        keeping = _connections.users > 0
        connecting = _connections.connecting.setdefault(key, threading.Lock()) if keeping else None
    if connecting is None:
        client = _connect(address, cred, timeout)
        try:
            yield client
        finally:
            client.close()
        return
    with connecting:  # two threads asking for one device open one connection
        kept = _connections.open.get(key)
        if kept is None or not _usable(kept):
            if kept is not None:
                kept.close()
            kept = _connect(address, cred, timeout)
            with _connections.lock:
                _connections.open[key] = kept
    yield kept


def ssh_exec(device: Device, cred: Credential, command: str, timeout: float = 15.0) -> str:
    try:
        with _connection(_address(device), cred, timeout) as client:
            _, stdout, stderr = client.exec_command(command, timeout=timeout)
            out: str = stdout.read().decode()
            if stdout.channel.recv_exit_status() != 0:
                raise DeviceUnreachable(
                    f"{device.name}: {command!r} failed: {stderr.read().decode().strip()}"
                )
            return out
    except (OSError, paramiko.SSHException) as e:
        raise DeviceUnreachable(f"{device.name}: {type(e).__name__}: {e}") from None


def lldp_neighbours(device: Device, cred: Credential) -> Neighbours:
    return parse_neighbours(json.loads(ssh_exec(device, cred, "lldpcli -f json0 show neighbors")))


def _answers(address: str, port: int) -> None:
    with socket.create_connection((address, port), timeout=2):
        pass


def wait_reachable(devices: Iterable[Target], timeout: float = 30.0, port: int = 22) -> dict[str, str]:
    """The targets whose SSH port did not answer within `timeout`, each with its problem line; the
    ones still waiting are tried again each second."""
    waiting = list(devices)

    def still_waiting() -> list[Target]:
        nonlocal waiting
        answered = read_each(lambda t: _answers(t.address, port), waiting)
        waiting = [t for t in waiting if t.name not in answered.values]
        return waiting

    left = poll_until(still_waiting, lambda w: not w, timeout=timeout, pause=1.0)
    return {
        t.name: f"{t.name}: SSH ({t.address}:{port}) not reachable within {timeout:.0f} s"
        for t in sorted(left, key=lambda t: t.name)
    }
