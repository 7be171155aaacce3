"""Rendering the results as Markdown (bench/results/report.md)."""

from __future__ import annotations

from typing import Any

TARGET_RATIO = 0.8
CPU_TARGET_RATIO = 0.9  # the "CPU per record" section's goal
RSS_TARGET_MB = 150
STATE_TARGET_BYTES = 64 * 1024
LEDGER_TARGET_BYTES_PER_ROW = 20


def _n(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if digits == 0:
            return f"{round(value):,}"
        return f"{value:,.{digits}f}"
    return str(value)


def _table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(marks) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ceiling_index(results: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(c["n"], c["stream"]): c for c in results.get("ceiling", []) if c.get("ok")}


def full_sync_table(
    results: dict[str, Any], key: str = "full_sync", target: float = TARGET_RATIO
) -> list[str]:
    ceilings = _ceiling_index(results)
    rows = []
    for case in results.get(key, []):
        f, t = case["floor"], case["tap"]
        ratio = case.get("ratio")
        ratio_s = _n(ratio, 2)
        if ratio is not None and ratio < target:
            ratio_s = f"**{ratio_s}** (< {target})"
        ceil = ceilings.get((case["n"], case["stream"]), {})
        # the stream's own endpoint (older reports: every request the emulator counted)
        req = t.get("endpoint_requests", t.get("requests"))
        req_s = f"{_n(req)} ({_n(case['expected_requests'])})"
        if req is not None and req != case["expected_requests"]:
            req_s = f"**{_n(req)}** ({_n(case['expected_requests'])})"
        if t.get("requests") is not None and t.get("requests") != req:
            req_s += f" +{_n(t['requests'] - req)}"
        checks = []
        if not (f["ok"] and t["ok"]):
            checks.append("FAILED run")
        if f["ok"] and t["ok"] and not (f["records_ok"] and t["records_ok"]):
            checks.append("record count off")
        rows.append(
            [
                _n(case["n"]),
                case["stream"] + (f" ({', '.join(checks)})" if checks else ""),
                _n(ceil.get("records_per_s")),
                _n(f.get("records_per_s")),
                _n(t.get("records_per_s")),
                ratio_s,
                _n(f.get("wall_s"), 1),
                _n(t.get("wall_s"), 1),
                _n(f.get("cpu_us_per_record")),
                _n(t.get("cpu_us_per_record")),
                _n(case.get("ratio_cpu"), 2),
                req_s,
                _n(f.get("max_rss_mb")),
                _n(t.get("max_rss_mb")),
                _n(t.get("emulator_cpu_util"), 2),
                f"{_n(f.get('other_cpu_util'), 2)} / {_n(t.get('other_cpu_util'), 2)}",
                _n(case.get("speed_drift_pct"), 1),
                _n(case["reps"]),
            ]
        )
    head = [
        "candidates",
        "stream",
        "emulator ceiling rec/s",
        "floor rec/s",
        "tap rec/s",
        "tap/floor",
        "floor wall s",
        "tap wall s",
        "floor CPU us/rec",
        "tap CPU us/rec",
        "floor/tap CPU",
        "tap requests (exp.)",
        "floor RSS MB",
        "tap RSS MB",
        "emulator CPU (tap run)",
        "other CPU floor / tap",
        "speed drift %",
        "runs",
    ]
    return _table(head, rows)


def ceiling_table(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            _n(c["n"]),
            c["endpoint"],
            _n(c.get("pages")),
            _n(c.get("pages_per_s"), 1),
            _n(c.get("records_per_s")),
            _n((c.get("bytes_per_page") or 0) / 1024),
            _n(c.get("emulator_cpu_util"), 2),
        ]
        if c.get("ok")
        else [_n(c["n"]), c["endpoint"], "FAILED", "-", "-", "-", "-"]
        for c in results.get("ceiling", [])
    ]
    head = ["candidates", "endpoint", "pages timed", "pages/s", "rec/s", "KB/page", "emulator CPU"]
    return _table(head, rows)


def probe_lines(results: dict[str, Any]) -> list[str]:
    probes = results.get("probe") or []
    if not probes:
        return []
    parts = [
        f"{p['n']:,} candidates: {p['keep_alive_ms']} ms keep-alive vs "
        f"{p['new_connection_ms']} ms on a new connection"
        for p in probes
    ]
    fan = (results.get("fan_out") or {}).get("probe")
    if fan:
        parts.append(
            f"fan-out emulator (with its added latency): {fan['keep_alive_ms']} ms "
            f"keep-alive vs {fan['new_connection_ms']} ms new connection"
        )
    return [
        "",
        "Small-answer round trip (candidate.list with limit 1, 20 calls): "
        + "; ".join(parts)
        + ". Both should be about 1 ms (plus any added latency); a "
        "keep-alive figure about 40 ms higher is a Nagle/delayed-ACK stall in the emulator "
        "(headers and body in two writes without TCP_NODELAY), which slows every small "
        "answer, i.e. the fan-out case (see bench/README.md).",
    ]


