"""A real OpenSSH server on 127.0.0.1 acting as the device (its Python is this interpreter, which has onnxruntime).

The server, its host key, a client key and a known_hosts file live in a temp folder; nothing outside it is changed
except that sshd needs its privilege-separation folder /run/sshd. Tests skip (with the reason) only when sshd is not
installed and cannot be installed (.ci/run installs openssh-server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SSHServer:
    port: int
    user: str
    key: Path  # client private key (authorized on the server)
    known_hosts: Path  # has the server's host key for [127.0.0.1]:port
    folder: Path
    python: str = sys.executable

    def device(self, **extra: object) -> dict:
        """The ``device:`` block of a target that reaches this server."""
        return {
            "kind": "ssh",
            "host": "127.0.0.1",
            "user": self.user,
            "port": self.port,
            "python": self.python,
            "workdir": str(self.folder / "device-workdir"),
            "identity_file": str(self.key),
            "known_hosts": str(self.known_hosts),
            "timeout_s": 5,
            "retries": 0,
            **extra,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_sshd() -> str | None:
    """None when sshd is runnable, else why not."""
    if os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen"):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "openssh-server", "openssh-client"],
            capture_output=True,
            env=env,
            timeout=600,
        )
        if os.path.exists(SSHD) and shutil.which("ssh"):
            return None
    return "OpenSSH server/client not installed and cannot be installed here (needs root and apt-get)"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekd-test", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    why = _ensure_sshd()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to accept logins for other users' sessions (run the tests as root)")
    try:
        with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@contextlib.contextmanager
def start_sshd(folder: Path) -> Iterator[SSHServer]:
    """Start sshd on a free port of 127.0.0.1 with throwaway keys in ``folder``; stop it on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
        "MaxStartups 50\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    known = folder / "known_hosts"
    pub = (folder / "host_ed25519.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(f"sshd exited at start: {(folder / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("sshd did not listen within 15 s") from None
            time.sleep(0.1)
    try:
        yield SSHServer(port=port, user="root", key=client_key, known_hosts=known, folder=folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
