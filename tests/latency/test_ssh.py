"""The SSH client against a real sshd: commands, file copy, host-key and key refusal, unreachable ports, quoting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgekd.config.target import DeviceSpec, load_target, parse_device, with_device
from edgekd.core.errors import ConfigError, DeviceError, DeviceUnreachable
from edgekd.latency.ssh import SSHClient, quote_command
from tests.latency.conftest import SSHServer, free_port

HOSTILE = [
    "; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "a b' ; touch {m}; '",
    '" && touch {m} && "',
    "x\\'$(touch {m})",
    "-o ProxyCommand=touch {m}",
    "| touch {m}",
]


def _client(server: SSHServer, **extra: object) -> SSHClient:
    return SSHClient(DeviceSpec.model_validate(server.device(**extra)), backoff_s=0.1)


def test_runs_commands_and_copies_files(sshd: SSHServer, tmp_path: Path) -> None:
    client = _client(sshd)
    assert client.run(["echo", "hello world"]).stdout == "hello world\n"
    assert "Linux" in client.check()
    res = client.run(["sh", "-c", "exit 3"], check=False)
    assert res.returncode == 3
    with pytest.raises(DeviceError, match="exit 4"):
        client.run(["sh", "-c", "echo broken >&2; exit 4"])
    payload = tmp_path / "blob.bin"
    payload.write_bytes(bytes(range(256)) * 1000)
    dest = client.put(payload, str(tmp_path / "remote dir"), "copy.bin")
    assert Path(dest).read_bytes() == payload.read_bytes()
    assert not list((tmp_path / "remote dir").glob(".*part"))


def test_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(DeviceError, match="host key verification failed") as err:
        _client(sshd, known_hosts=str(empty)).check()
    assert "ssh-keyscan" in str(err.value) and str(empty) in str(err.value)
    assert empty.read_text() == ""  # strict checking never adds the key itself


def test_changed_host_key_is_refused_even_without_strict_checking(sshd: SSHServer, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIFm2fG8wJ7o3bJd3dG1qXqj7wCkq4nY1k0d1WmBz0mQb"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    with pytest.raises(DeviceError, match="host key verification failed"):
        _client(sshd, known_hosts=str(wrong), strict_host_key_checking=False).check()


def test_new_host_key_accepted_on_first_use_when_not_strict(sshd: SSHServer, tmp_path: Path) -> None:
    fresh = tmp_path / "known_hosts"
    fresh.write_text("")
    assert "Linux" in _client(sshd, known_hosts=str(fresh), strict_host_key_checking=False).check()
    host_key = (sshd.folder / "host_ed25519.pub").read_text().split()[1]
    assert host_key in fresh.read_text()  # remembered: a later change of key is refused


def test_wrong_key_is_refused_without_retries(sshd: SSHServer, tmp_path: Path) -> None:
    import subprocess

    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    start = time.monotonic()
    with pytest.raises(DeviceError, match="login refused") as err:
        _client(sshd, identity_file=str(key), retries=3).check()
    assert time.monotonic() - start < 5  # an auth failure is not retried with backoff
    assert str(key) in str(err.value) and "authorized_keys" in str(err.value)


def test_unreachable_port_raises_after_retries_within_timeout() -> None:
    port = free_port()  # nothing listens there
    dev = DeviceSpec(kind="ssh", host="127.0.0.1", port=port, timeout_s=2, retries=2)
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable, match=f"127.0.0.1:{port} unreachable after 3 attempt") as err:
        SSHClient(dev, backoff_s=0.1).check()
    assert time.monotonic() - start < 2 * 3 + 2
    assert "Connection refused" in str(err.value)


def test_unroutable_host_times_out_within_connect_timeout() -> None:
    dev = DeviceSpec(kind="ssh", host="192.0.2.1", timeout_s=1, retries=0)  # TEST-NET-1: never answers
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable):
        SSHClient(dev).check()
    assert time.monotonic() - start < 4


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_arguments_and_paths_are_passed_literally(sshd: SSHServer, tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    text = template.format(m=marker)
    client = _client(sshd)
    assert client.run(["printf", "%s", text]).stdout == text
    # as a remote folder: created with exactly that name (below tmp_path), no command runs
    workdir = str(tmp_path / text.replace("/", "_"))
    payload = tmp_path / "p.txt"
    payload.write_text("data")
    dest = client.put(payload, workdir, "model.onnx")
    assert Path(dest).read_text() == "data"
    assert not marker.exists()


def test_hostile_python_is_one_quoted_word(sshd: SSHServer, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    client = _client(sshd)
    res = client.run([f"python3; touch {marker}", "-c", "print(1)"], check=False)
    assert res.returncode == 127 and not marker.exists()  # "command not found", nothing else ran


@pytest.mark.parametrize(
    "field,value",
    [
        ("host", "127.0.0.1; touch /tmp/pwned"),
        ("host", "$(touch /tmp/pwned)"),
        ("host", "-oProxyCommand=touch /tmp/pwned"),
        ("host", "a b"),
        ("user", "root; touch /tmp/pwned"),
        ("user", "-lroot"),
        ("user", "$(id)"),
        ("workdir", "/tmp/x\ntouch /tmp/pwned"),
        ("python", "python3\x00"),
        ("python", "-cimport os; os.system('touch /tmp/pwned')#"),
        ("workdir", "-cimport os#"),
    ],
)
def test_hostile_config_strings_rejected_at_validation(field: str, value: str) -> None:
    match = field if field in ("host", "user") else "starts with '-'" if value.startswith("-") else "control character"
    with pytest.raises(ValueError, match=match):
        DeviceSpec.model_validate({"kind": "ssh", "host": "h", field: value})


def test_ssh_argv_is_a_list_with_security_options(tmp_path: Path) -> None:
    dev = DeviceSpec(kind="ssh", host="pi.local", user="pi", port=2200, identity_file=tmp_path / "k k")
    argv = SSHClient(dev, ssh="/usr/bin/ssh").base_argv()
    assert argv[0] == "/usr/bin/ssh" and argv[-2:] == ["--", "pi.local"]
    joined = " ".join(argv)
    for opt in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10", "-p 2200", "-l pi"):
        assert opt in joined
    assert argv[argv.index("-i") + 1] == str(tmp_path / "k k")
    assert quote_command(["echo", "a b", "$(x)"]) == "echo 'a b' '$(x)'"


def test_device_override_parsing() -> None:
    assert parse_device("pi@raspberrypi.local:2222") == {"user": "pi", "host": "raspberrypi.local", "port": 2222}
    assert parse_device("10.0.0.5") == {"host": "10.0.0.5"}
    assert parse_device("admin@[fe80::1]:22") == {"user": "admin", "host": "fe80::1", "port": 22}
    t = with_device(load_target("x86-cpu"), "pi@10.0.0.5:2222")
    assert (t.device.kind, t.device.user, t.device.host, t.device.port) == ("ssh", "pi", "10.0.0.5", 2222)
    with pytest.raises(ConfigError, match=r"--device\.host"):
        with_device(load_target("x86-cpu"), "pi@$(reboot)")
    with pytest.raises(ConfigError, match="expected user@host"):
        parse_device("pi@host:notaport")