def incremental_table(results: dict[str, Any]) -> list[str]:
    full = {(c["n"], c["stream"]): c for c in results.get("full_sync", [])}
    rows = []
    for case in results.get("incremental", []):
        ref = full.get((case["n"], case["stream"]), {}).get("tap", {})
        for step in case.get("steps", []):
            # candidate.list only (older reports: every request; the tap also makes one
            # version.list preflight call)
            rec = step.get("records")
            req = (step.get("requests_by_endpoint") or {}).get(
                "candidate.list", step.get("requests")
            )
            rows.append(
                [
                    _n(case["n"]),
                    f"{step['fraction']:.1%}",
                    _n(step["changed"]),
                    _n(step.get("mutate_s"), 1),
                    _n(step.get("wall_s"), 2),
                    _n(step.get("sync_s"), 2),
                    f"{_n(rec)} ({_n(step['expected_records'])})"
                    if rec == step["expected_records"]
                    else f"**{_n(rec)}** ({_n(step['expected_records'])})",
                    f"{_n(req)} ({_n(step['expected_requests'])})"
                    if req == step["expected_requests"]
                    else f"**{_n(req)}** ({_n(step['expected_requests'])})",
                    _n(step.get("incremental")),
                    _n(ref.get("wall_s"), 1),
                ]
            )
    head = [
        "candidates",
        "changed",
        "records changed",
        "mutation s",
        "tap wall s",
        "tap sync s",
        "records (exp.)",
        "requests (exp.)",
        "incremental pass",
        "full sync wall s",
    ]
    return _table(head, rows)


def meltano_section(results: dict[str, Any]) -> list[str]:
    m = results.get("meltano")
    if not m:
        return ["(not run)"]
    out = []
    chk = m.get("env_check", {})
    out.append(
        f"Environment check (`meltano select tap-ashby --list`, `meltano config print "
        f"tap-ashby`): `TAP_ASHBY__SELECT` gave patterns {chk.get('select_patterns')} "
        f"and selected streams {chk.get('selected_streams')} -> "
        f"**{'works' if chk.get('select_ok') else 'DOES NOT WORK'}**; base_url from "
        f"`TAP_ASHBY_BASE_URL` {'ok' if chk.get('config_base_url_ok') else 'WRONG'}, "
        f"requests_per_minute from `TAP_ASHBY_REQUESTS_PER_MINUTE` "
        f"{'ok' if chk.get('config_rpm_ok') else 'WRONG'}."
    )
    out.append("")
    run = m.get("run", {})
    b = run.get("breakdown", {})
    total = run.get("wall_s") or 0.0

    def share(x: float | None) -> str:
        return f"{_n(x, 2)} s ({100 * x / total:.0f}%)" if x is not None and total else "-"

    alone = m.get("tap_alone", {})
    target = m.get("target_alone", {})
    rows = [
        [
            "`meltano run tap-ashby target-duckdb` total",
            share(total) if total else "-",
            f"rc {run.get('rc')}, rows loaded {run.get('rows')}, "
            f"{_n(run.get('requests'))} API requests",
        ],
        [
            "meltano start-up + catalog discovery (until the syncing tap starts)",
            share(b.get("meltano_start_and_discovery_s")),
            f"discovery tap CPU {_n(b.get('discovery_cpu_s'), 2)} s",
        ],
        [
            "tap process running (target loading concurrently)",
            share(b.get("tap_running_s")),
            f"tap CPU {_n(b.get('tap_cpu_s'), 2)} s, tap peak RSS {_n(b.get('tap_rss_mb'))} MB",
        ],
        [
            "target still running after the tap exited",
            share(b.get("target_only_after_tap_exit_s")),
            f"target CPU over the whole run {_n(b.get('target_cpu_s'), 2)} s, target peak RSS "
            f"{_n(b.get('target_rss_mb'))} MB",
        ],
        [
            "meltano after the target exited (state write, exit)",
            share(b.get("meltano_after_target_exit_s")),
            f"meltano's own CPU {_n(b.get('meltano_cpu_s'), 2)} s",
        ],
        [
            "tap alone, same selection, stdout to /dev/null",
            f"{_n(alone.get('wall_s'), 2)} s",
            f"sync {_n(alone.get('sync_s'), 2)} s, CPU {_n(alone.get('cpu_s'), 2)} s, "
            f"{_n(alone.get('records'))} records",
        ],
        [
            "target alone, same Singer stream from a file",
            f"{_n(target.get('wall_s'), 2)} s",
            f"CPU {_n(target.get('cpu_s'), 2)} s, input {_n(target.get('input_mb'), 1)} MB, "
            f"rows {target.get('rows')}",
        ],
    ]
    out += _table(
        [f"phase ({m['n']:,} candidates: candidates + applications)", "wall", "detail"], rows, "lrl"
    )
    if b and total:
        tap_cpu, tgt_cpu = b.get("tap_cpu_s") or 0.0, b.get("target_cpu_s") or 0.0
        out += [
            "",
            f"CPU split between the two plugins: tap {tap_cpu:.1f} s "
            f"({100 * tap_cpu / max(1e-9, tap_cpu + tgt_cpu):.0f}%), target {tgt_cpu:.1f} s "
            f"({100 * tgt_cpu / max(1e-9, tap_cpu + tgt_cpu):.0f}%).",
        ]
    if run.get("error"):
        out += ["", "```", run["error"], "```"]
    return out


