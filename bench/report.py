"""Rendering the results as Markdown (bench/results/report.md)."""

from __future__ import annotations

from typing import Any

TARGET_RATIO = 0.8


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


def full_sync_table(results: dict[str, Any]) -> list[str]:
    ceilings = _ceiling_index(results)
    rows = []
    for case in results.get("full_sync", []):
        f, t = case["floor"], case["tap"]
        ratio = case.get("ratio")
        ratio_s = _n(ratio, 2)
        if ratio is not None and ratio < TARGET_RATIO:
            ratio_s = f"**{ratio_s}** (< {TARGET_RATIO})"
        ceil = ceilings.get((case["n"], case["stream"]), {})
        req = t.get("requests")
        req_s = f"{_n(req)} ({_n(case['expected_requests'])})"
        if req is not None and req != case["expected_requests"]:
            req_s = f"**{_n(req)}** ({_n(case['expected_requests'])})"
        checks = []
        if not (f["ok"] and t["ok"]):
            checks.append("FAILED run")
        if f["ok"] and t["ok"] and not (f["records_ok"] and t["records_ok"]):
            checks.append("record count off")
        rows.append([
            _n(case["n"]), case["stream"] + (f" ({', '.join(checks)})" if checks else ""),
            _n(ceil.get("records_per_s")), _n(f.get("records_per_s")),
            _n(t.get("records_per_s")), ratio_s, _n(f.get("wall_s"), 1),
            _n(t.get("wall_s"), 1), _n(f.get("cpu_us_per_record")),
            _n(t.get("cpu_us_per_record")), _n(case.get("ratio_cpu"), 2), req_s,
            _n(f.get("max_rss_mb")), _n(t.get("max_rss_mb")),
            _n(t.get("emulator_cpu_util"), 2),
            f"{_n(f.get('other_cpu_util'), 2)} / {_n(t.get('other_cpu_util'), 2)}",
            _n(case.get("speed_drift_pct"), 1), _n(case["reps"])])
    head = ["candidates", "stream", "emulator ceiling rec/s", "floor rec/s", "tap rec/s",
            "tap/floor", "floor wall s", "tap wall s", "floor CPU us/rec", "tap CPU us/rec",
            "floor/tap CPU", "tap requests (exp.)", "floor RSS MB", "tap RSS MB",
            "emulator CPU (tap run)", "other CPU floor / tap", "speed drift %", "runs"]
    return _table(head, rows)


def ceiling_table(results: dict[str, Any]) -> list[str]:
    rows = [[_n(c["n"]), c["endpoint"], _n(c.get("pages")), _n(c.get("pages_per_s"), 1),
             _n(c.get("records_per_s")), _n((c.get("bytes_per_page") or 0) / 1024),
             _n(c.get("emulator_cpu_util"), 2)] if c.get("ok") else
            [_n(c["n"]), c["endpoint"], "FAILED", "-", "-", "-", "-"]
            for c in results.get("ceiling", [])]
    head = ["candidates", "endpoint", "pages timed", "pages/s", "rec/s", "KB/page",
            "emulator CPU"]
    return _table(head, rows)


def probe_lines(results: dict[str, Any]) -> list[str]:
    probes = results.get("probe") or []
    if not probes:
        return []
    parts = [f"{p['n']:,} candidates: {p['keep_alive_ms']} ms keep-alive vs "
             f"{p['new_connection_ms']} ms on a new connection" for p in probes]
    fan = (results.get("fan_out") or {}).get("probe")
    if fan:
        parts.append(f"fan-out emulator (with its added latency): {fan['keep_alive_ms']} ms "
                     f"keep-alive vs {fan['new_connection_ms']} ms new connection")
    return ["", "Small-answer round trip (candidate.list with limit 1, 20 calls): "
            + "; ".join(parts) + ". Both should be about 1 ms (plus any added latency); a "
            "keep-alive figure about 40 ms higher is a Nagle/delayed-ACK stall in the emulator "
            "(headers and body in two writes without TCP_NODELAY), which slows every small "
            "answer, i.e. the fan-out case (see bench/README.md)."]


