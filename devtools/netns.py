"""Throwaway network namespaces for tests that need a small network of their own (the firewall test),
and packet drops that cut a link without a FIN or RST (`dropping`).

Each namespace is held by a `sleep` started with `unshare --net` and entered with nsenter; killing
that process frees the namespace and everything in it (addresses, veth ends, nftables tables).
Unlike `ip netns add` this needs no /run/netns bind mounts, so it works in the host's network and
inside the `unshare --net` that `./dev test` runs the suite in. Root only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence


class NetNs:
    """One network namespace with its loopback up; `run` executes a command inside it."""

    def __init__(self) -> None:
        # The shell prints once it runs, i.e. after unshare made the namespace, then execs into the
        # sleep: same pid, so /proc/<pid>/ns/net names the new namespace from then on.
        self._holder = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", "echo ready && exec sleep infinity"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("unshare --net could not make a network namespace")
        self.pid = self._holder.pid
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *argv: str) -> list[str]:
        """`argv` as a command line that runs inside this namespace (for Popen)."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; a failure raises with its stderr."""
        done = subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} (netns {self.pid}) rc {done.returncode}: {done.stderr.strip()}")
        return done

    def close(self) -> None:
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait(timeout=30)
        if self._holder.stdout is not None:
            self._holder.stdout.close()


def link(a: NetNs, a_addrs: Sequence[str], b: NetNs, b_addrs: Sequence[str]) -> None:
    """Join two namespaces with a veth pair (veth0 on each side), give each end its addresses, and bring it up.

    IPv6 addresses skip duplicate address detection, so they are usable at once."""
    a.run("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", str(b.pid))
    for ns, addrs in ((a, a_addrs), (b, b_addrs)):
        for addr in addrs:
            ns.run("ip", "address", "add", addr, "dev", "veth0", *(["nodad"] if ":" in addr else []))
        ns.run("ip", "link", "set", "veth0", "up")


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[NetNs]]:
    """`count` fresh namespaces, all freed on exit."""
    made: list[NetNs] = []
    try:
        for _ in range(count):
            made.append(NetNs())
        yield made
    finally:
        for ns in made:
            ns.close()


@contextlib.contextmanager
def dropping(*, hosts: Sequence[str] = (), ports: Sequence[int] = ()) -> Iterator[None]:
    """While inside, drop every outgoing packet to or from `hosts` and TCP `ports`, as a dead
    link or a host lost without a FIN or RST would: nothing is refused, nothing arrives.
    nftables rules in the current network namespace, removed on exit (run it inside a
    namespace of its own, as the test suite is)."""
    table = f"phoneagent_drop_{os.getpid()}"
    rules = "".join(f"ip saddr {h} drop\nip daddr {h} drop\n" for h in hosts) + \
        "".join(f"tcp dport {p} drop\ntcp sport {p} drop\n" for p in ports)
    subprocess.run(["nft", "-f", "-"], check=True, capture_output=True, text=True,
                   input=f"table ip {table} {{ chain out {{ type filter hook output priority -10; policy accept;\n{rules}}}\n}}\n")
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], check=False, capture_output=True)
