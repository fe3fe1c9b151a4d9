"""Judge replicas under real network faults (issue 25), in a network-namespace lab (tests/netlab.py):
one client namespace, three replica namespaces behind a bridge, addresses only inside the lab, and an nft
rule in the root namespace that drops anything sent to the lab's range from outside it.

Replica r1 is a REAL vLLM server of the toy judge (started once per module). The answers the client gets
from it alone are recorded through a forwarding recorder and are the reference ("a healthy single server");
r2 and r3 are stub replicas that replay those recorded answers (a second and third vLLM would not fit this
machine's CPU budget). The client (``UnifiedReward.from_server`` with the three URLs, logit mode, exact ids)
runs in the client namespace (tests/scripts/lab_client.py) and prints its results as JSON.

Each scenario applies one fault, runs a 40-item batch (pairs, logit mode: one request per item), and
asserts: 0 lost, 0 out of order, every result equal to the reference, wall time within deadline + one
timeout, and the load on the healthy replicas. The scenario table is printed at the end of the module.
Skipped only where namespaces cannot be made (not root, no ``ip``/``nft``: ``make test`` installs them);
CI runs as root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import netlab
from servers import VLLMServer, require_vllm

pytestmark = pytest.mark.slow

ITEMS = 40
TIMEOUT = 4.0  # per attempt
DEADLINE = 30.0  # per call
CONCURRENCY = 4
PROB_TOLERANCE = 1e-4  # as tests/test_vllm_server.py: the same request batched differently on CPU
REAL, SECOND, THIRD = "r1", "r2", "r3"
TESTS = Path(__file__).resolve().parent
REPLICA_SCRIPT = TESTS / "scripts" / "lab_replica.py"
CLIENT_SCRIPT = TESTS / "scripts" / "lab_client.py"


def script_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{TESTS.parent}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1"}


class LabVLLM(VLLMServer):
    """`VLLMServer` (the line ``serve-cmd`` prints: 127.0.0.1) run inside a lab host's namespace."""

    def __init__(self, lab: netlab.Lab, host: str, model_path: str):
        super().__init__(model_path)
        self.lab, self.host = lab, host

    def command(self) -> list[str]:
        return self.lab.command(self.host, super().command())

    def wait_ready(self) -> None:
        self.lab.wait_http(self.host, f"http://127.0.0.1:{self.port}/health", self.process, self.startup_timeout)


@dataclass
class Cluster:
    lab: netlab.Lab
    answers: Path  # recorded from the real replica
    reference: list[dict]  # the real replica's results alone
    world: str  # the toy world's folder (the client's items)
    stubs: dict[str, tuple[subprocess.Popen, int]] = field(default_factory=dict)  # host: (process, port)

    @property
    def urls(self) -> str:
        return ",".join(self.lab.url(host) for host in (REAL, SECOND, THIRD))

    def start(self, host: str, *args: str) -> tuple[subprocess.Popen, int]:
        """A `lab_replica.py` process in ``host`` and the 127.0.0.1 port it serves on."""
        process = self.lab.start(host, [sys.executable, str(REPLICA_SCRIPT), *args], stdout=subprocess.PIPE,
                                 text=True, env=script_env())  # fmt: skip
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"lab replica {args} in {host} did not start ({process.wait(10)})")
        return process, int(line)

    def restart_stub(self, host: str, *flags: str) -> None:
        """Kill ``host``'s replay stub and start another (``flags``: `lab_replica.py replay`'s) on its address."""
        process, _ = self.stubs.pop(host)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        self.stubs[host] = self.start(host, "replay", str(self.answers), *flags)
        self.lab.expose(host, self.stubs[host][1])

    def client(self, urls: str, timeout: float = TIMEOUT, deadline: float = DEADLINE) -> dict:
        argv = [sys.executable, str(CLIENT_SCRIPT), urls, "--world", self.world, "--items", str(ITEMS),
                "--timeout", str(timeout), "--deadline", str(deadline), "--concurrency", str(CONCURRENCY)]  # fmt: skip
        done = subprocess.run(self.lab.command("client", argv), capture_output=True, text=True, env=script_env(),
                              timeout=deadline + 4 * timeout + 60)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def lab():
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with netlab.Lab(["client", REAL, SECOND, THIRD]) as made:
        yield made


@pytest.fixture(scope="module")
def cluster(lab, table, toy_world, tmp_path_factory):
    """The real replica (recorded alone: the reference), then the two replay stubs."""
    require_vllm()
    server = LabVLLM(lab, REAL, toy_world["reward_model"])
    try:
        server.start()
        answers = tmp_path_factory.mktemp("lab") / "answers.jsonl"
        made = Cluster(lab, answers, [], toy_world["root"])
        recorder, port = made.start(REAL, "record", str(server.port), str(answers))
        lab.expose(REAL, port)
        alone = made.client(lab.url(REAL), timeout=120, deadline=400)  # a cold CPU server: no fault here
        assert all(r["error"] is None for r in alone["results"]), [r["error"] for r in alone["results"]][:3]
        made.reference = alone["results"]
        table.append(f"(reference: the real vLLM alone, {ITEMS} items in {alone['wall']:.1f}s)")
        os.killpg(recorder.pid, signal.SIGKILL)
        lab.expose(REAL, server.port)
        for host in (SECOND, THIRD):
            made.stubs[host] = made.start(host, "replay", str(answers))
            lab.expose(host, made.stubs[host][1])
        yield made
    finally:
        server.close()


