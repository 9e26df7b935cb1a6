"""Write docs/benchmarks.md from bench/results/*.json (run after the benchmarks)."""

from __future__ import annotations

import json

from common import RESULTS, TOP


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def api_get(r: dict) -> list[str]:
    return [
        "## Reads: `GET /nodes/{id}` against a bare FastAPI endpoint",
        "",
        "| Server | req/s |",
        "|---|---|",
        f"| bare FastAPI `/health` (baseline) | {r['bare_fastapi_health_rps']:,.0f} |",
        f"| CodeGraph `GET /nodes/{{id}}` (auth, metrics, RocksDB read of 1 of {r['nodes']:,}) "
        f"| {r['get_node_rps']:,.0f} |",
        "",
        f"Ratio **{r['ratio']}** (goal {r['goal']}: {_met(r['ratio'] >= 0.7)}). Best of three "
        "interleaved 10 s wrk runs each (1 thread, 32 connections, plain HTTP on loopback, one "
        "uvicorn process with uvloop + httptools for both).",
    ]


def ingest(r: dict) -> list[str]:
    return [
        "## Ingest through the API, batches of 1,000, durable",
        "",
        "| Path | nodes/s |",
        "|---|---|",
        "| raw rocksdict WriteBatch, fsync per batch (baseline) "
        f"| {r['raw_writebatch_nodes_per_second']:,} |",
        f"| `POST /nodes` (HTTP, validation, operation log fsync, RocksDB fsync, indexes) "
        f"| {r['api_nodes_per_second']:,} |",
        "",
        f"API / raw = **{r['api_over_raw']}**; goal >= 50,000 nodes/s: "
        f"{_met(r['api_nodes_per_second'] >= 50_000)}. {r['nodes']:,} nodes, two client threads. "
        f"Vector-index backlog when the last batch was acknowledged: "
        f"{r['vector_index_lag_at_end']['operations']:,} operations (the index catches up in the "
        "background; writes never wait for it).",
        *(
            []
            if r["api_nodes_per_second"] >= 50_000
            else [
                "",
                "The CPU it takes: the server used "
                f"{r['server_cpu_ms_per_1000_nodes']} ms of CPU per 1,000 nodes "
                f"({r['server_cores_busy']} cores busy on average), of which the vector "
                f"indexer {r['indexer_cpu_ms_per_1000_nodes']} ms (it works one part in "
                "five while writes stream in; the backlog above is the rest of its work); "
                f"the load generator {r['client_cpu_ms_per_1000_nodes']} ms. Put the "
                f"indexing off entirely and spread the rest perfectly over all {r['cores']} "
                "cores of this machine, and the ceiling would be "
                f"**{r['all_cores_ceiling_nodes_per_second']:,} nodes/s**. "
                + (
                    "So no arrangement of this server's work reaches the goal on this "
                    "machine; only less work per node would."
                    if r["all_cores_ceiling_nodes_per_second"] < 50_000
                    else "So the goal is out of reach with one core's worth of Python; it "
                    "would take the write path spread over every core, which one RocksDB "
                    "writer and a binding that holds the GIL do not allow (below)."
                ),
                "",
                "Why it misses 50,000/s: one process owns the database (RocksDB allows one "
                "writer), and rocksdict holds Python's GIL for the whole RocksDB write, "
                "fsync included (measured: a pure-Python loop runs at about half speed "
                "beside a thread that only calls `db.write`, and at full speed beside "
                "hashlib, which releases the GIL). So HTTP, parsing, validation, building "
                "records and keys, and the write take turns on one core. Profiled with "
                "py-spy under this load, the GIL is held about 90% of the time: the RocksDB "
                "write about 40% (about six memtable inserts per node, for the record and "
                "its kind and name index entries, against the baseline's one), building "
                "records and index keys 20%, JSON parsing and validation 16%, the HTTP "
                "server 16%. Done: a batch goes into RocksDB sorted by key per column "
                "family (sorted memtable inserts stay in cache) and bodies are parsed by "
                "orjson, about 11% less time for building and writing a batch measured "
                "alone, within the noise of this benchmark end to end. Not done: a RocksDB "
                "binding that releases the GIL while it writes, or the storage work in a "
                "process of its own.",
            ]
        ),
    ]


