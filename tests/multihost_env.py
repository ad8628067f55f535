"""Real hosts on one Linux machine, for the SCOOP multi-host test: network namespaces joined by veth
links to a bridge, each with its own sshd, hostname (UTS namespace), /run and /etc/hosts.

Needs root, ``ip`` (iproute2), ``unshare``, and Debian's openssh-server and -client. Uses only the
addresses of these namespaces (10.213.0.0/24) and loopback. ``HostNet`` tears everything down before
setting up (a failed earlier run must not block the next) and on exit; a lock file serialises
concurrent users of the fixed names.

Also runnable by hand: ``python tests/multihost_env.py up|down`` (``up`` prints the SCOOP arguments).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BRIDGE = "nasdipbr0"
SUBNET = "10.213.0"
PREFIX = "nasdip-h"  # namespaces nasdip-h1, nasdip-h2, ...; root-side veth ends nd-h1, nd-h2, ...
LOCK = Path(tempfile.gettempdir()) / "nasdip-multihost.lock"
SSHD = "/usr/sbin/sshd"


def missing_requirements() -> str | None:
    """Why the namespaces cannot be made here (None when they can)."""
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "timeout"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y openssh-server iproute2)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (apt-get install -y openssh-server)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


class HostNet:
    """``with HostNet(2) as net:`` hosts ``net.addresses`` reachable with ``net.ssh`` (an ssh wrapper
    for ``python -m scoop --ssh-executable``); hostnames h1, h2, ..."""

    def __init__(self, hosts: int = 2, workdir: str | os.PathLike | None = None):
        self.names = [f"h{i}" for i in range(1, hosts + 1)]
        self.addresses = [f"{SUBNET}.{10 + i}" for i in range(1, hosts + 1)]
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="nasdip-hosts-"))
        self.ssh = self.dir / "ssh"
        self._lock = None

    # -- lifecycle --
    def __enter__(self) -> "HostNet":
        self._lock = open(LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.teardown()
            self.setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.teardown()
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        hosts = ["127.0.0.1 localhost", f"{SUBNET}.1 head"] + [f"{a} {n}" for a, n in zip(self.addresses, self.names)]
        (self.dir / "hosts").write_text("\n".join(hosts) + "\n")
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "id"))
        self._write_ssh_wrapper()
        for name, address in zip(self.names, self.addresses):
            self._add_host(name, address)
        self._wait_for_ssh()

    def _add_host(self, name: str, address: str) -> None:
        ns, veth = PREFIX + name[1:], f"nd-{name}"
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", veth, "master", BRIDGE)
        run("ip", "link", "set", veth, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        host_dir = self.dir / name
        host_dir.mkdir()
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_dir / "host_key"))
        (host_dir / "sshd_config").write_text("\n".join([
            f"ListenAddress {address}", f"HostKey {host_dir / 'host_key'}", f"PidFile {host_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'id.pub'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no",  # the key lives in a temporary folder
            "MaxStartups 50", "PrintMotd no", "PrintLastLog no", ""]))
        script = (f"hostname {name} && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && "
                  f"mount --bind {self.dir / 'hosts'} /etc/hosts && "
                  f"exec {SSHD} -f {host_dir / 'sshd_config'} -E {host_dir / 'sshd.log'}")
        run("ip", "netns", "exec", ns, "unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script)

    def _write_ssh_wrapper(self) -> None:
        (self.dir / "ssh_config").write_text("\n".join([
            "Host *", "  User root", f"  IdentityFile {self.dir / 'id'}", "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null", "  LogLevel ERROR",
            "  ConnectTimeout 5", "  BatchMode yes", ""]))
        self.ssh.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {self.dir / 'ssh_config'} \"$@\"\n")
        self.ssh.chmod(0o755)

    def _wait_for_ssh(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for address in self.addresses:
            while True:
                probe = subprocess.run([str(self.ssh), address, "true"], capture_output=True, text=True, timeout=15)
                if probe.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ssh to {address} does not work: {probe.stderr.strip()}")
                time.sleep(0.2)

    def host_pids(self, name: str) -> list[int]:
        """Processes running inside host ``name``'s network namespace."""
        out = run("ip", "netns", "pids", PREFIX + name[1:], check=False).stdout
        return [int(p) for p in out.split()]

    def teardown(self) -> None:
        """Stop every sshd and process of these hosts and remove the links and namespaces (idempotent)."""
        existing = run("ip", "netns", "list", check=False).stdout
        for name in self.names + [f"h{i}" for i in range(len(self.names) + 1, 9)]:  # also leftovers of larger runs
            ns = PREFIX + name[1:]
            pidfile = self.dir / name / "sshd.pid"
            if pidfile.exists():
                _kill(int(pidfile.read_text().split()[0]))
            if ns in existing.split():
                for pid in self.host_pids(name):
                    _kill(pid)
                run("ip", "netns", "del", ns, check=False)
            run("ip", "link", "del", f"nd-{name}", check=False)
        run("ip", "link", "del", BRIDGE, check=False)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    folder = Path(tempfile.gettempdir()) / "nasdip-hosts-manual"
    net = HostNet(2, folder)
    if action == "down":
        net.teardown()
        shutil.rmtree(folder, ignore_errors=True)
    else:
        reason = missing_requirements()
        if reason:
            sys.exit(f"cannot set up hosts: {reason}")
        net.teardown()
        net.setup()
        print(f"--hosts {' '.join(net.addresses)} --ssh-executable {net.ssh}")
