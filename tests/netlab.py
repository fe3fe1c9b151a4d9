"""A multi-host network lab on one machine, for tests (run as root; docs/serving.md, "Replicas and failures").

Linux network namespaces: one per host and one holding a bridge, a veth pair per host into the bridge,
addresses from a private /24 (`SUBNET`) that exists only inside these namespaces, no default route out of
any of them. While the lab is up, an nft table in the ROOT namespace drops every packet to that range, so a
request made by mistake outside the lab cannot leave through the machine's default route.

Servers bind 127.0.0.1 inside their host's namespace and are reached on the host's address, port `PORT`,
through an nft DNAT rule (the kernel's TCP behaviour is kept: a SIGSTOPped server still completes
handshakes). Faults are nft rules: a partition at the bridge, a black hole on the host, random loss.
Everything the lab made is removed by namespace name, nft table name and process id (`close`), also for
a lab left behind by a killed test run (`remove_stale_labs`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

SUBNET = "10.231.25"  # a /24 routed nowhere: only the lab's namespaces have addresses in it
PORT = 8000
PREFIX = "urlab"
BRIDGE_HOST = "br"
FAULT_TABLE = "lab_fault"


def unavailable_reason() -> str | None:
    """Why a lab cannot be made here (not root, no ``ip`` or ``nft``), or ``None``."""
    if os.geteuid() != 0:
        return "network-namespace lab needs root (CI runs as root)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"network-namespace lab needs {' and '.join(missing)} (apt-get install iproute2 nftables)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def delete_namespace(name: str) -> None:
    """Kill every process still inside namespace ``name`` (by PID, from ``ip netns pids``), then delete it."""
    for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", name], check=False)


def remove_stale_labs() -> None:
    """Processes, namespaces and root guard tables of labs whose test process is gone (a run killed before
    its cleanup)."""
    names = run(["ip", "netns", "list"]).stdout.split()
    owners = {int(m.group(1)) for name in names if (m := re.fullmatch(rf"{PREFIX}(\d+)-\w+", name))}
    tables = run(["nft", "list", "tables"]).stdout
    owners |= {int(pid) for pid in re.findall(rf"table inet {PREFIX}_guard_(\d+)", tables)}
    for pid in owners:
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            for name in names:
                if name.startswith(f"{PREFIX}{pid}-"):
                    delete_namespace(name)
            run(["nft", "delete", "table", "inet", f"{PREFIX}_guard_{pid}"], check=False)


class Lab:
    """Hosts ``hosts`` (the first at ``SUBNET.10``, then .11 ...) behind one bridge; use as a context manager."""

    def __init__(self, hosts: Sequence[str]):
        self.prefix = f"{PREFIX}{os.getpid()}"
        self.guard_table = f"{PREFIX}_guard_{os.getpid()}"
        self.address = {host: f"{SUBNET}.{10 + i}" for i, host in enumerate(hosts)}
        self.processes: list[subprocess.Popen] = []

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def url(self, host: str) -> str:
        return f"http://{self.address[host]}:{PORT}"

    def __enter__(self) -> Lab:
        remove_stale_labs()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        guard = f"""table inet {self.guard_table} {{
  chain outgoing {{
    type filter hook output priority -300; policy accept
    ip daddr {SUBNET}.0/24 drop
  }}
  chain forwarded {{
    type filter hook forward priority -300; policy accept
    ip daddr {SUBNET}.0/24 drop
  }}
}}"""
        run(["nft", "-f", "-"], stdin=guard)  # first: nothing to the lab's range leaves the root namespace
        bridge = self.namespace(BRIDGE_HOST)
        run(["ip", "netns", "add", bridge])
        run(["ip", "-n", bridge, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", bridge, "link", "set", "br0", "up"])
        for host, address in self.address.items():
            ns = self.namespace(host)
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", bridge, "link", "add", f"p-{host}", "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "-n", bridge, "link", "set", f"p-{host}", "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"])  # DNAT to 127.0.0.1
            routes = run(["ip", "-n", ns, "route", "show", "default"]).stdout.strip()
            assert not routes, f"{ns} has a default route: {routes}"

    def close(self) -> None:
        """Kill the lab's processes (by process group), delete its namespaces and the root guard."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGCONT)  # a frozen process must run to die cleanly
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
        for host in [*self.address, BRIDGE_HOST]:
            delete_namespace(self.namespace(host))  # and any process left in it (a server's children)
        run(["nft", "delete", "table", "inet", self.guard_table], check=False)

    # --- processes ---------------------------------------------------------------------------------

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def start(self, host: str, argv: Sequence[str], **popen) -> subprocess.Popen:
        """A process in ``host``'s namespace, in its own process group; killed by `close`."""
        process = subprocess.Popen(self.command(host, argv), start_new_session=True, **popen)
        self.processes.append(process)
        return process

    def nft(self, host: str, script: str) -> None:
        run(self.command(host, ["nft", "-f", "-"]), stdin=script)

    def expose(self, host: str, port: int) -> None:
        """Route ``host``'s address, port `PORT`, to 127.0.0.1:``port`` inside ``host`` (replaces the last one)."""
        run(self.command(host, ["nft", "delete", "table", "ip", "lab_expose"]), check=False)
        self.nft(host, f"""table ip lab_expose {{
  chain pre {{
    type nat hook prerouting priority -100; policy accept
    tcp dport {PORT} dnat to 127.0.0.1:{port}
  }}
}}""")

    def wait_http(self, host: str, url: str, process: subprocess.Popen, timeout: float) -> None:
        """Poll ``url`` from inside ``host`` until it answers 200; fail if ``process`` exits or on ``timeout``."""
        probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)"
        stop_at = time.monotonic() + timeout
        while time.monotonic() < stop_at:
            if process.poll() is not None:
                raise RuntimeError(f"process {process.args} exited ({process.returncode}) before {url} answered")
            if run(self.command(host, ["python3", "-c", probe, url]), check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{url} in {host} not ready after {timeout}s")

    # --- faults ---------------------------------------------------------------------------------------

    def partition(self, host: str) -> None:
        """Cut ``host`` off at the switch: the bridge drops every frame from and to its port."""
        self.nft(BRIDGE_HOST, f"""table bridge {FAULT_TABLE}_{host} {{
  chain cut {{
    type filter hook forward priority 0; policy accept
    iifname "p-{host}" drop
    oifname "p-{host}" drop
  }}
}}""")

    def black_hole(self, host: str) -> None:
        """``host`` drops every packet that arrives (a firewall gone wrong, a powered-off node)."""
        self.nft(host, f"""table ip {FAULT_TABLE} {{
  chain incoming {{
    type filter hook prerouting priority -300; policy accept
    iifname "eth0" drop
  }}
}}""")

    def loss(self, host: str, percent: int) -> None:
        """``host`` drops ``percent``% of its packets at random, both ways."""
        rule = f"numgen random mod 100 < {percent} drop"
        self.nft(host, f"""table ip {FAULT_TABLE} {{
  chain incoming {{
    type filter hook prerouting priority -300; policy accept
    iifname "eth0" {rule}
  }}
  chain outgoing {{
    type filter hook postrouting priority 300; policy accept
    oifname "eth0" {rule}
  }}
}}""")

    def heal(self, host: str) -> None:
        """Remove ``host``'s faults (black hole, loss, partition)."""
        run(self.command(host, ["nft", "delete", "table", "ip", FAULT_TABLE]), check=False)
        run(self.command(BRIDGE_HOST, ["nft", "delete", "table", "bridge", f"{FAULT_TABLE}_{host}"]), check=False)
