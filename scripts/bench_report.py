"""Turns the benchmark results (JSON lines) into BENCHMARKS.md and a JSON file, with every
figure next to its same-run baseline and each target marked met or missed."""

import json
import platform
import subprocess
import sys

mode, results_path, out_md, out_json, store_args, recalc_args, seconds = sys.argv[1:8]
rows = [json.loads(line) for line in open(results_path) if line.strip()]
rpc = [r["rpc"] for r in rows if "rpc" in r]
rpc_tls = [r["rpc_tls"] for r in rows if "rpc_tls" in r]
footprints = [r["redis_footprint"] for r in rows if "redis_footprint" in r]
instructions = [r["instructions"] for r in rows if "instructions" in r]
one = {k: v for r in rows for k, v in r.items() if k not in ("rpc", "rpc_tls", "redis_footprint", "instructions")}


def cpu():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
health = {r["concurrency"]: r for r in rpc if r["target"] == "health"}
lines = [
    "# idlink benchmarks",
    "",
    f"Machine: {cores} cores ({cpu()}), Linux {platform.release()}; server and load generator share it.",
    f"Mode: {mode}. Rerun: `scripts/bench` (the full run; `scripts/bench --smoke` is what CI runs).",
    "",
    "## RPCs (idlink bench, 4 HTTP/2 connections, "
    + f"{seconds} s per level; tokens validated on every call)",
    "",
    "| RPC | concurrency | requests/s | vs Health/Check | p50 ms | p90 ms | p99 ms | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for r in rpc:
    base = health.get(r["concurrency"], {}).get("rps") or 0
    ratio = f"{r['rps'] / base:.0%}" if base else "—"
    lines.append(f"| {r['target']} | {r['concurrency']} | {r['rps']:.0f} | {ratio} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} |")
if rpc_tls:
    plain = {(r["target"], r["concurrency"]): r for r in rpc}
    lines += [
        "",
        "## RPCs over TLS (a second `idlinkd --dev --dev-tls-cert …`, same state; as ratios to the same RPC in plaintext above)",
        "",
        "| RPC | concurrency | requests/s | vs plaintext | p99 ms | plaintext p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rpc_tls:
        base = plain.get((r["target"], r["concurrency"]), {})
        ratio = f"{r['rps'] / base['rps']:.0%}" if base.get("rps") else "—"
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['rps']:.0f} | {ratio} | {r['p99_ms']:.3f} | {base.get('p99_ms', 0):.3f} | {r['errors']} |"
        )
store, recalc, startup, footprint = one.get("store", {}), one.get("recalc", {}), one.get("startup", {}), one.get("footprint", {})
lines += [
    "",
    f"## Store (sled, `store_throughput {store_args}`)",
    "",
    f"- durable link writes, 1 writer: {store.get('writes_1', 0):.0f}/s (the baseline)",
    f"- durable link writes, 64 writers: {store.get('writes_64', 0):.0f}/s = {store.get('writes_ratio', 0)}x one writer"
    + (f", {store['writes_per_batch']} writes a batch" if "writes_per_batch" in store else ""),
    *([f"- each write in its own transaction (`write_combining = false`, a store of its own, same run): "
       f"1 writer {store['separate_writes_1']:.0f}/s, 64 writers {store['separate_writes_64']:.0f}/s; "
       f"combining gives {store.get('writes_1', 0) / store['separate_writes_1']:.2f}x with 1 writer and "
       f"{store.get('writes_64', 0) / store['separate_writes_64']:.2f}x with 64"] if store.get("separate_writes_1") else []),
    *([f"- pages compressed (`compression = true`, a store of its own, same run): "
       f"1 writer {store['compressed_writes_1']:.0f}/s, 64 writers {store['compressed_writes_64']:.0f}/s = "
       f"{store['compressed_writes_64'] / max(store.get('writes_64', 1), 1):.2f}x the uncompressed 64-writer rate"] if store.get("compressed_writes_1") else []),
    f"- active-link reads: {store.get('reads', 0):.0f}/s; flow create + consume: {store.get('flows', 0):.0f}/s",
    "",
]
redis_store = one.get("store_redis")
if redis_store:
    lines += [
        f"## Store (Redis, appendonly yes + appendfsync always, `store_throughput {store_args} redis://…`)",
        "",
        f"- durable link writes, 1 writer: {redis_store['writes_1']:.0f}/s (the baseline)",
        f"- durable link writes, 64 writers: {redis_store['writes_64']:.0f}/s = {redis_store['writes_ratio']}x one writer"
        + (f" = {redis_store['writes_64'] / store['writes_64']:.2f}x sled's 64 writers" if store.get("writes_64") else ""),
        f"- active-link reads: {redis_store['reads']:.0f}/s; flow create + consume: {redis_store['flows']:.0f}/s",
        "",
    ]