def incremental_table(results: dict[str, Any]) -> list[str]:
    full = {(c["n"], c["stream"]): c for c in results.get("full_sync", [])}
    rows = []
    for case in results.get("incremental", []):
        ref = full.get((case["n"], case["stream"]), {}).get("tap", {})
        for step in case.get("steps", []):
            rec, req = step.get("records"), step.get("requests")
            rows.append([
                _n(case["n"]), f"{step['fraction']:.1%}", _n(step["changed"]),
                _n(step.get("mutate_s"), 1), _n(step.get("wall_s"), 2),
                _n(step.get("sync_s"), 2),
                f"{_n(rec)} ({_n(step['expected_records'])})" if rec == step[
                    "expected_records"] else f"**{_n(rec)}** ({_n(step['expected_records'])})",
                f"{_n(req)} ({_n(step['expected_requests'])})" if req == step[
                    "expected_requests"] else f"**{_n(req)}** ({_n(step['expected_requests'])})",
                _n(step.get("incremental")), _n(ref.get("wall_s"), 1)])
    head = ["candidates", "changed", "records changed", "mutation s", "tap wall s",
            "tap sync s", "records (exp.)", "requests (exp.)", "incremental pass",
            "full sync wall s"]
    return _table(head, rows)


def meltano_section(results: dict[str, Any]) -> list[str]:
    m = results.get("meltano")
    if not m:
        return ["(not run)"]
    out = []
    chk = m.get("env_check", {})
    out.append(f"Environment check (`meltano select tap-ashby --list`, `meltano config print "
               f"tap-ashby`): `TAP_ASHBY__SELECT` gave patterns {chk.get('select_patterns')} "
               f"and selected streams {chk.get('selected_streams')} -> "
               f"**{'works' if chk.get('select_ok') else 'DOES NOT WORK'}**; base_url from "
               f"`TAP_ASHBY_BASE_URL` {'ok' if chk.get('config_base_url_ok') else 'WRONG'}, "
               f"requests_per_minute from `TAP_ASHBY_REQUESTS_PER_MINUTE` "
               f"{'ok' if chk.get('config_rpm_ok') else 'WRONG'}.")
    out.append("")
    run = m.get("run", {})
    b = run.get("breakdown", {})
    total = run.get("wall_s") or 0.0

    def share(x: float | None) -> str:
        return f"{_n(x, 2)} s ({100 * x / total:.0f}%)" if x is not None and total else "-"

    alone = m.get("tap_alone", {})
    target = m.get("target_alone", {})
    rows = [
        ["`meltano run tap-ashby target-duckdb` total", share(total) if total else "-",
         f"rc {run.get('rc')}, rows loaded {run.get('rows')}, "
         f"{_n(run.get('requests'))} API requests"],
        ["meltano start-up + catalog discovery (until the syncing tap starts)",
         share(b.get("meltano_start_and_discovery_s")),
         f"discovery tap CPU {_n(b.get('discovery_cpu_s'), 2)} s"],
        ["tap process running (target loading concurrently)", share(b.get("tap_running_s")),
         f"tap CPU {_n(b.get('tap_cpu_s'), 2)} s"],
        ["target still running after the tap exited", share(
            b.get("target_only_after_tap_exit_s")),
         f"target CPU over the whole run {_n(b.get('target_cpu_s'), 2)} s"],
        ["meltano after the target exited (state write, exit)",
         share(b.get("meltano_after_target_exit_s")),
         f"meltano's own CPU {_n(b.get('meltano_cpu_s'), 2)} s"],
        ["tap alone, same selection, stdout to /dev/null", f"{_n(alone.get('wall_s'), 2)} s",
         f"sync {_n(alone.get('sync_s'), 2)} s, CPU {_n(alone.get('cpu_s'), 2)} s, "
         f"{_n(alone.get('records'))} records"],
        ["target alone, same Singer stream from a file", f"{_n(target.get('wall_s'), 2)} s",
         f"CPU {_n(target.get('cpu_s'), 2)} s, input {_n(target.get('input_mb'), 1)} MB, "
         f"rows {target.get('rows')}"],
    ]
    out += _table([f"phase ({m['n']:,} candidates: candidates + applications)", "wall",
                   "detail"], rows, "lrl")
    if b and total:
        tap_cpu, tgt_cpu = b.get("tap_cpu_s") or 0.0, b.get("target_cpu_s") or 0.0
        out += ["", f"CPU split between the two plugins: tap {tap_cpu:.1f} s "
                f"({100 * tap_cpu / max(1e-9, tap_cpu + tgt_cpu):.0f}%), target {tgt_cpu:.1f} s "
                f"({100 * tgt_cpu / max(1e-9, tap_cpu + tgt_cpu):.0f}%)."]
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
        rows.append([
            _n(budget) if budget else "unlimited", _n(r["concurrency"]),
            f"{_n(r.get('records'))} ({_n(f['expected_records'])})",
            f"{_n(r.get('requests'))} ({_n(f['expected_requests'])})",
            _n(r.get("sync_s"), 2), _n(r.get("wall_s"), 2), _n(r.get("requests_per_s"), 1),
            (f"**{per_s}** > {budget / 60:.0f}" if over else
             f"{per_s} (budget {budget / 60:.0f})" if budget else str(per_s)),
            f"{r.get('max_in_flight')} (cap {r['concurrency']})",
            "ok" if r.get("ok") else f"FAILED: {r.get('error', '')[:80]}"])
    head = ["budget req/min", "max_concurrency", "records (exp.)", "requests (exp.)",
            "stream s", "wall s", "req/s", "max req in one second", "max in flight", "run"]
    return _table(head, rows)