def fan_out_table(results: dict[str, Any]) -> list[str]:
    f = results.get("fan_out")
    if not f:
        return ["(not run)"]
    rows = []
    for r in f["rows"]:
        budget = r.get("budget_rpm") or 0
        per_s = r.get("max_per_second")
        over = budget and per_s is not None and per_s > budget / 60 + 1
        rows.append(
            [
                _n(budget) if budget else "unlimited",
                _n(r["concurrency"]),
                f"{_n(r.get('records'))} ({_n(f['expected_records'])})",
                f"{_n(r.get('requests'))} ({_n(f['expected_requests'])})",
                _n(r.get("sync_s"), 2),
                _n(r.get("wall_s"), 2),
                _n(r.get("requests_per_s"), 1),
                (
                    f"**{per_s}** > {budget / 60:.0f}"
                    if over
                    else f"{per_s} (budget {budget / 60:.0f})"
                    if budget
                    else str(per_s)
                ),
                f"{r.get('max_in_flight')} (cap {r['concurrency']})",
                "ok" if r.get("ok") else f"FAILED: {r.get('error', '')[:80]}",
            ]
        )
    head = [
        "budget req/min",
        "max_concurrency",
        "records (exp.)",
        "requests (exp.)",
        "stream s",
        "wall s",
        "req/s",
        "max req in one second",
        "max in flight",
        "run",
    ]
    return _table(head, rows)


def profile_section(results: dict[str, Any]) -> list[str]:
    p = results.get("profile")
    if not p:
        return ["(not run)"]
    run = p.get("run", {})
    a = p.get("analysis")
    threads = (a or {}).get("threads") or {}
    out = [
        f"`python bench/profile_threads.py bench/results/tap.prof -m tap_ashby.tap` "
        f"({', '.join(run.get('streams') or ['candidates'])}) on {_n(run.get('n'))} "
        f"candidates: {_n(run.get('wall_s'), 1)} s under the profiler, "
        f"{_n(run.get('records'))} records, {_n(run.get('requests'))} requests. Every "
        f"thread is profiled ({_n(threads.get('threads_profiled'))} threads, "
        f"{_n(threads.get('threads_left_out'))} left out) on its own CPU time "
        "(`time.thread_time`): prefetch workers (HTTP, JSON decoding) and the main thread "
        "(records out) together; waiting costs nothing, so the total is about the "
        "process's CPU time."
    ]
    if not a:
        return [*out, "", "(no profile: " + str(run.get("error")) + ")"]
    total = a["total_s"]
    out += [
        "",
        f"Top 15 by cumulative time (profiled total {total:.1f} s CPU), among "
        "functions called at least 100 times: the per-page and per-record hot path (the "
        "CLI, stream and thread plumbing above it is left out):",
        "",
    ]
    out += _table(
        ["function", "ncalls", "tottime s", "cumtime s", "cum %"],
        [
            [
                f"`{e['function']}`",
                _n(e["ncalls"]),
                _n(e["tottime"], 2),
                _n(e["cumtime"], 2),
                _n(e["cum_pct"], 1),
            ]
            for e in a["top_cumulative"]
        ],
    )
    out += ["", "Top 15 by own (self) time:", ""]
    out += _table(
        ["function", "ncalls", "tottime s", "self %"],
        [
            [f"`{e['function']}`", _n(e["ncalls"]), _n(e["tottime"], 2), _n(e["self_pct"], 1)]
            for e in a["top_self"]
        ],
    )
    out += ["", "Own time by package:", ""]
    out += _table(
        ["package", "self s", "%"],
        [[x["package"], _n(x["self_s"], 2), _n(x["pct"], 1)] for x in a["by_package"][:12]],
    )
    out += [
        "",
        "Per-record / per-page functions of the SDK, the tap and requests (cumulative):",
        "",
    ]
    out += _table(
        ["function", "ncalls", "cumtime s", "cum %"],
        [
            [f"`{e['function']}`", _n(e["ncalls"]), _n(e["cumtime"], 2), _n(e["cum_pct"], 1)]
            for e in a["watched"]
        ],
    )
    hot = a.get("hot_self_non_io") or []
    if hot:
        h = hot[0]
        out += [
            "",
            f"Largest own-time entry outside socket I/O and imports: `{h['function']}` "
            f"({h['tottime']:.2f} s, {h['self_pct']:.1f}% of the profile).",
        ]
    over = a.get("overhead") or []
    if over:
        out += [
            "",
            "Per-record work the floor does not do (cumulative; the removable part of "
            "the hot path):",
            "",
        ]
        out += _table(
            ["function", "ncalls", "cumtime s", "cum %"],
            [
                [f"`{e['function']}`", _n(e["ncalls"]), _n(e["cumtime"], 2), _n(e["cum_pct"], 1)]
                for e in over
            ],
        )
        top = over[0]
        out += [
            "",
            f"**Largest remaining cost in the hot path: `{top['function']}`, "
            f"{top['cum_pct']:.1f}% of the profiled run** ({top['cumtime']:.2f} s "
            f"cumulative over {top['ncalls']:,} calls).",
        ]
    return out