def vector(r: dict) -> list[str]:
    ours, flat, other = r["codegraph_hnsw"], r["exact_flat"], r["hnswlib"]
    tuned, other_tuned = r["codegraph_hnsw_tuned"], r["hnswlib_tuned"]
    tuned_ok = tuned["qps_over_flat"] >= 50 and tuned["recall_at_10"] >= 0.98
    return [
        f"## Vector search: {r['nodes']:,} nodes, {r['dimension']} dimensions, clustered",
        "",
        "| Index | recall@10 | single-query QPS | build |",
        "|---|---|---|---|",
        f"| exact flat search (baseline) | {flat['recall_at_10']} | {flat['qps']:,} | - |",
        f"| CodeGraph (FAISS HNSW + live-label filter) | {ours['recall_at_10']} | {ours['qps']:,} "
        f"| {ours['build_seconds']} s |",
        f"| hnswlib, same parameters | {other['recall_at_10']} | {other['qps']:,} "
        f"| {other['build_seconds']} s |",
        f"| CodeGraph, efSearch={tuned['efSearch']} (auto-tuned for recall 0.99 on held-out "
        f"queries) | {tuned['recall_at_10']} | {tuned['qps']:,} | - |",
        f"| hnswlib, efSearch={other_tuned['efSearch']} | {other_tuned['recall_at_10']} "
        f"| {other_tuned['qps']:,} | - |",
        "",
        f"M={r['parameters']['M']}, efConstruction={r['parameters']['efConstruction']}, "
        f"efSearch={r['parameters']['efSearch']}, one thread. QPS over flat: "
        f"**{r['qps_over_flat']}x** (goal 50x: {_met(r['qps_over_flat'] >= 50)}; hnswlib with "
        f"the same parameters reaches {round(other['qps'] / flat['qps'], 1)}x); recall goal "
        f"0.98: {_met(ours['recall_at_10'] >= 0.98)}. With efSearch auto-tuned "
        f"(`POST /optimization/auto-tune`): **{tuned['qps_over_flat']}x** at recall "
        f"{tuned['recall_at_10']} ({_met(tuned_ok)}).",
    ]


def profiles(r: dict) -> list[str]:
    w, rd = r["write_heavy"], r["read_heavy"]
    return [
        "## RocksDB profiles: write_heavy against read_heavy",
        "",
        "| Profile | bulk ingest, nodes/s | random point reads/s |",
        "|---|---|---|",
        f"| write_heavy | {w['ingest_nodes_per_second']:,} | {w['point_reads_per_second']:,} |",
        f"| read_heavy | {rd['ingest_nodes_per_second']:,} | {rd['point_reads_per_second']:,} |",
        "",
        f"write_heavy / read_heavy on ingest: **{r['ingest_write_over_read']}**; read_heavy / "
        f"write_heavy on reads: **{r['reads_read_over_write']}** ({r['nodes']:,} nodes, "
        f"{r['reads']:,} reads, engine level).",
        *(
            []
            if r["ingest_write_over_read"] > 1
            else [
                "",
                "write_heavy does not win ingest here, and the reason is the scale: this ingest "
                "is CPU-bound in Python (validation, records, index keys) and writes well under "
                "a gigabyte, so RocksDB never stalls on compaction, which is what write_heavy's "
                "settings prevent (more and larger memtables, a later L0 trigger, no "
                "compression on L0-L1). Its 256 MiB memtables only make each insert walk a "
                "bigger skiplist, and 8 background jobs cannot run in parallel on 2 cores. "
                "Choose it for sustained loads that outrun compaction, not for this one.",
            ]
        ),
    ]