def profile_section(results: dict[str, Any]) -> list[str]:
    p = results.get("profile")
    if not p:
        return ["(not run)"]
    run = p.get("run", {})
    a = p.get("analysis")
    out = [f"`python -m cProfile -o bench/results/tap.prof -m tap_ashby.tap` on "
           f"{_n(run.get('n'))} candidates: {_n(run.get('wall_s'), 1)} s under the profiler, "
           f"{_n(run.get('records'))} records, {_n(run.get('requests'))} requests."]
    if not a:
        return [*out, "", "(no profile: " + str(run.get("error")) + ")"]
    total = a["total_s"]
    out += ["", f"Top 15 by cumulative time (profiled total {total:.1f} s):", ""]
    out += _table(["function", "ncalls", "tottime s", "cumtime s", "cum %"],
                  [[f"`{e['function']}`", _n(e["ncalls"]), _n(e["tottime"], 2),
                    _n(e["cumtime"], 2), _n(e["cum_pct"], 1)] for e in a["top_cumulative"]])
    out += ["", "Top 15 by own (self) time:", ""]
    out += _table(["function", "ncalls", "tottime s", "self %"],
                  [[f"`{e['function']}`", _n(e["ncalls"]), _n(e["tottime"], 2),
                    _n(e["self_pct"], 1)] for e in a["top_self"]])
    out += ["", "Own time by package:", ""]
    out += _table(["package", "self s", "%"],
                  [[x["package"], _n(x["self_s"], 2), _n(x["pct"], 1)]
                   for x in a["by_package"][:12]])
    out += ["", "Per-record / per-page functions of the SDK, the tap and requests "
            "(cumulative):", ""]
    out += _table(["function", "ncalls", "cumtime s", "cum %"],
                  [[f"`{e['function']}`", _n(e["ncalls"]), _n(e["cumtime"], 2),
                    _n(e["cum_pct"], 1)] for e in a["watched"]])
    hot = a.get("hot_self_non_io") or []
    if hot:
        h = hot[0]
        out += ["", f"Largest own-time entry outside socket I/O and imports: `{h['function']}` "
                f"({h['tottime']:.2f} s, {h['self_pct']:.1f}% of the profile)."]
    over = a.get("overhead") or []
    if over:
        out += ["", "Per-record work the floor does not do (cumulative; the removable part of "
                "the hot path):", ""]
        out += _table(["function", "ncalls", "cumtime s", "cum %"],
                      [[f"`{e['function']}`", _n(e["ncalls"]), _n(e["cumtime"], 2),
                        _n(e["cum_pct"], 1)] for e in over])
        top = over[0]
        out += ["", f"**Largest remaining cost in the hot path: `{top['function']}`, "
                f"{top['cum_pct']:.1f}% of the profiled run** ({top['cumtime']:.2f} s "
                f"cumulative over {top['ncalls']:,} calls)."]
    return out