def shortfalls(results: dict[str, Any]) -> list[str]:
    out = []
    for case in results.get("full_sync", []):
        ratio = case.get("ratio")
        if ratio is not None and ratio < TARGET_RATIO:
            out.append(f"- {case['stream']} at {case['n']:,}: tap/floor = {ratio:.2f}")
    return out or [
        f"- none: the tap reaches at least {TARGET_RATIO}x the floor everywhere it was measured"
    ]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    versions = meta["versions"]
    lines = [
        "# tap-ashby benchmark",
        "",
        f"{meta['mode']} run, {meta['started']}, {meta['duration_s'] / 60:.1f} min; "
        f"{meta['cpus']} CPUs, Python {meta['python']}, singer-sdk {versions.get('singer-sdk')}, "
        f"requests {versions.get('requests')}, msgspec {versions.get('msgspec')}; "
        f"commit {meta['git']}.",
        f"Peak RSS: {meta['rss_method']}. Emulator: {meta.get('emulator', '?')}, in its own "
        "process.",
    ]
    ids = meta.get("ids")
    if ids:
        example = (ids.get("examples") or ["?"])[0]
        lines.append(
            f"Emulator ids: {ids.get('kind')} (e.g. `{example}`); the ledger stores "
            "a canonical UUID in 17 bytes."
        )
    code = meta.get("code") or {}
    if code:
        what = (
            f"a copy taken at the start (digest {code['snapshot']})"
            if code.get("snapshot")
            else f"the live working tree (digest {code.get('tree_at_start')})"
        )
        lines.append(f"Code measured: tap_ashby/ and schemas/ from {what}.")
        if code.get("tree_at_end") and code["tree_at_end"] != code.get("tree_at_start"):
            lines.append(
                "**The working tree changed during the run** (digest at the end "
                f"{code['tree_at_end']})"
                + (
                    "; the copy kept every case on the start version."
                    if code.get("snapshot")
                    else ": cases may mix versions."
                )
            )
    if meta.get("skipped"):
        lines += ["", "**Skipped (deadline or --only):** " + ", ".join(meta["skipped"])]
    lines += [
        "",
        "## Full sync: floor vs tap-ashby",
        "",
        "rec/s = records / the client's own sync time (floor: its paging loop; tap: the "
        "stream's time in its summary log), median of the runs; tap/floor = tap rec/s / floor "
        "rec/s (the goal is >= 0.8). Wall = the whole process, interpreter start and imports "
        "included. CPU us/rec = the client process's user+system CPU / records (start-up "
        "included; the emulator's time is not in it), so floor/tap CPU compares the clients' "
        "own work. Requests are counted by the emulator: the stream's endpoint (expected = "
        "ceil(N/100)), then `+k` for other calls (the tap's version.list preflight). Emulator CPU "
        "= the emulator process's CPU / the tap run's wall time (1.0 = one core busy). Other "
        "CPU = what the rest of the machine used meanwhile (/proc/stat busy time minus client "
        "and emulator), per second of the run: above ~0.1 the run shared the 2 cores with "
        "other work and its numbers are noisy. Speed drift = how much the box's speed (a fixed "
        "Python loop timed before and after every run of the row) varied across the row's "
        "runs: the host's load changes over minutes, invisibly, and above ~10% the ratio of "
        "that row is as much the machine as the code.",
        "",
        *full_sync_table(results),
        "",
        "Below 0.8x the floor:",
        "",
        *shortfalls(results),
        "",
        "## CPU per record: tap vs floor, interleaved",
        "",
        *cpu_section(results),
        "",
        "## State and memory at scale",
        "",
        *scale_section(results),
        "",
        "## Latency: default full sync under the default budget",
        "",
        *latency_section(results),
        "",
        "## Emulator ceiling (trivial http.client pager, no JSON parse)",
        "",
        *ceiling_table(results),
        *probe_lines(results),
        "",
        "## Incremental (candidates; 0.1% then 1% of candidates updated)",
        "",
        *incremental_table(results),
        "",
        "## End to end: meltano run tap-ashby target-duckdb",
        "",
        *meltano_section(results),
        *meltano_tuning_section(results),
        "",
        "## Fan-out: application_history (one application.listHistory per application)",
        "",
    ]
    f = results.get("fan_out")
    if f:
        lines += [
            f"Emulator with `--latency {f['latency_s']}` and {f['applications']:,} "
            "applications (capped to keep the run bounded); the emulator counts requests "
            "per wall-clock second and the peak in flight.",
            "",
        ]
    lines += [
        *fan_out_table(results),
        "",
        "## Profile of the tap",
        "",
        *profile_section(results),
        "",
    ]
    return "\n".join(lines)