@pytest.fixture(scope="module")
def table(request):
    rows: list[str] = []
    yield rows
    writer = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    header = [
        f"\nreplica network faults: {ITEMS} items, logit mode, timeout {TIMEOUT:g}s, deadline {DEADLINE:g}s; "
        f"load = requests answered 200 (POSTs sent) per replica, r1 = real vLLM, r2/r3 = replay stubs",
        "| scenario | ok | failed | lost | wrong | out of order | wall / limit | load r1 | load r2 | load r3 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with capture.global_and_fixture_disabled():
        for line in header + rows:
            writer.write_line(line)


def same(probs: dict, reference: dict) -> bool:
    """Equal to the reference within vLLM's batch-dependent float noise (live answers from the real replica)."""
    return probs.keys() == reference.keys() and all(abs(probs[k] - reference[k]) <= PROB_TOLERANCE for k in probs)


def tally(cluster: Cluster, out: dict) -> dict:
    """Items ok / failed / lost / wrong / out of order against the reference, and load per replica."""
    results, reference = out["results"], cluster.reference
    got = {i: r for i, r in enumerate(results) if r is not None}
    ok = [i for i, r in got.items() if r["error"] is None]
    wrong = [i for i in ok if not same(got[i]["probs"], reference[i]["probs"])]
    out_of_order = [i for i in wrong if any(same(got[i]["probs"], ref["probs"]) for ref in reference)]
    load = {}
    for host in (REAL, SECOND, THIRD):
        where = f"{cluster.lab.address[host]}:{netlab.PORT}"
        load[host] = (out["answered"].get(where, 0), out["sent"].get(where, 0))
    return {
        "ok": len(ok) - len(wrong), "failed": len(got) - len(ok), "lost": ITEMS - len(got), "wrong": len(wrong),
        "out_of_order": len(out_of_order), "wall": out["wall"], "load": load,
        "errors": [r["error"] for r in got.values() if r["error"]][:3],
    }  # fmt: skip


def row(name: str, t: dict) -> str:
    load = " | ".join(f"{answered} ({sent})" for answered, sent in t["load"].values())
    return (f"| {name} | {t['ok']} | {t['failed']} | {t['lost']} | {t['wrong']} | {t['out_of_order']} | "
            f"{t['wall']:.1f}s / {DEADLINE + TIMEOUT:g}s | {load} |")  # fmt: skip


def freeze(cluster: Cluster, host: str, sig: int) -> None:
    os.killpg(cluster.stubs[host][0].pid, sig)


class Slow:
    """``host`` behind a TCP proxy that delivers its answers 500 ms late."""

    def __init__(self, host: str):
        self.host = host

    def apply(self, cluster: Cluster) -> None:
        self.proxy, port = cluster.start(self.host, "delay", str(cluster.stubs[self.host][1]), "0.5")
        cluster.lab.expose(self.host, port)

    def undo(self, cluster: Cluster) -> None:
        cluster.lab.expose(self.host, cluster.stubs[self.host][1])
        os.killpg(self.proxy.pid, signal.SIGKILL)


@dataclass
class Scenario:
    name: str
    apply: Callable[[Cluster], None]
    undo: Callable[[Cluster], None]
    down: str | None = None  # a replica that must answer nothing: the others answer every item
    slow: str | None = None  # a replica that must get less than half the load of the fastest one


RENAMED = ("--served-name", "UnifiedReward-v2", "--not-found")
OTHER_CHECKPOINT = ("--root", "/ckpt/UnifiedReward-other", "--skew")
SCENARIOS = [
    Scenario("healthy (3 replicas)", lambda c: None, lambda c: None),
    Scenario("partition r2 (bridge drops its port)", lambda c: c.lab.partition(SECOND), lambda c: c.lab.heal(SECOND),
             down=SECOND),  # fmt: skip
    Scenario("black hole r1 (the real vLLM)", lambda c: c.lab.black_hole(REAL), lambda c: c.lab.heal(REAL), down=REAL),
    Scenario("SIGSTOP r3", lambda c: freeze(c, THIRD, signal.SIGSTOP), lambda c: freeze(c, THIRD, signal.SIGCONT),
             down=THIRD),  # fmt: skip
    Scenario("5% loss on the client (nft numgen)", lambda c: c.lab.loss("client", 5), lambda c: c.lab.heal("client")),
    Scenario("slow r2 (+500 ms proxy)", (slow := Slow(SECOND)).apply, slow.undo, slow=SECOND),
    Scenario("r3 renamed (404 unknown model)", lambda c: c.restart_stub(THIRD, *RENAMED),
             lambda c: c.restart_stub(THIRD), down=THIRD),  # fmt: skip
    Scenario("r3 restarted as another checkpoint", lambda c: c.restart_stub(THIRD, *OTHER_CHECKPOINT),
             lambda c: c.restart_stub(THIRD), down=THIRD),  # fmt: skip
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_replicas_under_network_fault(cluster, table, scenario):
    scenario.apply(cluster)
    try:
        out = cluster.client(cluster.urls)
    finally:
        scenario.undo(cluster)
    t = tally(cluster, out)
    table.append(row(scenario.name, t))
    assert (t["lost"], t["out_of_order"], t["wrong"], t["failed"]) == (0, 0, 0, 0), t["errors"]
    assert t["wall"] <= DEADLINE + TIMEOUT, t["wall"]
    answered = {host: count for host, (count, _) in t["load"].items()}
    if scenario.down is not None:  # every item (and the token-id request) answered by the healthy replicas
        assert answered.pop(scenario.down) == 0 and sum(answered.values()) >= ITEMS, t["load"]
        assert t["load"][scenario.down][1] <= CONCURRENCY, t["load"]  # at most one wave sent to it, then out
    if scenario.slow is not None:
        assert answered[scenario.slow] < max(answered.values()) / 2, t["load"]
