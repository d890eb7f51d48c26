"""Real Ray nodes on 127.0.0.1 for tests: ``ray start --block`` with private ports and temp folders.

Each node runs in its own session and is stopped by the process ids the test started (never a bare
``ray stop``: that would end every Ray cluster of the user on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_env(tmp: Path) -> dict[str, str]:
    """The environment of the test's nodes and drivers: no auth, no usage stats, a private data cache."""
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        OMP_NUM_THREADS="1",
        NTUNE_CACHE=str(tmp / "cache"),
    )
    env.pop("RAY_ADDRESS", None)
    return env


def start_node(
    args: list[str], temp_dir: Path, log: Path, env: dict[str, str], cpus: int = 1
) -> subprocess.Popen:
    """``ray start --block`` in its own session, so that its processes can be found and stopped."""
    cmd = [
        str(BIN / "ray"),
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=100000000",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
        *args,
    ]
    return subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def stop_nodes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each ``ray start --block`` and everything it spawned; SIGKILL what is left after 20 s."""
    tree: list[psutil.Process] = []
    for p in procs:
        try:
            root = psutil.Process(p.pid)
            tree += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        # the node's own processes (raylet, gcs_server, workers, agents) share its session
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == p.pid and proc not in tree:
                    tree.append(proc)
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                pass
    for p in reversed(procs):  # the worker node first, then the head
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


def wait_for_nodes(address: str, n: int, env: dict[str, str], timeout: float = 120) -> list[str]:
    """Node ids of the cluster once ``n`` nodes are alive (asked by a short-lived driver)."""
    code = (
        "import json, time, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        f"deadline = time.time() + {timeout}\n"
        "while True:\n"
        "    ids = [x['NodeID'] for x in ray.nodes() if x['Alive']]\n"
        f"    if len(ids) >= {n} or time.time() > deadline:\n"
        "        break\n"
        "    time.sleep(1)\n"
        "print(json.dumps(ids))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout + 60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