def backup(r: dict) -> list[str]:
    t, rt = r["backup_timings"], r["restore_timings"]
    return [
        f"## Backup and restore of {r['nodes']:,} nodes",
        "",
        "| Step | seconds |",
        "|---|---|",
        f"| `cp -a` of the data directory, {_mib(r['data_bytes'])} (baseline) "
        f"| {r['cp_a_data_seconds']} |",
        f"| waiting for the vector indexer | {t['waited_for_indexer_seconds']} |",
        f"| vector index as last saved (a hard link) | {t['vector_index_seconds']} |",
        f"| RocksDB checkpoint | {t['checkpoint_seconds']} |",
        f"| sha256 of every file ({r['backup_files']}) | {t['checksums_seconds']} |",
        f"| whole `POST /backup` | {r['backup_seconds']} |",
        f"| the next `POST /backup`, one write later: its sha256s "
        f"| {r['next_backup_timings']['checksums_seconds']} |",
        f"| the next `POST /backup`, whole | {r['next_backup_seconds']} |",
        f"| `POST /backup/restore`: verify every sha256 | {rt['verify_seconds']} |",
        f"| `POST /backup/restore`: stage (hard links) | {rt['stage_and_replay_seconds']} |",
        "| `POST /backup/restore`: swap, reopen RocksDB, load the vector index "
        f"| {rt['swap_and_reopen_seconds']} |",
        f"| whole `POST /backup/restore` | {r['restore_seconds']} |",
        "",
        f"Checkpoint goal <= 2 s: {_met(t['checkpoint_seconds'] <= 2)}; restore goal <= 10 s: "
        f"{_met(r['restore_seconds'] <= 10)}. RSS of the service at {r['nodes']:,} nodes, index "
        f"built: **{_mib(r['rss_bytes_at_1m_nodes'])}**. Ingest took {r['ingest_seconds']} s; the "
        f"index had caught up after {r['index_built_after_seconds']} s. Right after the "
        "restore, the restored index had "
        f"{r['vector_index_lag_after_restore']['operations']:,} queued writes to catch up "
        "on (the writes after its last save).",
        "",
        "The swap-and-reopen step is mostly loading the vector index. FAISS now reads its "
        "part of `index.bin` straight from the file, not from an in-memory copy of it "
        "(`faiss.deserialize_index`). The backup links the "
        "vector index as the indexer last saved it (the changes after that save are in "
        "the checkpoint's queue, and a restored index catches up from them), so it "
        "neither writes the index nor waits for a save that is writing it. The price: a "
        "restored index starts behind "
        "by the writes after its last save (the backlog above; here the backup came "
        "right after a bulk load, the worst case) and catches up in the background. "
        "The first backup reads every byte to hash it; a later one takes the hash of "
        "each SST file and of the index from the backup before it when its file is the "
        "very same inode (hard links of files never changed in place), so it reads "
        "only what changed since.",
    ]