if instructions:
    base = next((i for i in instructions if i["target"] == "health"), None)
    lines += [
        "## Server instructions per call (callgrind, counting only the calls: 16 callers, 4 connections)",
        "",
        "| RPC | calls | instructions per call | vs Health/Check |",
        "| --- | ---: | ---: | ---: |",
    ]
    for i in instructions:
        i["per_call"] = i["total"] / max(i["calls"], 1)
    for i in instructions:
        ratio = f"{i['per_call'] / base['per_call']:.2f}x" if base and base["per_call"] else "—"
        lines.append(f"| {i['target']} | {i['calls']} | {i['per_call']:.0f} | {ratio} |")
    lines.append("")
    one["instructions"] = instructions
SHARD = 25 * 2**30
if footprints:
    lines += [
        "## Redis memory (`recalc_throughput ORGS PER_ORG CERTS_PER redis://…`, each into an empty redis-server)",
        "",
        "One person in five has a Partner University link (with one assessment) beside their Learning link.",
        "",
        "| organisations × people × certifications | links | achievements | used_memory after − before | per person |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for f in footprints:
        people = f["organizations"] * f["links_per_org"]
        links = people + (f["links_per_org"] + 4) // 5 * f["organizations"]
        achievements = people * f["certs_per_person"] + (f["links_per_org"] + 4) // 5 * f["organizations"]
        f.update(links=links, achievements=achievements, bytes=f["redis_used_memory_after"] - f["redis_used_memory_before"], people=people)
        lines.append(f"| {f['organizations']} × {f['links_per_org']} × {f['certs_per_person']} | {links} | {achievements} | "
                     + f"{f['bytes'] / 1e6:.1f} MB | {f['bytes'] / people:.0f} B |")
    # Per link and per achievement, from the two loads of the same people with and without certifications.
    pair = [f for f in footprints if f["organizations"] == footprints[0]["organizations"] and f["links_per_org"] == footprints[0]["links_per_org"]]
    if len(pair) >= 2 and pair[0]["achievements"] != pair[1]["achievements"]:
        per_cert = (pair[0]["bytes"] - pair[1]["bytes"]) / (pair[0]["achievements"] - pair[1]["achievements"])
        per_link = (pair[1]["bytes"] - per_cert * pair[1]["achievements"]) / pair[1]["links"]
        largest = max(footprints, key=lambda f: f["people"])
        per_person = largest["bytes"] / largest["people"]
        one["redis_per_link_bytes"], one["redis_per_certification_bytes"] = round(per_link), round(per_cert)
        one["redis_people_per_25gib_shard"] = int(SHARD / per_person)
        lines += [
            "",
            f"- per link (with its indexes, tombstone slot and credit share): {per_link:.0f} B; per certification: {per_cert:.0f} B",
            f"- one 25 GiB shard holds {SHARD / per_person / 1e6:.1f} M people like these ({per_person:.0f} B each at "
            + f"{largest['people']} people), before Redis's own headroom",
        ]
    lines.append("")
lines += [
    f"## Recalculation (`recalc_throughput {recalc_args}`: organisations, links each, certifications each)",
    "",
    f"- {recalc.get('links', 0)} links / {recalc.get('certifications', 0)} certifications, every organisation as RecalculateCredits "
    + f"runs it: {recalc.get('recalc_s', 0):.2f} s ({recalc.get('links_per_s', 0):.0f} links/s) = {recalc.get('ratio', 0):.2f}x the baseline",
    f"- baseline: one ordered read of the {recalc.get('baseline_mib', 0)} MiB of records the recalculation reads, decoding nothing: "
    + f"{recalc.get('baseline_s', 0):.2f} s",
    f"- peak RSS of the recalculation's process: {recalc.get('recalc_rss_mib', 0):.0f} MiB (the baseline's: {recalc.get('baseline_rss_mib', 0):.0f} MiB); "
    + "each is a fresh process that opens the loaded store with idlinkd's default sled cache",
    "",
    "## Start-up and footprint (`idlinkd --dev`, empty store)",
    "",
    f"- exec to SERVING: {startup.get('exec_to_serving_ms', 0)} ms (includes the development provider's RSA key generation)",
    f"- idle RSS: {startup.get('idle_rss_kib', 0) / 1024:.1f} MiB; peak RSS after the RPC runs: {footprint.get('peak_rss_under_load_kib', 0) / 1024:.1f} MiB",
    "",
    "## Targets (issue 7)",
    "",
]


def target(name, met, detail):
    lines.append(f"- {'met' if met else 'MISSED'}: {name} — {detail}")


high = max(health) if health else 0
for t in ("getlinks", "resolve"):
    r = next((x for x in rpc if x["target"] == t and x["concurrency"] == high), None)
    if r and health:
        share = r["rps"] / health[high]["rps"]
        detail = f"{share:.0%}, p99 {r['p99_ms']:.2f} ms (Health/Check's own p99 at this concurrency: {health[high]['p99_ms']:.2f} ms)"
        target(f"{t} ≥ 50% of Health/Check at concurrency {high}, p99 ≤ 2 ms", share >= 0.5 and r["p99_ms"] <= 2.0, detail)
target("durable writes ≥ 5,000/s with 64 writers and ≥ 20x one writer", store.get("writes_64", 0) >= 5000 and store.get("writes_ratio", 0) >= 20,
       f"{store.get('writes_64', 0):.0f}/s, {store.get('writes_ratio', 0)}x")
target("(issue 20) durable writes with 64 writers ≥ 15,000/s and ≥ 6x one writer, one writer no slower than without combining",
       store.get("writes_64", 0) >= 15000 and store.get("writes_ratio", 0) >= 6
       and store.get("writes_1", 0) >= 0.95 * store.get("separate_writes_1", float("inf")),
       f"{store.get('writes_64', 0):.0f}/s, {store.get('writes_ratio', 0)}x; 1 writer "
       f"{store.get('writes_1', 0) / max(store.get('separate_writes_1', 1), 1):.2f}x of separate transactions")
full_size = recalc.get("links", 0) >= 1_000_000 and recalc.get("certifications", 0) >= 5_000_000
target("recalculation of 1M links / 5M certifications ≤ 30 s, RSS ≤ 256 MiB",
       full_size and recalc.get("recalc_s", 1e9) <= 30 and recalc.get("recalc_rss_mib", 1e9) <= 256,
       f"{recalc.get('links', 0)} links / {recalc.get('certifications', 0)} certifications in {recalc.get('recalc_s', 0):.2f} s, "
       + f"peak RSS {recalc.get('recalc_rss_mib', 0):.0f} MiB" + ("" if full_size else " — smaller than the target size"))
target("idle RSS ≤ 30 MiB", startup.get("idle_rss_kib", 10**9) <= 30 * 1024, f"{startup.get('idle_rss_kib', 0) / 1024:.1f} MiB")
target("exec to SERVING ≤ 1 s", startup.get("exec_to_serving_ms", 10**9) <= 1000, f"{startup.get('exec_to_serving_ms', 0)} ms")
open(out_md, "w").write("\n".join(lines) + "\n")
json.dump({"mode": mode, "cores": cores, "cpu": cpu(), "rpc": rpc, "rpc_tls": rpc_tls, **one}, open(out_json, "w"), indent=2)
# A figure with failed or no calls measures something else: the run fails, saying which.
broken = [f"{r['target']} at concurrency {r['concurrency']}: {r['requests']} calls, {r['errors']} errors" for r in rpc + rpc_tls
          if r["errors"] or not r["requests"]]
if not rpc_tls:
    broken.append("no TLS figures")
if broken:
    sys.exit("benchmark calls failed: " + "; ".join(broken))
