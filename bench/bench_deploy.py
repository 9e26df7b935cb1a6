"""Deploy timings on the lab fleet (3 app hosts + 1 ops host, over SSH), each beside
what the same work takes by hand, measured in the same run:

- a fresh converge of one host into the running fleet (its container made again, then
  site.yml --limit: what replacing a host costs before add_host.yml copies the data in),
  against the same install by hand on another new container: the very files that
  converge wrote, the user, the release's venv and offline pip install, the CA trusted,
  the services started, health awaited, in one SSH session (then a converge checks it
  left nothing undone); and beside it the app alone by hand (wheelhouse install, restart,
  health) on a converged host;
- what Ansible spends on a task that does no work (a module run, a skipped task), the
  bookkeeping a converge of so many tasks cannot go below;
- a no-op rerun of site.yml on the whole lab (goal <= 20 s per host, changed=0);
- a rolling deploy of the three hosts to a new release under load through HAProxy,
  against the sum of per-host restart + health-wait times, and against the same steps
  per host (drain, backup, restart, health, enable) typed by hand over SSH, with the
  request success rate seen by the client; then the deploy back with a wider batch (the
  canary, then the other two hosts at once) against the same sum;
- where a fresh converge spends its time (profile_tasks: the slowest tasks);
- the same no-op rerun, rolling deploy and fresh converge with Mitogen for Ansible's
  mitogen_linear strategy (a persistent interpreter on each host instead of a module
  payload per task), when the mitogen package is installed.

Brings the lab down and up again first (fresh containers), and leaves it up.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shlex
import ssl
import subprocess
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

from common import BIN, TOP, save

INVENTORY = TOP / "inventories/lab"
SECRETS = INVENTORY / ".secrets"
APPS = ["cg-lab-app1", "cg-lab-app2", "cg-lab-app3"]
ADDRESS = {
    "cg-lab-app1": "10.89.10.11",
    "cg-lab-app2": "10.89.10.12",
    "cg-lab-app3": "10.89.10.13",
    "cg-lab-ops": "10.89.10.10",
}
ENV = {
    **os.environ,
    # the venv's ansible-playbook, also when run as .venv/bin/python without activating it
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
    "ANSIBLE_NOCOLOR": "1",
    # the plain runs use Ansible's own strategy, whatever `make` exported (MITOGEN=1)
    "ANSIBLE_STRATEGY": "linear",
}
MITOGEN = importlib.util.find_spec("ansible_mitogen")
MITOGEN_ENV = (
    {
        # the strategy make lab and make test use (the Makefile's MITOGEN=1)
        "ANSIBLE_STRATEGY_PLUGINS": str(TOP / "scripts/mitogen"),
        "ANSIBLE_STRATEGY": "mitogen_linear",
    }
    if MITOGEN
    else {}
)
SSH = [
    "ssh",
    "-i",
    str(SECRETS / "ssh/id_ed25519"),
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
]


# The rollout's own time: without the canary analysis' windows, which wait by design
# (codegraph_canary_window per batch) and would swamp what is measured here.
WITHOUT_CANARY = ("-e", "codegraph_canary_analysis=false")


def playbook(
    name: str, *args: str, timed_tasks: bool = False, mitogen: bool = False
) -> tuple[float, str]:
    if name == "deploy.yml":
        args = (*args, *WITHOUT_CANARY)
    env = {**ENV, **(MITOGEN_ENV if mitogen else {})}
    if timed_tasks:  # every task in the recap, not only the 20 slowest
        env |= {
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
        }
    started = time.perf_counter()
    result = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(TOP / "playbooks" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        failed = result.stdout.split("PLAY RECAP")[0]  # the failed task, not profile_tasks' recap
        raise RuntimeError(f"{name} failed:\n{failed[-4000:]}\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def write_nodes(host: str, count: int = 20) -> None:
    """Nodes written through `host`'s API: a fleet's stream holds entries before one of its
    hosts is replaced (a replica that joins a stream that never had one stays "not current"
    on Debian's nats-server 2.9.10; docs/benchmarks.md)."""
    nodes = [{"id": f"bench:{i}", "kind": "function", "name": f"f{i}"} for i in range(count)]
    ssh(
        host,
        f"{AUTH_HEADER} | curl -sf -X POST -H @- "
        "-H 'Content-Type: application/json' https://localhost:8080/nodes "
        f"-d {shlex.quote(json.dumps({'nodes': nodes}))} >/dev/null",
    )


def new_container(host: str) -> None:
    """`host` replaced by a new, empty container (what a new machine is in the lab)."""
    subprocess.run(["podman", "rm", "--force", host], check=True, capture_output=True)
    playbook("lab.yml")


def replace_host(host: str, mitogen: bool = False) -> tuple[float, str]:
    """A new container in place of `host`, converged into the running fleet (timed, with
    every task's time). Marked first, so converged_files finds what the converge wrote."""
    new_container(host)
    ssh(host, f"touch {CONVERGE_MARK}")
    return playbook("site.yml", "--limit", host, timed_tasks=True, mitogen=mitogen)


def bootstrap(host: str) -> None:
    """The fleet's data onto a replaced host, as add_host.yml does after its converge."""
    playbook("add_host.yml", "-e", f"add_host={host}", "-e", "add_host_converge=false")


def task_costs(host: str, mitogen: bool = False, count: int = 40) -> dict[str, float]:
    """Seconds Ansible spends per task that does no work on `host`: a module run
    (`command: true`) and a skipped task, each from a play of `count` such tasks less
    a play of none (the run's own start and end)."""
    plays = {
        "none": [],
        "module": [{"ansible.builtin.command": "true", "changed_when": False}] * count,
        "skipped": [{"ansible.builtin.command": "true", "when": False}] * count,
    }
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind, tasks in plays.items():
            path = Path(folder) / f"{kind}.yml"
            path.write_text(json.dumps([{"hosts": host, "gather_facts": False, "tasks": tasks}]))
            seconds[kind] = playbook(str(path), mitogen=mitogen)[0]
    return {
        kind: round((seconds[kind] - seconds["none"]) / count, 3) for kind in ("module", "skipped")
    }


def recap_counts(output: str) -> dict[str, int]:
    """ok, changed, skipped... of a run's recap, summed over its hosts."""
    counts: dict[str, int] = {}
    for key, value in re.findall(r"(\w+)=(\d+)", output.split("PLAY RECAP")[-1]):
        counts[key] = counts.get(key, 0) + int(value)
    return counts


def changed_total(output: str) -> int:
    return recap_counts(output).get("changed", 0)


def ssh(host: str, script: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        # ssh joins its arguments into one remote command line: quote the script
        [*SSH, f"root@{ADDRESS[host]}", "bash", "-euxo", "pipefail", "-c", shlex.quote(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"on {host}: {script}\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return time.perf_counter() - started


WAIT_HEALTHY = "until curl -sf https://localhost:8080/health >/dev/null; do sleep 0.2; done"
# the host's own command (the codegraph role's), which reads the API key from the keys file
AUTH_HEADER = "/opt/codegraph/bin/codegraph-auth-header"


# where the installs by hand copy the release artifact and unpack it, on the host
UPLOADS = "/tmp"  # noqa: S108 (on the host)
UNPACKED = f"{UPLOADS}/floor"


def offline_install(artifact: Path, venv: str) -> str:
    """Shell: unpack the release `artifact` (copied to UPLOADS) into UNPACKED, make `venv`,
    install the service into it from the release's wheelhouse, offline."""
    return (
        f"rm -rf {UNPACKED} && mkdir {UNPACKED} && "
        f"tar -xzf {UPLOADS}/{artifact.name} -C {UNPACKED} && "
        f"python3 -m venv {venv} && {venv}/bin/pip install --quiet --no-index "
        f"--find-links {UNPACKED}/codegraph-*/wheelhouse codegraph"
    )


def physical_floor(host: str, artifact: Path) -> float:
    """What any installer must do: copy, unpack, venv, offline pip install, restart, health."""
    started = time.perf_counter()
    subprocess.run(
        ["scp", *SSH[1:], str(artifact), f"root@{ADDRESS[host]}:{UPLOADS}/"],
        check=True,
        capture_output=True,
    )
    ssh(
        host,
        f"{offline_install(artifact, f'{UNPACKED}/venv')} && systemctl restart codegraph && "
        f"{WAIT_HEALTHY} && rm -rf {UNPACKED} {UPLOADS}/{artifact.name}",
    )
    return time.perf_counter() - started


# What a converge writes on an app host: everything changed after a mark made just before
# it (the inode's change time: Mitogen's copy keeps the controller file's modification
# time), but not what the services write as they run (data, logs, the NATS store), the
# release's virtualenv (built by hand too), the users (made by hand), the trust store's
# hash links and the units' enable links (their commands make them), the lab's SSH key.
CONVERGE_MARK = "/root/.cg-bench-converge-mark"
_NOT_COPIED = [
    *("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log"),  # noqa: S108 (on the host)
    "/var/cache",
    *("/var/lib/apt", "/var/lib/dpkg", "/var/lib/systemd", "/root", "/etc/ssl/certs"),
    *("/etc/passwd*", "/etc/group*", "/etc/shadow*", "/etc/gshadow*", "/etc/.pwd.lock"),
    "/etc/systemd/system/*.wants",
    *(f"/opt/codegraph/{part}/*" for part in ("data", "logs", "backups", "jetstream")),
    "/opt/codegraph/releases/*/venv",
]
CONVERGED_FILES = (
    "find / -xdev \\( "
    + " -o ".join(f"-path '{path}'" for path in _NOT_COPIED)
    + f" \\) -prune -o -cnewer {CONVERGE_MARK} \\( -type f -o -type l -o -type d \\) -print0"
    " | tar --null --no-recursion -czf - -T - 2>/dev/null"
)


def converged_files(host: str) -> bytes:
    """The files a converge of `host` (made fresh, marked before) wrote, as a tar.gz."""
    return subprocess.run(
        [*SSH, f"root@{ADDRESS[host]}", CONVERGED_FILES], capture_output=True, check=True
    ).stdout


def same_install_by_hand(host: str, files: Path, artifact: Path) -> float:
    """On a new container: the install a converge makes, done by hand with every file
    ready (the converge's own, from converged_files): copy the files and the release,
    make the user, unpack, venv, offline pip install, trust the CA, start the services
    (NATS joins the cluster) and wait healthy. One SSH session, nothing checked twice."""
    started = time.perf_counter()
    subprocess.run(
        ["scp", *SSH[1:], str(files), str(artifact), f"root@{ADDRESS[host]}:{UPLOADS}/"],
        check=True,
        capture_output=True,
    )
    release = "/opt/codegraph/releases/1.1.0"
    services = "nats-server prometheus-node-exporter codegraph"
    ssh(
        host,
        "useradd --system --user-group --home-dir /opt/codegraph --no-create-home "
        f"--shell /usr/sbin/nologin codegraph && tar -xzpf {UPLOADS}/{files.name} -C / && "
        f"{offline_install(artifact, f'{release}/venv')} && update-ca-certificates && "
        f"systemctl daemon-reload && systemctl enable {services} && "
        f"systemctl restart {services} && {WAIT_HEALTHY} && "
        f"rm -rf {UNPACKED} {UPLOADS}/{files.name} {UPLOADS}/{artifact.name}",
    )
    return time.perf_counter() - started


HAPROXY = "socat stdio unix-connect:/run/haproxy/admin.sock"


def by_hand_rollout_step(host: str) -> float:
    """The same steps as one batch of deploy.yml, typed by hand over SSH: drain in
    HAProxy (DRAIN, checks left running) and wait for requests in flight, an API
    backup, restart and wait healthy, put back once HAProxy sees it up. Polling every
    0.1 s, nothing else."""
    stat = f"echo 'show stat' | {HAPROXY} | awk -F, '$1 == \"codegraph\" && $2 == \"{host}\"'"
    drain = (
        f"echo 'set server codegraph/{host} state drain' | {HAPROXY} && "
        f"until {stat} | awk -F, '$5 == 0 {{ ok = 1 }} END {{ exit !ok }}'; do sleep 0.1; done"
    )
    enable = (
        f"echo 'set server codegraph/{host} state ready' | {HAPROXY} && "
        f"until {stat} | awk -F, '$18 ~ /^UP/ {{ ok = 1 }} END {{ exit !ok }}'; do sleep 0.1; done"
    )
    backup = f"{AUTH_HEADER} | curl -sf -X POST -H @- https://localhost:8080/backup >/dev/null"
    return (
        ssh("cg-lab-ops", drain)
        + ssh(host, f"{backup} && systemctl restart codegraph && {WAIT_HEALTHY}")
        + ssh("cg-lab-ops", enable)
    )


class Load:
    """Requests through HAProxy from the controller, counting every outcome."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.key = (SECRETS / "api_key").read_text().strip()
        self.context = ssl.create_default_context(cafile=str(SECRETS / "tls/ca.crt"))
        self.context.check_hostname = False  # by address; the chain is still verified
        self.threads = [threading.Thread(target=self.run) for _ in range(3)]

    def run(self) -> None:
        connection = None
        while not self.stop.is_set():
            try:
                if connection is None:
                    connection = http.client.HTTPSConnection(
                        ADDRESS["cg-lab-ops"], 8443, context=self.context, timeout=30
                    )
                connection.request("GET", "/stats", headers={"Authorization": f"Bearer {self.key}"})
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except Exception as error:  # every failure counts
                outcome = type(error).__name__
                connection = None
            with self.lock:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def rollout_seconds(output: str) -> float:
    """Time from the first rolling batch to the last one's end (before the old releases
    are removed, in parallel), from profile_tasks' running totals."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("PLAY [Roll out"))
    end = next(
        (i for i, line in enumerate(lines) if line.startswith("PLAY [Remove old releases")),
        len(lines),
    )
    totals = [_elapsed(line) for line in lines[start:end] if _elapsed(line) is not None]
    before = [_elapsed(line) for line in lines[:start] if _elapsed(line) is not None]
    if end < len(lines):  # the running total printed as the pruning play's first task starts
        totals.append(next(t for t in map(_elapsed, lines[end:]) if t is not None))
    return totals[-1] - before[-1]


def slowest_tasks(output: str, count: int = 12) -> list[tuple[str, float]]:
    """profile_tasks' recap (slowest first): 'role : Task name ---- 12.34s' lines."""
    recap = output.split("TASKS RECAP")[-1]
    found = re.findall(r"^(\S.*?) -{2,}\s+(\d+\.\d+)s\s*$", recap, re.MULTILINE)
    return [(name, float(seconds)) for name, seconds in found[:count]]


def _elapsed(line: str) -> float | None:
    match = re.search(r"\s(\d+):(\d\d):(\d\d\.\d+)[\s*]*$", line)  # "... 0:01:45.174 **** "
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def main() -> None:
    subprocess.run(["make", "-C", str(TOP), "release"], check=True, capture_output=True)
    playbook("lab.yml", "-e", "lab_state=absent")
    playbook("lab.yml")
    playbook("site.yml")
    write_nodes("cg-lab-app2")
    artifact = TOP / "artifacts/codegraph-1.1.0.tar.gz"
    costs = task_costs("cg-lab-app2")
    fresh_one, fresh_output = replace_host("cg-lab-app1")
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder) / "converged.tar.gz"
        files.write_bytes(converged_files("cg-lab-app1"))
        new_container("cg-lab-app1")
        same_by_hand = same_install_by_hand("cg-lab-app1", files, artifact)
    # what the converge still finds to do after the install by hand: 0 if it was the same
    _, after_by_hand = playbook("site.yml", "--limit", "cg-lab-app1")
    bootstrap("cg-lab-app1")
    playbook("site.yml")  # facts of every host again (lab.yml forgets them)
    noop, noop_output = playbook("site.yml")
    floor = physical_floor("cg-lab-app2", artifact)

    per_host = [ssh(host, f"systemctl restart codegraph && {WAIT_HEALTHY}") for host in APPS]
    with Load():
        by_hand = [by_hand_rollout_step(host) for host in APPS]
    subprocess.run(
        [str(TOP / "scripts/build-release.sh"), "1.1.1"], check=True, capture_output=True
    )
    with Load() as load:
        deploy, deploy_output = playbook(
            "deploy.yml", "-e", "codegraph_version=1.1.1", timed_tasks=True
        )
    rollout = rollout_seconds(deploy_output)
    total = sum(load.outcomes.values())
    ok = load.outcomes.get("200", 0)
    # Back to 1.1.0 (the lab as make lab makes it), the canary first, then the other
    # two hosts in one batch: what a wider batch buys against the one-at-a-time default.
    with Load() as wide_load:
        _, wide_output = playbook(
            "deploy.yml",
            "-e",
            "codegraph_version=1.1.0",
            "-e",
            '{"codegraph_deploy_serial": ["1", "2"]}',
            timed_tasks=True,
        )
    wide = rollout_seconds(wide_output)
    results = (
        {} if not MITOGEN else mitogen_runs(sum(per_host), sum(by_hand), fresh_one, same_by_hand)
    )
    save(
        "deploy",
        {
            "fresh_converge_one_host_seconds": round(fresh_one, 1),
            "fresh_converge_tasks": recap_counts(fresh_output),
            "same_install_by_hand_seconds": round(same_by_hand, 1),
            "fresh_over_by_hand": round(fresh_one / same_by_hand, 2),
            "converge_after_by_hand_changed": changed_total(after_by_hand),
            "task_costs_seconds": costs,
            "physical_floor_one_host_seconds": round(floor, 1),
            "fresh_over_floor": round(fresh_one / floor, 2),
            "noop_site_seconds": round(noop, 1),
            "noop_hosts": 4,
            "noop_seconds_per_host_wall": round(noop / 4, 1),
            "noop_changed": changed_total(noop_output),
            "per_host_restart_health_seconds": [round(s, 2) for s in per_host],
            "deploy_seconds_total": round(deploy, 1),
            "deploy_rollout_seconds": round(rollout, 1),
            "rollout_over_restarts": round(rollout / sum(per_host), 2),
            "by_hand_rollout_seconds": [round(s, 2) for s in by_hand],
            "rollout_over_by_hand": round(rollout / sum(by_hand), 2),
            "requests": total,
            "requests_ok": ok,
            "success_rate": round(ok / total, 5) if total else None,
            "outcomes": load.outcomes,
            "wide_batches": ["1", "2"],
            "wide_rollout_seconds": round(wide, 1),
            "wide_rollout_over_restarts": round(wide / sum(per_host), 2),
            "wide_outcomes": wide_load.outcomes,
            "fresh_converge_slowest_tasks": slowest_tasks(fresh_output),
            **results,
        },
    )


def mitogen_runs(
    restarts: float, by_hand: float, fresh_plain: float, install_by_hand: float
) -> dict:
    """The no-op rerun, a rolling deploy (to 1.1.1, under load) and a fresh converge of
    one host (its container made again) with the mitogen_linear strategy."""
    noop, noop_output = playbook("site.yml", mitogen=True)
    with Load() as load:
        _, deploy_output = playbook(
            "deploy.yml", "-e", "codegraph_version=1.1.1", timed_tasks=True, mitogen=True
        )
    rollout = rollout_seconds(deploy_output)
    costs = task_costs("cg-lab-app2", mitogen=True)
    fresh, fresh_output = replace_host("cg-lab-app1", mitogen=True)
    bootstrap("cg-lab-app1")
    playbook("site.yml", mitogen=True)  # the lab as make lab leaves it
    _, again_output = playbook("site.yml", mitogen=True)  # idempotent under Mitogen too
    return {
        "mitogen_version": version("mitogen"),
        "mitogen_noop_site_seconds": round(noop, 1),
        "mitogen_noop_changed": changed_total(noop_output),
        "mitogen_rollout_seconds": round(rollout, 1),
        "mitogen_rollout_over_restarts": round(rollout / restarts, 2),
        "mitogen_rollout_over_by_hand": round(rollout / by_hand, 2),
        "mitogen_outcomes": load.outcomes,
        "mitogen_fresh_converge_one_host_seconds": round(fresh, 1),
        "mitogen_fresh_over_plain": round(fresh / fresh_plain, 2),
        "mitogen_fresh_over_by_hand": round(fresh / install_by_hand, 2),
        "mitogen_fresh_converge_tasks": recap_counts(fresh_output),
        "mitogen_task_costs_seconds": costs,
        "mitogen_fresh_converge_slowest_tasks": slowest_tasks(fresh_output),
        "mitogen_second_noop_changed": changed_total(again_output),
    }


if __name__ == "__main__":
    main()