def deploy(r: dict) -> list[str]:
    per_host = r["per_host_restart_health_seconds"]
    by_hand = r["by_hand_rollout_seconds"]
    failed = r["requests"] - r["requests_ok"]
    return [
        "## Deploys on the lab fleet (3 app hosts + 1 ops host, over SSH)",
        "",
        "| Measure | seconds | baseline in the same run | ratio | goal |",
        "|---|---|---|---|---|",
        "| fresh converge of one host into the running fleet (`site.yml --limit`, new container) "
        f"| {r['fresh_converge_one_host_seconds']} "
        "| the same install by hand on a new container (the files that converge wrote, user, "
        "venv, offline pip install, CA trusted, services started, health; a converge after it "
        f"changed {r['converge_after_by_hand_changed']}): {r['same_install_by_hand_seconds']} "
        f"| {r['fresh_over_by_hand']} | <= 2.0x: {_met(r['fresh_over_by_hand'] <= 2.0)} |",
        "| the same fresh converge "
        f"| {r['fresh_converge_one_host_seconds']} "
        "| the app alone by hand on a converged host: copy, unpack, venv, offline pip install, "
        f"restart, health: {r['physical_floor_one_host_seconds']} | {r['fresh_over_floor']} "
        "| (reported beside) |",
        f"| no-op rerun of `site.yml` ({r['noop_hosts']} hosts, changed={r['noop_changed']}) "
        f"| {r['noop_site_seconds']} ({r['noop_seconds_per_host_wall']} per host) | | "
        f"| <= 20 s per host, changed=0: "
        f"{_met(r['noop_seconds_per_host_wall'] <= 20 and r['noop_changed'] == 0)} |",
        "| rolling deploy, serial part (drain, backup, switch, restart, health, enable x3) "
        f"| {r['deploy_rollout_seconds']} | the same steps per host typed by hand over SSH, "
        f"under the same load: {round(sum(by_hand), 2)} ({', '.join(map(str, by_hand))}) "
        f"| {r['rollout_over_by_hand']} | <= 1.15x: {_met(r['rollout_over_by_hand'] <= 1.15)} |",
        "| the same rolling deploy "
        f"| {r['deploy_rollout_seconds']} | sum of per-host restart + health wait: "
        f"{round(sum(per_host), 2)} ({', '.join(map(str, per_host))}) "
        f"| {r['rollout_over_restarts']} | (reported beside) |",
        f"| whole `deploy.yml` (artifact check, staging on all hosts in parallel, rollout) "
        f"| {r['deploy_seconds_total']} | | | |",
        "",
        "The rollout's own time: the canary analysis' windows, which wait by design "
        "(`codegraph_canary_window` per batch), are left out "
        "(`-e codegraph_canary_analysis=false`).",
        "",
        f"Requests through HAProxy during the deploy: {r['requests']:,}, of which "
        f"{r['requests_ok']:,} answered 200 (outcomes {r['outcomes']}): "
        f"{'no failed request' if not failed else f'**{failed} failed**'}.",
        *_wide_batches(r),
        *(
            []
            if r["rollout_over_by_hand"] <= 1.15
            else [
                "",
                "Why the rollout is over the steps by hand: a batch is three remote steps (the "
                "drain through HAProxy's runtime API, `codegraph-switch` on the host: backup, "
                "switch, restart, health on the new version, then the re-enable), the same "
                "three an operator types. What the playbook adds is Ansible's per-task cost: "
                f"{r['task_costs_seconds']['module']} s for each module run over SSH in this "
                "run (below), most of it the host unpacking and compiling the module's "
                "AnsiballZ payload (170-190 ms for `ping` on a lab host, where a `raw` task "
                "takes 0.06 s), against a restart of about 1.5 s. Mitogen (below) keeps one "
                "interpreter per host and removes most of that payload cost.",
            ]
        ),
        *_slowest_tasks(r),
        *_mitogen(r),
        *_fresh_floor(r),
    ]