def shortfalls(results: dict[str, Any]) -> list[str]:
    out = []
    for case in results.get("full_sync", []):
        ratio = case.get("ratio")
        if ratio is not None and ratio < TARGET_RATIO:
            out.append(f"- {case['stream']} at {case['n']:,}: tap/floor = {ratio:.2f}")
    return out or [f"- none: the tap reaches at least {TARGET_RATIO}x the floor everywhere "
                   "it was measured"]


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
    code = meta.get("code") or {}
    if code:
        what = (f"a copy taken at the start (digest {code['snapshot']})" if code.get("snapshot")
                else f"the live working tree (digest {code.get('tree_at_start')})")
        lines.append(f"Code measured: tap_ashby/ and schemas/ from {what}.")
        if code.get("tree_at_end") and code["tree_at_end"] != code.get("tree_at_start"):
            lines.append("**The working tree changed during the run** (digest at the end "
                         f"{code['tree_at_end']})" + ("; the copy kept every case on the "
                                                      "start version." if code.get("snapshot")
                                                      else ": cases may mix versions."))
    if meta.get("skipped"):
        lines += ["", "**Skipped (deadline or --only):** " + ", ".join(meta["skipped"])]
    lines += [
        "", "## Full sync: floor vs tap-ashby", "",
        "rec/s = records / the client's own sync time (floor: its paging loop; tap: the "
        "stream's time in its summary log), median of the runs; tap/floor = tap rec/s / floor "
        "rec/s (the goal is >= 0.8). Wall = the whole process, interpreter start and imports "
        "included. CPU us/rec = the client process's user+system CPU / records (start-up "
        "included; the emulator's time is not in it), so floor/tap CPU compares the clients' "
        "own work. Requests are counted by the emulator; expected = ceil(N/100). Emulator CPU "
        "= the emulator process's CPU / the tap run's wall time (1.0 = one core busy). Other "
        "CPU = what the rest of the machine used meanwhile (/proc/stat busy time minus client "
        "and emulator), per second of the run: above ~0.1 the run shared the 2 cores with "
        "other work and its numbers are noisy. Speed drift = how much the box's speed (a fixed "
        "Python loop timed before and after every run of the row) varied across the row's "
        "runs: the host's load changes over minutes, invisibly, and above ~10% the ratio of "
        "that row is as much the machine as the code.",
        "",
        *full_sync_table(results),
        "", "Below 0.8x the floor:", "", *shortfalls(results),
        "", "## Emulator ceiling (trivial http.client pager, no JSON parse)", "",
        *ceiling_table(results),
        *probe_lines(results),
        "", "## Incremental (candidates; 0.1% then 1% of candidates updated)", "",
        *incremental_table(results),
        "", "## meltano run tap-ashby target-duckdb", "",
        *meltano_section(results),
        "", "## Fan-out: application_history (one application.listHistory per application)",
        "",
    ]
    f = results.get("fan_out")
    if f:
        lines += [f"Emulator with `--latency {f['latency_s']}` and {f['applications']:,} "
                  "applications (capped to keep the run bounded); the emulator counts requests "
                  "per wall-clock second and the peak in flight.", ""]
    lines += [*fan_out_table(results), "", "## Profile of the tap", "",
              *profile_section(results), ""]
    return "\n".join(lines)