# new sections ------------------------------------------------------------------------------
def _plot_link(results: dict[str, Any], name: str, alt: str) -> list[str]:
    got = (results.get("plots") or {}).get(name)
    if got and got.endswith(".png"):
        return ["", f"![{alt}]({got})", "", f"Plot: [`bench/results/{got}`]({got})."]
    if got:
        return ["", f"(no plot: {got})"]
    return []


def cpu_section(results: dict[str, Any]) -> list[str]:
    cases = results.get("cpu") or []
    if not cases:
        return ["(not run)"]
    c0 = cases[0]
    out = [
        f"Floor (`bench/floor.py`, a bare `requests` pager) and tap, budget lifted "
        f"(`requests_per_minute: 0`), same emulator ({c0['n']:,} candidates), "
        f"{c0['reps']} runs each, alternating floor, tap, floor, ...; medians. Columns as "
        f"in the full-sync table. **Goal: tap/floor >= {CPU_TARGET_RATIO}.**",
        "",
    ]
    out += full_sync_table(results, "cpu", CPU_TARGET_RATIO)
    out += [""]
    for case in cases:
        ratio, cpu = case.get("ratio"), case.get("ratio_cpu")
        t, f = case["tap"], case["floor"]
        runs = case["runs"]["tap"] + case["runs"]["floor"]
        noisy = [r for r in runs if (r.get("other_cpu_util") or 0) > 0.1]
        verdict = "meets" if ratio is not None and ratio >= CPU_TARGET_RATIO else "misses"
        out.append(
            f"- {case['stream']}: tap/floor **{_n(ratio, 2)}** ({verdict} the {CPU_TARGET_RATIO} "
            f"goal); CPU per record {_n(t.get('cpu_us_per_record'))} us tap vs "
            f"{_n(f.get('cpu_us_per_record'))} us floor (floor/tap CPU {_n(cpu, 2)}); "
            f"per-run tap/floor rec/s: "
            + ", ".join(_n(r, 2) for r in _pairwise_ratios(case))
            + "; speed drift "
            f"{_n(case.get('speed_drift_pct'), 1)}%"
            + (
                f"; **noisy**: {len(noisy)} of {len(runs)} runs had other CPU > 0.1"
                if noisy
                else ""
            )
        )
    a = (results.get("profile") or {}).get("analysis")
    if a and a.get("tap_by_self"):
        recs = a.get("records") or 0
        streams = ", ".join((results["profile"].get("run") or {}).get("streams") or ["?"])
        out += [
            "",
            f"Where the tap's CPU goes per record (from the profile below: "
            f"{_n(recs)} records of {streams}, "
            "every thread, CPU time; the profiler inflates cheap calls, so read the "
            "order and the shares rather than the absolute us). Tap functions by own "
            "time:",
            "",
        ]
        out += _table(
            ["tap function", "ncalls", "own us/record", "cum us/record", "own % of profile"],
            [
                [
                    f"`{e['function']}`",
                    _n(e["ncalls"]),
                    _n(e.get("self_us_per_record"), 2),
                    _n(e.get("cum_us_per_record"), 2),
                    _n(e["self_pct"], 1),
                ]
                for e in a["tap_by_self"][:10]
            ],
        )
        out += [
            "",
            "Tap functions by cumulative time (they and everything they call), "
            "per-page ones (one call per request or page) and per-record ones (at least "
            "one call per two records):",
            "",
        ]
        pages = (results["profile"].get("run") or {}).get("requests") or 0
        picked = [
            e
            for e in a.get("tap_by_cum_all", a["tap_by_cum"])
            if e["ncalls"] >= min(pages, recs // 2) and e["ncalls"] > 10
        ]
        out += _table(
            ["tap function", "ncalls", "calls/record", "cum us/record", "cum %"],
            [
                [
                    f"`{e['function']}`",
                    _n(e["ncalls"]),
                    _n(e["ncalls"] / recs, 2) if recs else "-",
                    _n(e.get("cum_us_per_record"), 2),
                    _n(e["cum_pct"], 1),
                ]
                for e in picked[:14]
            ],
        )
        sdk = [e for e in a.get("watched", []) if "singer_sdk" in e["function"]][:8]
        if sdk:
            out += ["", "SDK functions on the per-record path (cumulative):", ""]
            out += _table(
                ["SDK function", "ncalls", "cum us/record", "cum %"],
                [
                    [
                        f"`{e['function']}`",
                        _n(e["ncalls"]),
                        _n(e.get("cum_us_per_record"), 2),
                        _n(e["cum_pct"], 1),
                    ]
                    for e in sdk
                ],
            )
    return out


def _pairwise_ratios(case: dict[str, Any]) -> list[float]:
    floors = {r["rep"]: r for r in case["runs"]["floor"] if r.get("records_per_s")}
    return [
        round(t["records_per_s"] / floors[t["rep"]]["records_per_s"], 2)
        for t in case["runs"]["tap"]
        if t.get("records_per_s") and t["rep"] in floors
    ]


def latency_section(results: dict[str, Any]) -> list[str]:
    lat = results.get("latency") or {}
    rows = lat.get("rows") or []
    if not rows:
        return ["(not run)"]
    out = [
        f"The tap's default selection (no catalog) and default config (only api_key, "
        f"base_url, ledger_uri: budget {lat.get('budget_rpm')} requests/min, "
        f"max_concurrency {lat.get('max_concurrency')}), full sync of an org of "
        f"{lat.get('candidates')} candidates; a fresh emulator with `--latency L` per row "
        "(L added to every API answer). Requests, max in flight and max per second are "
        "counted by the emulator (the preflight version.list included). Ideal = requests "
        "/ 15 per s: the budget-bound ideal (with 16 in flight the budget, not the "
        "latency, is the bound up to 16/15 = 1.07 s per answer; the concurrency-bound "
        "time requests x L / 16 is given for comparison). Utilisation = ideal / the "
        "process's wall time (start-up included); `sync` = ideal / the tap's own run "
        "time (summary line). Parent lists: requests to candidate.list and "
        "application.list, expected = pages = ceil(candidates/100) each (one pass per "
        "parent list). Airbyte = the same requests at Airbyte's sequential 1.31 "
        "requests/s.",
        "",
    ]
    table = []
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        exp = r.get("expected_parent_pages")
        parents = r.get("parent_list_requests") or {}

        def par(ep: str, parents: dict[str, int] = parents, exp: int | None = exp) -> str:
            got = parents.get(ep)
            return f"{_n(got)} ({_n(exp)})" if got == exp else f"**{_n(got)}** ({_n(exp)})"

        table.append(
            [
                _n(r["latency_ms"]),
                _n(r["requests"]),
                _n(r.get("wall_s"), 1),
                _n(r.get("sync_s"), 1),
                _n(r.get("ideal_s"), 1),
                _n(r.get("concurrency_bound_ideal_s"), 1),
                f"{_n(100 * r['utilisation'], 0)}%" if r.get("utilisation") else "-",
                f"{_n(100 * r['utilisation_sync'], 0)}%" if r.get("utilisation_sync") else "-",
                _n(r.get("max_in_flight")),
                _n(r.get("max_per_second")),
                par("candidate.list"),
                par("application.list"),
                _n(r.get("airbyte_s"), 0),
                _n(r.get("records")),
                _n(r.get("cpu_s"), 1),
                _n(r.get("other_cpu_util"), 2),
                "ok" if r.get("ok") else f"FAILED: {str(r.get('error', ''))[:60]}",
            ]
        )
    out += _table(
        [
            "latency ms",
            "requests",
            "wall s",
            "sync s",
            "ideal s (req/15)",
            "concurrency-bound s",
            "utilisation",
            "utilisation (sync)",
            "max in flight",
            "max req/s",
            "candidate.list (exp.)",
            "application.list (exp.)",
            "Airbyte s (req/1.31)",
            "records",
            "tap CPU s",
            "other CPU",
            "run",
        ],
        table,
    )
    zero = next((r for r in rows if r["latency_ms"] == 0), None)
    if zero and zero.get("wall_s"):
        out += [
            "",
            f"At 0 ms the budget is the only bound: budget-bound ideal "
            f"{zero['requests']} / 15 = {_n(zero.get('ideal_s'), 1)} s against "
            f"{_n(zero['wall_s'], 1)} s of wall time, of which "
            f"{_n(zero['wall_s'] - (zero.get('sync_s') or 0), 1)} s is process start-up "
            "before the tap's clock starts.",
        ]
    out += _plot_link(results, "latency", "budget utilisation against latency")
    return out


def _both(
    run_a: dict[str, Any] | None,
    run_b: dict[str, Any] | None,
    key: str,
    digits: int = 0,
    inner: str | None = None,
) -> str:
    def get(run: dict[str, Any] | None) -> Any:
        if not run:
            return None
        value = run.get(key)
        return value.get(inner) if inner and isinstance(value, dict) else value

    return f"{_n(get(run_a), digits)} / {_n(get(run_b), digits)}"


def scale_section(results: dict[str, Any]) -> list[str]:
    jobs = results.get("scale") or []
    if not jobs:
        return ["(not run)"]
    out = [
        "Each job has an emulator of its own. Run 1: full sync, no state. Then a few "
        "records of the job's top-level stream are hard-deleted through `POST "
        '/_emulator/mutate {"op": "delete"}` (the emulator removes their child rows '
        "too). Run 2: the state of run 1 and `reconcile_now: true` (an incremental pass, "
        "an id scan of the list, tombstones). Budget lifted (`requests_per_minute: 0`); "
        "stdout through `grep` keeps the STATE lines. The emulator gives each candidate "
        "exactly one application and each application three history entries, so the "
        "applications job runs against an emulator with min(rows, "
        f"{_n(max((j['candidates'] for j in jobs if j['job'] == 'applications'), default=0))}"
        ') candidates: **"1M candidates plus 100k applications with their history" is '
        "the 1M candidates job plus the 100k applications job** (two processes, two "
        "orgs), not one run of one org. Pairs are `full / reconcile`. Ledger = the "
        "`*.ledger` generations the run's final STATE names (what the run wrote) and "
        "bytes per ledger row; targets: largest STATE line <= 64 KB, tap peak RSS <= "
        f"{RSS_TARGET_MB} MB, ledger <= {LEDGER_TARGET_BYTES_PER_ROW} bytes per UUID row.",
        "",
    ]
    table = []
    for j in sorted(jobs, key=lambda j: (j["job"] != "candidates", j["parent_rows"])):
        full, rec = j.get("full"), j.get("reconcile")
        led = (full or {}).get("ledger") or {}
        rled = (rec or {}).get("ledger") or {}
        rss = [r.get("max_rss_mb") for r in (full, rec) if r and r.get("max_rss_mb")]
        state_max = [
            r["state_lines"]["max_bytes"] for r in (full, rec) if r and r.get("state_lines")
        ]
        tomb = j.get("tombstones")
        tomb_s = (
            "-"
            if tomb is None
            else ", ".join(
                f"{s} {_n(tomb.get(s))} ({_n(j['expected_tombstones'].get(s))})"
                for s in j["streams"]
            )
        )
        if tomb is not None and not j.get("tombstones_ok"):
            tomb_s = f"**{tomb_s}**"
        flag_rss = any(r > RSS_TARGET_MB for r in rss)
        flag_state = any(b > STATE_TARGET_BYTES for b in state_max)
        rows_s = _n(j["parent_rows"])
        if j["job"] == "applications":
            serves = [j.get("row"), *j.get("also_for_rows", [])]
            rows_s += f" (for rows {', '.join(_n(x) for x in serves)})"
        table.append(
            [
                rows_s,
                " + ".join(j["streams"]),
                _both(full, rec, "records"),
                (
                    ("**" if flag_state else "")
                    + _both(full, rec, "state_lines", 0, "max_bytes")
                    + ("**" if flag_state else "")
                ),
                _both(full, rec, "state_lines", 0, "total_bytes"),
                _both(full, rec, "state_lines", 0, "count"),
                f"{_n(led.get('bytes'))} / {_n(rled.get('bytes'))}",
                f"{_n(led.get('bytes_per_row'), 1)}",
                (
                    ("**" if flag_rss else "")
                    + _both(full, rec, "max_rss_mb")
                    + ("**" if flag_rss else "")
                ),
                _n((full or {}).get("wall_s"), 1),
                _n((rec or {}).get("wall_s"), 1),
                _both(full, rec, "requests"),
                tomb_s,
                _both(full, rec, "other_cpu_util", 2),
                "ok"
                if (full or {}).get("ok") and (rec or {}).get("ok")
                else f"FAILED: {str((rec or full or {}).get('error') or j.get('error', ''))[:60]}",
            ]
        )
    out += _table(
        [
            "rows",
            "streams",
            "records",
            "largest STATE line B",
            "STATE bytes per run",
            "STATE lines",
            "ledger bytes",
            "ledger B/row",
            "peak RSS MB",
            "full-sync wall s",
            "reconcile wall s",
            "requests",
            "tombstones (exp.)",
            "other CPU",
            "runs",
        ],
        table,
    )
    per_stream = []
    for j in sorted(jobs, key=lambda j: (j["job"] != "candidates", j["parent_rows"])):
        for name, agg in ((j.get("full") or {}).get("ledger") or {}).get("streams", {}).items():
            per_stream.append(
                [
                    _n(j["parent_rows"]),
                    name,
                    _n(agg["rows"]),
                    _n(agg["bytes"]),
                    (
                        f"**{_n(agg['bytes_per_row'], 1)}**"
                        if (agg.get("bytes_per_row") or 0) > LEDGER_TARGET_BYTES_PER_ROW
                        else _n(agg.get("bytes_per_row"), 1)
                    ),
                ]
            )
    if per_stream:
        out += ["", "Ledger per stream after the full sync (the generation its STATE names):", ""]
        out += _table(["parent rows", "stream", "ledger rows", "bytes", "bytes/row"], per_stream)
    out += ["", *_scale_verdict(jobs)]
    out += _plot_link(results, "scale", "peak RSS and STATE size against rows")
    return out


def _scale_verdict(jobs: list[dict[str, Any]]) -> list[str]:
    top = max((j["parent_rows"] for j in jobs if j["job"] == "candidates"), default=None)
    apps = max((j["parent_rows"] for j in jobs if j["job"] == "applications"), default=None)
    picked = [
        j
        for j in jobs
        if (j["job"] == "candidates" and j["parent_rows"] == top)
        or (j["job"] == "applications" and j["parent_rows"] == apps)
    ]
    if not picked:
        return []
    runs = [(j, p, j.get(p)) for j in picked for p in ("full", "reconcile")]
    lines = [
        f"Targets at the largest rows ({_n(top)} candidates job + {_n(apps)} "
        "applications job, both runs):"
    ]
    for j, phase, run in runs:
        if not run:
            lines.append(f"- {j['job']} {phase}: not run")
            continue
        st = (run.get("state_lines") or {}).get("max_bytes") or 0
        rss = run.get("max_rss_mb") or 0
        lines.append(
            f"- {j['job']} {_n(j['parent_rows'])}, {phase}: largest STATE line {_n(st)} B "
            f"({'ok' if st <= STATE_TARGET_BYTES else '**over 64 KB**'}), peak RSS "
            f"{_n(rss)} MB ({'ok' if rss <= RSS_TARGET_MB else f'**over {RSS_TARGET_MB} MB**'})"
        )
    led = [
        (name, agg)
        for j in picked
        for name, agg in ((j.get("full") or {}).get("ledger") or {}).get("streams", {}).items()
    ]
    if led:
        lines.append(
            "- ledger bytes per row: "
            + ", ".join(
                f"{name} {_n(agg.get('bytes_per_row'), 1)}"
                + (
                    ""
                    if (agg.get("bytes_per_row") or 0) <= LEDGER_TARGET_BYTES_PER_ROW
                    else " (**over 20**)"
                )
                for name, agg in led
            )
        )
    return lines


def meltano_tuning_section(results: dict[str, Any]) -> list[str]:
    m = results.get("meltano") or {}
    tuning = m.get("tuning")
    if not tuning:
        return []
    cfg = (m.get("target_alone") or {}).get("config")
    out = [
        "",
        "### target-duckdb tuning (before / after, same run)",
        "",
        f"`meltano run tap-ashby target-duckdb` with the current settings and with "
        f"`batch_size_rows` set through `TARGET_DUCKDB_BATCH_SIZE_ROWS` (declared in "
        f"meltano.yml, so the environment reaches the target), interleaved, "
        f"{tuning['reps']} run(s) each, medians; every run loads into a fresh DuckDB "
        f"file with a fresh state backend (a first, full load). Current target config "
        f"(`meltano config print target-duckdb`, path left out): `{cfg}`; target-duckdb "
        "0.8.0's default `batch_size_rows` is 100,000 (it buffers up to that many rows "
        "per stream in memory, then loads them with one CSV COPY + UPDATE + INSERT "
        "(+ DELETE with hard_delete)).",
        "",
    ]
    base = next((s for s in tuning["summary"] if s["label"] == "current"), None)
    rows = []
    for s in tuning["summary"]:
        if not s.get("runs"):
            rows.append([s["label"], "0", "-", "-", "-", "-", "-", "-", "-", "-"])
            continue

        def delta(key: str, s: dict[str, Any] = s) -> str:
            if not base or s is base or not base.get(key) or s.get(key) is None:
                return ""
            return f" ({100 * (s[key] / base[key] - 1):+.0f}%)"

        rows.append(
            [
                s["label"],
                _n(s["runs"]),
                f"{_n(s['wall_s'], 2)}{delta('wall_s')}",
                ", ".join(_n(w, 1) for w in s.get("walls", [])),
                _n(s.get("tap_running_s"), 2),
                _n(s.get("target_tail_s"), 2),
                _n(s.get("target_cpu_s"), 2),
                f"{_n(s.get('target_rss_mb'))}{delta('target_rss_mb')}",
                str(s.get("rows")),
                _n(s.get("other_cpu_util"), 2),
            ]
        )
    out += _table(
        [
            "target settings",
            "runs",
            "wall s (median)",
            "each run s",
            "tap running s",
            "target after tap exit s",
            "target CPU s",
            "target peak RSS MB",
            "rows loaded",
            "other CPU",
        ],
        rows,
        "lrrrrrrrlr",
    )
    return out