def _fresh_floor(r: dict) -> list[str]:
    """What a fresh converge cannot go below: the work by hand plus Ansible's cost for
    each task it runs or skips, at the per-task costs measured in the same run."""
    lines = [
        "",
        "### What a fresh converge cannot go below",
        "",
        "A task that does no work still costs Ansible time (measured here on one lab host: 40 "
        "`command: true` tasks, 40 skipped tasks, less an empty play). A converge of as many "
        "tasks as site.yml runs on an app host cannot take less than the same install by hand "
        "plus that bookkeeping: between every task costing what a skipped one does and every "
        "one costing a module run.",
        "",
        "| Strategy | a module run | a skipped task | tasks run / skipped in the fresh converge "
        "| bookkeeping | + the same install by hand | floor / by hand | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_hand = r["same_install_by_hand_seconds"]
    for name, prefix in (("plain (SSH)", ""), ("Mitogen", "mitogen_")):
        if f"{prefix}task_costs_seconds" not in r:
            continue
        costs, tasks = r[f"{prefix}task_costs_seconds"], r[f"{prefix}fresh_converge_tasks"]
        low, high = _bookkeeping(r, prefix)
        measured = r[f"{prefix}fresh_converge_one_host_seconds"]
        lines.append(
            f"| {name} | {costs['module']} s | {costs['skipped']} s "
            f"| {tasks['ok']} / {tasks['skipped']} | {low:.1f} to {high:.1f} s "
            f"| {by_hand + low:.1f} to {by_hand + high:.1f} s "
            f"| {(by_hand + low) / by_hand:.2f}x to {(by_hand + high) / by_hand:.2f}x "
            f"| {measured} s, {measured / by_hand:.2f}x |"
        )
    if "mitogen_task_costs_seconds" in r:
        lines += ["", _over_the_floor(r)]
    return lines


def _bookkeeping(r: dict, prefix: str) -> tuple[float, float]:
    """Seconds the fresh converge's tasks cost Ansible doing nothing: every task at a
    skipped task's cost, and the tasks run at a module run's."""
    costs, tasks = r[f"{prefix}task_costs_seconds"], r[f"{prefix}fresh_converge_tasks"]
    low = (tasks["ok"] + tasks["skipped"]) * costs["skipped"]
    high = tasks["ok"] * costs["module"] + tasks["skipped"] * costs["skipped"]
    return low, high


def _over_the_floor(r: dict) -> str:
    by_hand = r["same_install_by_hand_seconds"]
    high = by_hand + _bookkeeping(r, "mitogen_")[1]
    measured = r["mitogen_fresh_converge_one_host_seconds"]
    return (
        f"With Mitogen the fresh converge took {measured - high:.1f} s more than that floor's "
        "upper end. That is work the install by hand does not do, because its files were "
        "ready: the host's key, certificate request and signature on the controller; the "
        "check each file goes through before it is written (`bash -n` on eleven runbook "
        "scripts, `nats-server -t`, `codegraph-admin check-config`, `logrotate -d`); the "
        "artifact's sha256 on both ends and the new release's `--version`; the waits for "
        "JetStream's health and the service's; and the 76 MB artifact sent through "
        "Mitogen's file service rather than scp. The 2.0x goal lies inside the floor's own "
        "range (a converge of this many tasks with nothing else to do would already take "
        f"up to {high / by_hand:.2f}x here), so it cannot be met by trimming waste alone; "
        "reaching it "
        "would take fewer tasks (about 0.1 s each under Mitogen) or files prepared ahead "
        "as the by-hand install had them. This stop took out what was waste: each "
        "certificate signed once a run instead of once per role that includes fleet_ca "
        "(three on an app host), the CA trusted once, the installed packages read with "
        "`dpkg-query` (`package_facts` took about 2 s a host)."
    )


def _slowest_tasks(r: dict) -> list[str]:
    tasks = r.get("fresh_converge_slowest_tasks")
    if not tasks:
        return []
    return [
        "",
        "Where the fresh converge of one host spends its time (profile_tasks, slowest first): "
        + "; ".join(f"{name} {seconds} s" for name, seconds in tasks)
        + ".",
    ]


def _mitogen(r: dict) -> list[str]:
    if "mitogen_version" not in r:
        return []
    fresh = r["mitogen_fresh_converge_one_host_seconds"]
    fresh_ratio = r["mitogen_fresh_over_by_hand"]
    noop_per_host = round(r["mitogen_noop_site_seconds"] / r["noop_hosts"], 1)
    noop_ok = noop_per_host <= 20 and r["mitogen_noop_changed"] == 0
    rollout_ratio = r["mitogen_rollout_over_by_hand"]
    return [
        "",
        f"### The same with Mitogen for Ansible {r['mitogen_version']} (`mitogen_linear`, "
        "what `make lab` and `make test` use)",
        "",
        "| Measure | plain (above) | Mitogen | Mitogen / plain | against the baseline above "
        "| goal |",
        "|---|---|---|---|---|---|",
        f"| fresh converge of one host | {r['fresh_converge_one_host_seconds']} | {fresh} "
        f"| {r['mitogen_fresh_over_plain']} | {fresh_ratio}x by hand "
        f"| <= 2.0x: {_met(fresh_ratio <= 2.0)} |",
        f"| no-op rerun of `site.yml` | {r['noop_site_seconds']} "
        f"| {r['mitogen_noop_site_seconds']} ({noop_per_host} per host, "
        f"changed={r['mitogen_noop_changed']}; again after a fresh converge: "
        f"changed={r['mitogen_second_noop_changed']}) "
        f"| {round(r['mitogen_noop_site_seconds'] / r['noop_site_seconds'], 2)} | "
        f"| <= 20 s per host, changed=0: {_met(noop_ok)} |",
        f"| rolling deploy, serial part | {r['deploy_rollout_seconds']} "
        f"| {r['mitogen_rollout_seconds']} (outcomes {r['mitogen_outcomes']}) "
        f"| {round(r['mitogen_rollout_seconds'] / r['deploy_rollout_seconds'], 2)} "
        f"| {rollout_ratio}x by hand, {r['mitogen_rollout_over_restarts']}x the restarts "
        f"| <= 1.15x: {_met(rollout_ratio <= 1.15)} |",
    ]


def _wide_batches(r: dict) -> list[str]:
    if "wide_rollout_seconds" not in r:
        return []
    wide = r["wide_outcomes"]
    return [
        "",
        f"The deploy back to 1.1.0 with batches {r['wide_batches']} (the canary, then the "
        'other two hosts at once, `-e \'{"codegraph_deploy_serial": ["1", "2"]}\'`): '
        f"rollout {r['wide_rollout_seconds']} s, **{r['wide_rollout_over_restarts']}x** the "
        f"same restarts; {wide.get('200', 0):,} of {sum(wide.values()):,} requests answered "
        "200. Two hosts restarting together compete for this machine's two cores (beside "
        "the load and the other containers), so the second batch takes longer than one "
        "host does: the wider batch buys less here than it would on real hosts.",
    ]


def restart(r: dict) -> list[str]:
    return [
        "## Restart with a 1 GB operation-log segment",
        "",
        "| Operation log | seconds to healthy (median) | peak RSS |",
        "|---|---|---|",
        f"| empty (baseline) | {r['empty_log_seconds']} | {_mib(r['peak_rss_empty_log'])} |",
        f"| one segment of {r['segment_bytes'] / 2**30:.2f} GiB ({r['entries']:,} upserts of "
        f"1,000 nodes) | {r['big_log_seconds']} | {_mib(r['peak_rss_big_log'])} |",
        "",
        f"Ratio **{r['ratio']}** (goal {r['goal']}: {_met(r['ratio'] <= 1.2)}). "
        f"{r['restarts_each']} restarts of each, interleaved, on one data directory. The log "
        "opens from the last of its sparse index hints (one per MiB), so a start reads about "
        "a megabyte of it however long the day was, not the newest segment whole. The "
        "service restarted on the big "
        f"log and went on at LSN {r['last_lsn_after_restart']:,}.",
    ]


def replication(r: dict) -> list[str]:
    ingest, lag, catch = r["ingest"], r["lag"], r["catch_up"]
    rows = [
        (
            f"ingest, {ingest['nodes']:,} nodes in batches of 1,000",
            f"sent to all three hosts by hand: {ingest['by_hand_nodes_per_second']:,} nodes/s",
            "through the load balancer, until every host applied: "
            f"{ingest['replicated_nodes_per_second']:,} nodes/s",
            f"**{ingest['ratio']}**",
            f">= 1.0: {_met(ingest['ratio'] >= 1.0)}",
        ),
        (
            f"replication lag at half that rate ({lag['writes']} writes, "
            f"{lag['samples']} host samples)",
            "",
            f"p50 {lag['p50_ms']} ms, p99 **{lag['p99_ms']} ms** (max {lag['max_ms']} ms)",
            "",
            f"p99 <= 250 ms: {_met(lag['p99_ms'] <= 250)}",
        ),
        (
            f"catch-up of a host that missed {catch['nodes']:,} nodes",
            f"ingest while it was away: {catch['ingest_nodes_per_second']:,} nodes/s",
            f"{catch['catch_up_nodes_per_second']:,} nodes/s",
            f"**{catch['ratio']}**",
            f">= 1.0: {_met(catch['ratio'] >= 1.0)}",
        ),
    ]
    notes = [
        "The baseline of the ingest row is a service with `replication = none` started beside "
        "each host's (same host, same release, its own empty data), sent the same batches by "
        "one connection per host, all three at once; the replicated ingest uses three "
        "connections through HAProxy, so both keep three requests in flight. Replicated, a "
        "batch is validated once (on the host that takes it) and applied from the log by "
        "every host without the per-write fsync of the local operation log (the stream holds "
        "it on a quorum; docs/replication.md); by hand every host validates and fsyncs every "
        "batch. The three hosts share this machine's two cores, so work done once instead of "
        "three times shows directly in the ratio.",
        *(
            []
            if ingest["ratio"] >= 1.0
            else [
                "",
                f"The ingest goal is not met ({ingest['ratio']}x). Replicated, each entry also "
                "goes through three nats-server processes (written to each one's file store, "
                "routed between them over TLS), and the service decodes each entry again to "
                "apply it; here those six processes and the three services share two cores, so "
                "the CPU that replication saves (two of three validations and fsyncs) is spent "
                "on the log instead. The benchmark waits for every vector index to be idle "
                "before each phase, so that one phase's background indexing does not slow the "
                "by-hand baseline that runs beside it. "
                "On hosts with cores of their own the replicated rate is bounded by one host's "
                "apply rate (the catch-up row), not by the sum of everyone's work; that is not "
                "measurable on this machine.",
            ]
        ),
        "",
        "Lag is measured from the moment a write is answered to the moment each host reports "
        "the entry applied (`GET /replication` polled every 10 ms), for every write and every "
        "host; the answering host has applied it before it answers. Catch-up is timed from "
        "`systemctl start` of a host whose service was stopped while the nodes were written.",
    ]
    if "add_host" in r:
        add = r["add_host"]
        met = add["bootstrap_seconds"] <= add["goal_seconds"]
        rows.append(
            (
                f"adding a host to a fleet of {add['nodes']:,} nodes (the bootstrap play)",
                f"restore {add['restore_seconds']} s + catch-up {add['catch_up_seconds']} s "
                f"+ 10 s = {add['goal_seconds']} s",
                f"{add['bootstrap_seconds']} s (add_host.yml in all, converge included: "
                f"{add['add_host_seconds_total']} s)",
                "",
                f"<= {add['goal_seconds']} s: {_met(met)}",
            )
        )
        notes += ["", _add_host_analysis(add, met)]
    return [
        "## Replication on the lab fleet (3 app hosts, NATS JetStream R3, HAProxy)",
        "",
        "| Measure | Baseline | Replicated | Ratio | Goal |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *notes,
    ]


# The bootstrap's steps that move the backup from the peer to the new host.
_TRANSFER = ("Pack the backup", "Fetch it to the controller", "Send it to", "Unpack it there")


def _add_host_analysis(add: dict, met: bool) -> str:
    tasks = add["tasks"]
    transfer = sum(s for name, s in tasks.items() if name.startswith(_TRANSFER))
    steps = ", ".join(f"{name} {seconds} s" for name, seconds in tasks.items())
    text = f"Where the bootstrap's {add['bootstrap_seconds']} s go: {steps}. "
    if met:
        return text
    return text + (
        f"Moving the backup from the peer to the new host takes {transfer:.1f} s of it, which "
        "the goal's sum (restore + catch-up + 10 s) does not count: the play copies it through "
        "the controller (packed with gzip -1, fetched without become, sent, unpacked), so that "
        "it works with any connection plugin and the hosts need no access to each other. A "
        "direct copy from the peer (the new host pulling the backup over the fleet's TLS) "
        "would remove one hop and the controller's disk from the path; it is left for later. "
        "A first version fetched with become, which makes ansible.builtin.fetch read the file "
        "into memory as base64: minutes and gigabytes for a backup of a million nodes."
    )


def sync(r: dict) -> list[str]:
    first, again = r["always"]
    unsynced, synced = r["unsynced"], r["synced_mean"]

    def shown(phase: dict) -> str:
        proof = phase["proof"]
        files = proof["writes_with_an_fsync_of"]
        return (
            f"{proof['acknowledged_after_a_quorum_fsynced']} of {proof['writes']} "
            f"(an fsync of the stream's blocks in {files['stream blocks']}, of its Raft "
            f"log in {files['raft log']})"
        )

    return [
        "## fsync before acknowledging: `sync_interval: always` on the lab fleet "
        "(Debian 13, nats-server 2.10, R3)",
        "",
        "| Measure | Without (nats-server's default) | `sync_interval: always` | Ratio |",
        "|---|---|---|---|",
        "| writes answered 200 after a quorum (2 of 3 servers) finished an fsync of the "
        f"stream's files in between (strace) | {shown(unsynced)} | {shown(first)}; again: "
        f"{shown(again)} |  |",
        f"| ingest, {INGEST_NODES:,} nodes in batches of 1,000, through the load balancer "
        f"| {unsynced['ingest_nodes_per_second']:,} nodes/s "
        f"| {synced['ingest_nodes_per_second']:,} nodes/s | **{r['ingest_ratio']}** |",
        "| single-node writes, three clients, through the load balancer "
        f"| {unsynced['single_writes_per_second']} writes/s "
        f"| {synced['single_writes_per_second']} writes/s | **{r['single_write_ratio']}** |",
        "",
        "strace (`-f -ttt -T -y -e trace=fsync,fdatasync`) follows the three nats-servers "
        "while 40 single-node writes go through HAProxy one at a time, 0.1 s apart; a write "
        "counts when at least two servers finished an fsync of a file of the stream (its "
        "message blocks, or its Raft group's log) after the write was sent and before its "
        "answer came. The synced figures are the mean of two phases, before and after the "
        "unsynced one (each switch: the converge, then `nats_rolling_restart.yml`). Files "
        f"fsynced: {', '.join(f'`{name}`' for name in first['proof']['files'])}. "
        f"The two synced phases ingested {first['ingest_nodes_per_second']:,} and "
        f"{again['ingest_nodes_per_second']:,} nodes/s ({first['single_writes_per_second']} "
        f"and {again['single_writes_per_second']} single writes/s): the machine's noise is "
        "of the order of the cost itself. The lab's servers share this machine's one disk "
        "(podman's overlay storage); an fsync's cost is the disk's, so measure it on yours.",
    ]


INGEST_NODES = 45_000


SECTIONS = {
    "api_get": api_get,
    "ingest": ingest,
    "vector": vector,
    "profiles": profiles,
    "backup": backup,
    "deploy": deploy,
    "restart": restart,
    "replication": replication,
    "sync": sync,
}


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (scripts in `bench/`, raw results in `bench/results/`). "
        "Each goal is a ratio against a baseline measured in the same run on the same "
        "machine: 2 cores, 24 GiB; a noisy shared machine, so read ratios, not absolutes.",
        "",
    ]
    for name, render in SECTIONS.items():
        result = _load(name)
        if result is None:
            lines += [f"## {name}", "", "Not run yet.", ""]
            continue
        lines += [*render(result), "", f"_Run {result['machine']['date']}._", ""]
    (TOP / "docs" / "benchmarks.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
