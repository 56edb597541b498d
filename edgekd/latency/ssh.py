"""A small SSH client over the OpenSSH ``ssh`` binary (subprocess, argument lists, never a local shell).

Security defaults: host keys are checked against a known_hosts file (``StrictHostKeyChecking=yes``), only key
authentication is tried (``BatchMode=yes``, so no password prompt can hang a compile), and every string that
reaches the remote shell is quoted with :func:`shlex.quote`. Connection failures are retried with exponential
backoff; a refused host key or login is not retried (it will not get better) and raises at once.

Files are sent as ``ssh HOST 'mkdir -p DIR && cat > DIR/.name.part && mv ...' < file`` rather than with ``scp``:
since OpenSSH 9 scp needs the device's sftp-server (missing on many embedded images, e.g. dropbear), and the
legacy scp protocol lets the remote shell expand the destination path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekd.config.target import DeviceSpec
from edgekd.core.errors import DeviceError, DeviceUnreachable
from edgekd.core.process import communicate

#: ssh's own exit status for "could not connect / authenticate" (a remote command's status is passed through)
SSH_FAILURE = 255

_HOST_KEY_SIGNS = ("host key verification failed", "remote host identification has changed")
_AUTH_SIGNS = ("permission denied", "too many authentication failures", "no more authentication methods")


def quote_command(argv: Sequence[str | os.PathLike[str]]) -> str:
    """One remote shell command line from an argument list, every argument quoted."""
    return " ".join(shlex.quote(os.fspath(a)) for a in argv)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class SSHClient:
    """Runs commands on, and copies files to, one device described by a :class:`DeviceSpec`."""

    def __init__(
        self, device: DeviceSpec, ssh: str | None = None, backoff_s: float = 1.0, multiplex: bool = False
    ) -> None:
        """``multiplex``: share one SSH connection between calls (OpenSSH ControlMaster, socket in a private
        temp folder); call :meth:`close` (or use ``with``) to end it, else it ends after 30 s idle."""
        if not device.host:
            raise DeviceError("no device host configured", fix="set device.host in the target, or pass --device")
        self.device = device
        self.backoff_s = backoff_s
        found = ssh or shutil.which("ssh")
        if not found:
            raise DeviceError(
                "the OpenSSH client (ssh) is not installed on this machine",
                fix="install it (Debian/Ubuntu: apt-get install openssh-client)",
            )
        self.ssh = found
        self.multiplex = multiplex
        self._control_dir: str | None = None

    def __enter__(self) -> SSHClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the shared connection (when ``multiplex``) and remove its socket folder; a later call opens anew."""
        if self._control_dir is None:
            return
        subprocess.run(
            [*self.base_argv()[:-2], "-O", "exit", "--", self.device.host or ""],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None

    # ------------------------------------------------------------------ command lines

    @property
    def address(self) -> str:
        return self.device.address

    def base_argv(self) -> list[str]:
        """``ssh`` and its options, up to and including the destination (no remote command yet)."""
        d = self.device
        strict = "yes" if d.strict_host_key_checking else "accept-new"
        argv = [
            self.ssh,
            "-p", str(d.port),
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(d.timeout_s))}",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
            "-o", "ClearAllForwardings=yes",
            "-T",
        ]  # fmt: skip
        if d.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={_ssh_path(d.known_hosts)}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if d.identity_file is not None:
            argv += ["-i", str(d.identity_file), "-o", "IdentitiesOnly=yes"]
        if d.user:
            argv += ["-l", d.user]
        if self.multiplex:
            if self._control_dir is None:
                self._control_dir = tempfile.mkdtemp(prefix="edgekd-ssh-")  # private (0700) socket folder
            control = os.path.join(self._control_dir, "%C")
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=30"]
        # the host was validated (no leading '-', no spaces); '--' ends ssh's options regardless
        argv += ["--", d.host or ""]
        return argv

    # ------------------------------------------------------------------ running

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]] | str,
        timeout: float | None = None,
        stdin: Path | None = None,
        on_stderr_line: Callable[[str], None] | None = None,
        check: bool = True,
    ) -> Result:
        """Run a command on the device; ``argv`` is quoted (a ``str`` is sent as an already-quoted shell line).

        Connection failures are retried ``device.retries`` times with backoff; host-key and login failures raise
        :class:`DeviceError` at once; no connection at all raises :class:`DeviceUnreachable`. With ``check``, a
        non-zero exit status of the remote command raises :class:`DeviceError` with its stderr.
        """
        remote = argv if isinstance(argv, str) else quote_command(argv)
        attempts = self.device.retries + 1
        last = ""
        for attempt in range(attempts):
            res = self._once(remote, timeout, stdin, on_stderr_line)
            if res.returncode != SSH_FAILURE:
                if check and res.returncode != 0:
                    raise DeviceError(
                        f"device {self.address}: command failed (exit {res.returncode}): {_short(remote)}\n"
                        f"{_tail(res.stderr)}",
                        fix="run the same command over ssh by hand to see what the device is missing",
                    )
                return res
            last = res.stderr.strip()
            low = last.lower()
            if any(s in low for s in _HOST_KEY_SIGNS):
                raise DeviceError(
                    f"device {self.address}: host key verification failed (the host key is not in "
                    f"{self._known_hosts_label()} or does not match it): {_tail(last, 3)}",
                    fix=f"check the device's key fingerprint, then add it: ssh-keyscan -p {self.device.port} "
                    f"{self.device.host} >> {self._known_hosts_label()}  (or set device.strict_host_key_checking: "
                    "false to accept a new device's key on first use)",
                )
            if any(s in low for s in _AUTH_SIGNS):
                key = self.device.identity_file or "your default ssh keys"
                raise DeviceError(
                    f"device {self.address}: login refused with {key}: {_tail(last, 3)}",
                    fix=f"add the public key to ~/.ssh/authorized_keys of {self.device.user or 'the user'} on the "
                    "device (ssh-copy-id), or set device.identity_file / device.user",
                )
            if attempt + 1 < attempts:
                time.sleep(self.backoff_s * (2**attempt))
        raise DeviceUnreachable(
            f"device {self.address} unreachable after {attempts} attempt(s) "
            f"(connect timeout {self.device.timeout_s:g} s each): {_tail(last, 3) or 'no answer'}",
            fix="check that the device is on, on the network, and that sshd listens on port "
            f"{self.device.port}; or raise device.timeout_s / device.retries",
        )

    def _once(
        self, remote: str, timeout: float | None, stdin: Path | None, on_stderr_line: Callable[[str], None] | None
    ) -> Result:
        argv = [*self.base_argv(), remote]
        stdin_f = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(argv, stdin=stdin_f, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if on_stderr_line is None:
                try:
                    out, err = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    raise DeviceError(
                        f"device {self.address}: command took longer than {timeout:g} s: {_short(remote)}",
                        fix="lower profile.runs / profile.warmup in the target, or raise device.run_timeout_s",
                    ) from None
                return Result(proc.returncode, out, err)
            return _stream(proc, timeout, on_stderr_line, self.address, remote)
        except OSError as exc:
            raise DeviceError(f"cannot start {self.ssh}: {exc}", fix="check the OpenSSH client installation") from exc
        finally:
            if stdin is not None:
                stdin_f.close()  # type: ignore[union-attr]

    def check(self) -> str:
        """Connect and run ``uname -srm`` on the device; returns its output (raises if the device is unusable)."""
        return self.run(["uname", "-srm"], timeout=self.device.timeout_s * 3).stdout.strip()

    def put(self, local: Path, remote_dir: str, name: str | None = None) -> str:
        """Copy ``local`` into ``remote_dir`` (created) as ``name``; atomic on the device. Returns the remote path."""
        name = name or local.name
        if "/" in name or name in ("", ".", ".."):
            raise DeviceError(f"bad remote file name {name!r}", fix="use a plain file name")
        dest = f"{remote_dir.rstrip('/') or '/'}/{name}"
        part = f"{remote_dir.rstrip('/') or '/'}/.{name}.part"
        cmd = (
            f"mkdir -p -- {shlex.quote(remote_dir)} && cat > {shlex.quote(part)} && "
            f"mv -f -- {shlex.quote(part)} {shlex.quote(dest)}"
        )
        self.run(cmd, timeout=max(60.0, local.stat().st_size / 1e6), stdin=local)
        return dest

    def _known_hosts_label(self) -> str:
        return str(self.device.known_hosts) if self.device.known_hosts else "~/.ssh/known_hosts"


def _ssh_path(p: Path) -> str:
    # ssh_config splits option values on whitespace; quoting keeps a path with spaces one value
    text = str(p)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _stream(
    proc: subprocess.Popen[str], timeout: float | None, on_line: Callable[[str], None], address: str, remote: str
) -> Result:
    err_lines: list[str] = []

    def keep(line: str) -> None:
        err_lines.append(line)
        on_line(line)

    out, timed_out = communicate(proc, timeout, keep)
    if timed_out:
        raise DeviceError(
            f"device {address}: command took longer than {timeout:g} s: {_short(remote)}",
            fix="lower profile.runs / profile.warmup in the target, or raise device.run_timeout_s",
        )
    return Result(proc.returncode, out, "".join(err_lines))


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
