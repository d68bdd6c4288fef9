#!/usr/bin/env python3
"""Renders the results of tools/bench/run.sh into a Markdown report, a JSON
summary and an SVG chart (python3 standard library only).

Usage: report.py RESULTS_DIR

RESULTS_DIR is what run.sh wrote: system.env, targets.list, jobs.list,
targets/TARGET.info and raw/TARGET/JOB.repN.{json,err,meta}. Writes
report.md, summary.json and chart.svg into it.

Every figure is a rate where higher is better (IOPS, MiB/s, operations/s),
so every ratio reads the same way: above 1 the target is faster than the
reference. Medians are over the repeats; min-max shows their spread.
"""

import json
import math
import statistics
import sys
from pathlib import Path

KERNEL_TARGETS = ("tmpfs", "xfs", "ext4", "btrfs")
FUSE_PEERS = ("fuse2fs", "bindfs", "passthrough_ll")
FLOOR = "null"
BASELINE = "xfs"
# The load average (1 min) above which the machine is reported as not idle.
IDLE_LOAD_MAX = 0.5

# Figure rows: (row id, job that produces it, what the figure is, unit).
FIO_ROWS = [
    ("randread-4k-direct", "4 KiB random read, O_DIRECT, psync", "IOPS"),
    ("randwrite-4k-direct", "4 KiB random write, O_DIRECT, psync", "IOPS"),
    ("randread-4k-buffered", "4 KiB random read, buffered", "IOPS"),
    ("randread-4k-cached", "4 KiB random re-read, file read once before", "IOPS"),
    ("randwrite-4k-buffered", "4 KiB random write, buffered", "IOPS"),
    ("randwrite-4k-fsync", "4 KiB random write + fsync each", "IOPS"),
    ("seqread-8k-buffered", "8 KiB sequential read, buffered", "MiB/s"),
    ("seqread-1m-buffered", "1 MiB sequential read, buffered", "MiB/s"),
    ("seqwrite-1m-buffered", "1 MiB sequential write, buffered", "MiB/s"),
    ("seqread-1m-direct", "1 MiB sequential read, O_DIRECT", "MiB/s"),
    ("seqwrite-1m-direct", "1 MiB sequential write, O_DIRECT", "MiB/s"),
    ("randread-4k-uring-qd16", "4 KiB random read, io_uring QD16, O_DIRECT", "IOPS"),
    ("randwrite-4k-direct-2jobs", "2 jobs: 4 KiB random write, O_DIRECT, own files", "IOPS"),
    ("seqread-1m-buffered-2jobs", "2 jobs: 1 MiB sequential read, buffered, own files", "MiB/s"),
    ("mmap-randread-4k", "mmap: 4 KiB random read", "IOPS"),
    ("mmap-randwrite-4k", "mmap: 4 KiB random write", "IOPS"),
]
COPY_ROW = ("copy", "cp of a fio file (cloned where offered)", "MiB/s")
META_ROWS = [
    ("metadata-create", "create + write 4 KiB + close", "files/s", "create_per_second"),
    ("metadata-stat", "stat", "files/s", "stat_per_second"),
    ("metadata-unlink", "unlink", "files/s", "unlink_per_second"),
]
COUNTER_NAMES = ("bytes_stored", "bytes_persisted", "lines_flushed", "fences", "msyncs")
# Idle-polling counters (mount option idle_poll): reported per job, not per op.
IDLE_POLL_NAMES = ("idle_poll_engagements", "idle_poll_ms")


def read_env(path):
    """key=value lines (values may contain '='); missing file -> {}."""
    values = {}
    if not path.exists():
        return values
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def load_json_text(text):
    """fio may print warnings before its JSON: parse from the first '{'."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in output")
    return json.loads(text[start:])


def fio_figures(document, unit):
    """Sum over fio's job entries: the rate in `unit`, bytes moved, I/Os."""
    rate = 0.0
    io_bytes = 0
    total_ios = 0
    for job in document.get("jobs", []):
        if job.get("error", 0):
            raise ValueError(f"fio job error {job.get('error')}")
        for direction in ("read", "write"):
            section = job.get(direction, {})
            io_bytes += int(section.get("io_bytes", 0))
            total_ios += int(section.get("total_ios", 0))
            if unit == "IOPS":
                rate += float(section.get("iops", 0.0))
            else:
                rate += float(section.get("bw_bytes", 0.0)) / (1024 * 1024)
    if total_ios == 0:
        raise ValueError("fio reported no I/O")
    return rate, io_bytes, total_ios


def parse_counters(text):
    if not text:
        return None
    try:
        values = load_json_text(text)
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    return {name: values[name] for name in COUNTER_NAMES + IDLE_POLL_NAMES if isinstance(values.get(name), (int, float))}


class Cell:
    """One target x row: the per-repeat values, or why there are none."""

    def __init__(self):
        self.values = []
        self.failures = []
        self.na_reason = None
        self.note = None
        self.cpu_seconds = []  # daemon CPU seconds per repeat
        self.io_bytes = []
        self.ops = []
        self.counter_deltas = []  # dicts per repeat

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    def state(self):
        if self.values:
            return "ok"
        if self.na_reason:
            return "n/a"
        return "failed"


def collect(results_dir):
    targets = (results_dir / "targets.list").read_text().split()
    infos = {target: read_env(results_dir / "targets" / f"{target}.info") for target in targets}
    cells = {}
    rows = [(row, job, text, unit) for row, text, unit in FIO_ROWS for job in [row]]
    rows += [(COPY_ROW[0], "copy", COPY_ROW[1], COPY_ROW[2])]
    rows += [(row, "metadata", text, unit) for row, text, unit, _ in META_ROWS]
    meta_keys = {row: key for row, _, _, key in META_ROWS}
    # Only the jobs this run had (older results directories lack newer jobs).
    jobs_list = results_dir / "jobs.list"
    if jobs_list.exists():
        jobs_run = set(jobs_list.read_text().split())
        rows = [entry for entry in rows if entry[1] in jobs_run]
    for target in targets:
        info = infos[target]
        for row, job, _, unit in rows:
            cell = Cell()
            cells[(target, row)] = cell
            if "unavailable" in info:
                cell.na_reason = "target unavailable: " + info["unavailable"]
                continue
            cell.na_reason = info.get(f"na.{job}")
            cell.note = info.get(f"note.{job}")
            raw_dir = results_dir / "raw" / target
            for output in sorted(raw_dir.glob(f"{job}.rep*.json")):
                stem = output.name[: -len(".json")]
                meta = read_env(raw_dir / f"{stem}.meta")
                error_text = (raw_dir / f"{stem}.err").read_text(errors="replace") if (raw_dir / f"{stem}.err").exists() else ""
                if meta.get("status", "1") != "0":
                    last = [line for line in error_text.splitlines() if line.strip()][-1:]
                    cell.failures.append(f"exit {meta.get('status', '?')}: {' '.join(last)[:160]}")
                    continue
                try:
                    document = load_json_text(output.read_text(errors="replace"))
                    if job == "copy":
                        io_bytes = int(document["bytes"])
                        value = io_bytes / (1024 * 1024) / max(float(document["seconds"]), 1e-9)
                        ops = 1
                    elif job == "metadata":
                        value = float(document[meta_keys[row]])
                        io_bytes = int(document["files"]) * int(document["file_bytes"])
                        ops = int(document["files"])
                    else:
                        value, io_bytes, ops = fio_figures(document, unit)
                except (ValueError, KeyError, TypeError) as error:
                    cell.failures.append(f"unreadable result: {error}")
                    continue
                cell.values.append(value)
                cell.io_bytes.append(io_bytes)
                cell.ops.append(ops)
                ticks_before = meta.get("daemon_ticks_before", "")
                ticks_after = meta.get("daemon_ticks_after", "")
                ticks_per_second = float(meta.get("clock_ticks_per_second", "100") or 100)
                if ticks_before.isdigit() and ticks_after.isdigit():
                    cell.cpu_seconds.append((int(ticks_after) - int(ticks_before)) / ticks_per_second)
                before = parse_counters(meta.get("counters_before", ""))
                after = parse_counters(meta.get("counters_after", ""))
                if before and after:
                    cell.counter_deltas.append({name: after[name] - before[name] for name in after if name in before})
    return targets, infos, rows, cells


def fmt_rate(value):
    if value is None:
        return "–"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def fmt_ratio(value):
    if value is None:
        return "–"
    if value >= 10:
        return f"{value:.0f}×"
    return f"{value:.2f}×"


def reference_value(cells, reference, row):
    cell = cells.get((reference, row))
    return cell.median if cell else None


def best_fuse_peer(cells, targets, row):
    candidates = [(cells[(t, row)].median, t) for t in targets if t in FUSE_PEERS and cells[(t, row)].median]
    return max(candidates) if candidates else (None, None)


def ratio(value, reference):
    if value is None or not reference:
        return None
    return value / reference


def build(results_dir):
    system = read_env(results_dir / "system.env")
    targets, infos, rows, cells = collect(results_dir)
    footnotes = []

    def footnote(text):
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"

    def cell_text(target, row):
        cell = cells[(target, row)]
        state = cell.state()
        if state == "n/a":
            return "n/a " + footnote(f"{target}: {cell.na_reason}")
        if state == "failed":
            reason = "; ".join(sorted(set(cell.failures))) or "no result"
            return "failed " + footnote(f"{target} {row}: {reason}")
        text = fmt_rate(cell.median)
        if len(cell.values) > 1:
            text += f" ({fmt_rate(min(cell.values))}–{fmt_rate(max(cell.values))})"
        if cell.failures:
            text += " " + footnote(f"{target} {row}: {len(cell.failures)} of the repeats failed: {cell.failures[0]}")
        if cell.note:
            text += " " + footnote(f"{target}: {cell.note}")
        return text

    lines = []
    add = lines.append
    add("# cowdax side-by-side benchmark")
    add("")
    mode = system.get("mode", "?")
    if mode == "quick":
        add("> **Smoke run (`--quick`)**: small files and 1-second jobs. Figures are noisy and only show that every target and job runs; do not quote them as performance.")
        add("")
    if system.get("run_note"):
        add(f"> **Note:** {system['run_note']}")
        add("")
    load_before = system.get("loadavg_before", "?")
    load_after = system.get("loadavg_after", "?")
    # Only the load before the run says whether something else was busy: the
    # load after includes the run's own last minute (fio plus a daemon keep
    # one to two CPUs busy), so it is shown but not judged.
    warnings = []
    try:
        one_minute = float(load_before.split()[0])
    except (ValueError, IndexError):
        one_minute = None
    if one_minute is not None and one_minute > IDLE_LOAD_MAX:
        warnings.append(f"load average before the run was {one_minute:.2f} (> {IDLE_LOAD_MAX}): the machine was not idle, figures include interference")
    for warning in warnings:
        add(f"> **Warning:** {warning}.")
    if warnings:
        add("")
    add("| | |")
    add("|---|---|")
    for key, label in (
        ("date_utc", "date (UTC)"), ("kernel", "kernel"), ("cpu", "CPU"), ("cpus", "CPUs"),
        ("memory", "memory"), ("fio", "fio"), ("mode", "mode"), ("repeats", "repeats"), ("order", "order of the runs"),
        ("file_size", "fio file size (each of 2 files)"), ("runtime_seconds", "seconds per fio job"),
        ("settle_seconds", "idle seconds before each job (--settle)"),
        ("poll_idle", "idle CPUs poll for every target (--poll-idle)"),
        ("cpuidle", "cpuidle driver/governor; guest halt polling"),
        ("meta_files", "files in the metadata job"), ("git_commit", "harness commit (git HEAD of the checkout)"),
        ("cowdax_binary", "cowdax binary"), ("cowdax_version", "cowdax --version"),
        ("cowdax_binary_mtime", "cowdax binary built (UTC)"), ("cowdax_build_note", "cowdax built from"),
        ("fuse_max_pages_limit", "fs.fuse.max_pages_limit"),
    ):
        if key.startswith("cowdax_") and not system.get(key):
            continue  # no cowdax binary, or no build note given
        add(f"| {label} | {system.get(key, '?')} |")
    add(f"| load average before | {load_before} |")
    add(f"| load average after (includes the run's own last minute) | {load_after} |")
    add("")
    add("## Targets and mount options")
    add("")
    add("| target | how it is set up | fstype and options (findmnt) | read-ahead | status |")
    add("|---|---|---|---|---|")
    for target in targets:
        info = infos[target]
        status = "unavailable: " + info["unavailable"] if "unavailable" in info else "ok"
        if "fsck" in info:
            status += f"; image after the run: {info['fsck']}"
        add(
            f"| {target} | {info.get('mount_desc', '–')} | {info.get('findmnt', '–')} "
            f"| {info.get('readahead', '–')} | {status} |"
        )
    add("")
    add("## Results (median, min–max over the repeats)")
    add("")
    add("Higher is better everywhere. Rates are IOPS for 4 KiB jobs, MiB/s for sequential jobs and cp, files/s for metadata.")
    add("")
    add("| job | unit | " + " | ".join(targets) + " |")
    add("|---|---|" + "---|" * len(targets))
    for row, _, text, unit in rows:
        add(f"| {text} | {unit} | " + " | ".join(cell_text(t, row) for t in targets) + " |")
    add("")

    summary = {"system": system, "targets": targets, "rows": [], "checks": []}
    ratio_tables = []
    for title, reference_of in (
        ("XFS on a loop device", lambda row: (reference_value(cells, BASELINE, row), BASELINE)),
        ("the best FUSE peer (fuse2fs, bindfs, passthrough_ll) for that job", lambda row: best_fuse_peer(cells, targets, row)),
        ("libfuse's null fs (the FUSE round-trip floor)", lambda row: (reference_value(cells, FLOOR, row), FLOOR)),
    ):
        table = [f"### Ratio to {title}", "", "| job | reference | " + " | ".join(targets) + " |", "|---|---|" + "---|" * len(targets)]
        for row, _, text, _ in rows:
            reference, reference_name = reference_of(row)
            ratios = [fmt_ratio(ratio(cells[(t, row)].median, reference)) for t in targets]
            table.append(f"| {text} | {reference_name or '–'} | " + " | ".join(ratios) + " |")
        ratio_tables.append("\n".join(table))
    add("## Ratios")
    add("")
    add("Each figure divided by the reference's median in the same run: above 1× is faster than the reference.")
    add("")
    for table in ratio_tables:
        add(table)
        add("")

    for row, job, text, unit in rows:
        entry = {"row": row, "job": job, "what": text, "unit": unit, "targets": {}}
        xfs_median = reference_value(cells, BASELINE, row)
        null_median = reference_value(cells, FLOOR, row)
        best_value, best_name = best_fuse_peer(cells, targets, row)
        for target in targets:
            cell = cells[(target, row)]
            entry["targets"][target] = {
                "state": cell.state(),
                "values": cell.values,
                "median": cell.median,
                "min": min(cell.values) if cell.values else None,
                "max": max(cell.values) if cell.values else None,
                "ratio_to_xfs": ratio(cell.median, xfs_median),
                "ratio_to_best_fuse": ratio(cell.median, best_value),
                "ratio_to_null": ratio(cell.median, null_median),
                "na_reason": cell.na_reason,
                "failures": cell.failures,
                "note": cell.note,
            }
        entry["best_fuse_peer"] = best_name
        summary["rows"].append(entry)

    # Daemon cost: CPU seconds per GiB moved (fio) or µs per file (metadata).
    daemon_targets = [t for t in targets if infos[t].get("daemon") == "yes"]
    if daemon_targets:
        add("## FUSE daemon cost")
        add("")
        add("CPU time (user + system, all threads) the daemon spent during each job, median over repeats: seconds per GiB moved for fio jobs, µs per file for the metadata phases. Peak RSS is the daemon's VmHWM at the end of its runs.")
        add("")
        add("| job | " + " | ".join(daemon_targets) + " |")
        add("|---|" + "---|" * len(daemon_targets))
        for row, job, text, _ in rows:
            texts = []
            for target in daemon_targets:
                cell = cells[(target, row)]
                if not cell.cpu_seconds or len(cell.cpu_seconds) != len(cell.io_bytes):
                    texts.append("–")
                    continue
                if job == "metadata":
                    # The three phases share one process run: the whole run's
                    # CPU per file, shown once, in the first phase's row.
                    if row != META_ROWS[0][0]:
                        texts.append("(above)")
                        continue
                    per = [cpu / max(ops, 1) * 1e6 for cpu, ops in zip(cell.cpu_seconds, cell.ops)]
                    texts.append(f"{statistics.median(per):.0f} µs/file (create+stat+unlink)")
                elif job == "copy":
                    per = [cpu / (moved / 2**30) for cpu, moved in zip(cell.cpu_seconds, cell.io_bytes) if moved]
                    texts.append(f"{statistics.median(per):.2f} s/GiB copied" if per else "–")
                else:
                    per = [cpu / (moved / 2**30) for cpu, moved in zip(cell.cpu_seconds, cell.io_bytes) if moved]
                    texts.append(f"{statistics.median(per):.2f} s/GiB" if per else "–")
            add(f"| {text} | " + " | ".join(texts) + " |")
        add("| peak RSS | " + " | ".join(
            (f"{int(infos[t]['daemon_hwm_kib_final']) / 1024:.1f} MiB" if infos[t].get("daemon_hwm_kib_final", "").isdigit() else "–")
            for t in daemon_targets) + " |")
        add("")

    add("## cowdax persistence work per operation")
    add("")
    cowdax_targets = [t for t in targets if t.split("@")[0] == "cowdax"]
    with_counters = [t for t in cowdax_targets if any(cells[(t, row)].counter_deltas for row, *_ in rows)]
    if with_counters:
        add("Media counters (DESIGN.md §3) read from the daemon before and after each job, divided by the job's operations (fio I/Os, files for metadata, one per copy), median over repeats. The last column: how often during the job the daemon asked the kernel to keep idle CPUs polling (mount option idle_poll, docs/FUSE.md) and for how many milliseconds in all, median over repeats. On DRAM-emulated pmem stores are cheaper than on real pmem: these counts are the honest measure of persistence effort.")
        add("")
    for target in with_counters:
        if len(cowdax_targets) > 1:
            add(f"### {target}")
            add("")
        add("| job | " + " | ".join(f"{name}/op" for name in COUNTER_NAMES) + " | idle polling held (times, ms) |")
        add("|---|" + "---|" * (len(COUNTER_NAMES) + 1))
        for row, _, text, _ in rows:
            cell = cells[(target, row)]
            if not cell.counter_deltas:
                continue
            per_op = []
            for name in COUNTER_NAMES:
                samples = [deltas[name] / max(ops, 1) for deltas, ops in zip(cell.counter_deltas, cell.ops) if name in deltas]
                per_op.append(f"{statistics.median(samples):.2f}" if samples else "–")
            held = [(deltas["idle_poll_engagements"], deltas["idle_poll_ms"]) for deltas in cell.counter_deltas
                    if "idle_poll_engagements" in deltas and "idle_poll_ms" in deltas]
            if held:
                per_op.append(f"{statistics.median(h[0] for h in held):.0f}, {statistics.median(h[1] for h in held):.0f} ms")
            else:
                per_op.append("–")
            add(f"| {text} | " + " | ".join(per_op) + " |")
        add("")
    if not with_counters:
        add("Not available in this run: the cowdax daemon does not expose its media counters yet. Hook: `cowdax_counters` in tools/bench/run.sh runs `$COWDAX_COUNTERS_CMD MNT` (or `cowdax counters --json MNT` when the binary has that subcommand) before and after each job; it must print one JSON object with the fields of `media::Counters` (" + ", ".join(COUNTER_NAMES) + ").")
    add("")

    # The targets of issue 6, checked against this run, for cowdax and for
    # every cowdax@OPTIONS variant in it (one column each).
    def checks_for(subject):
        checks = []

        def check(label, numerator_row, denominator_target, denominator_row, minimum):
            denominator_target = subject if denominator_target is None else denominator_target
            value = ratio(reference_value(cells, subject, numerator_row), reference_value(cells, denominator_target, denominator_row))
            checks.append({"check": label, "ratio": value, "minimum": minimum, "met": None if value is None else value >= minimum})

        for row in ("seqread-1m-buffered", "seqwrite-1m-buffered", "seqread-1m-direct", "seqwrite-1m-direct"):
            check(f"{row} ≥ 0.6× XFS", row, "xfs", row, 0.6)
            check(f"{row} ≥ 5× fuse2fs", row, "fuse2fs", row, 5.0)
        for row in ("randread-4k-direct", "randwrite-4k-direct"):
            check(f"{row} ≥ 1.2× bindfs", row, "bindfs", row, 1.2)
            check(f"{row} ≥ 1.0× passthrough_ll", row, "passthrough_ll", row, 1.0)
            check(f"{row} within 1.3× of null (≥ 0.77× its rate)", row, "null", row, 1 / 1.3)
        for row in ("metadata-create", "metadata-stat", "metadata-unlink"):
            check(f"{row} ≥ 2× bindfs", row, "bindfs", row, 2.0)
            check(f"{row} ≥ 1.0× passthrough_ll", row, "passthrough_ll", row, 1.0)
        check("cp of a file within 2× of XFS's reflink cp (≥ 0.5× its rate)", "copy", "xfs", "copy", 0.5)
        check("2-job 4 KiB randwrite ≥ 1.6× one job", "randwrite-4k-direct-2jobs", None, "randwrite-4k-direct", 1.6)
        return checks

    subjects = [t for t in targets if t.split("@")[0] == "cowdax"]
    checks = checks_for("cowdax") if "cowdax" in targets else []
    variant_checks = {subject: checks_for(subject) for subject in subjects}
    if subjects:
        add("## cowdax against the targets of issue 6")
        add("")
        if mode == "quick" or warnings:
            add("> These verdicts come from a smoke run and/or a busy machine: they show the check works, not where cowdax stands. Use a full run on an idle machine.")
            add("")
        add("| target | " + " | ".join(f"{s}: ratio | met?" for s in subjects) + " |")
        add("|---|" + "---|---|" * len(subjects))
        for index, item in enumerate(variant_checks[subjects[0]]):
            cells_text = []
            for subject in subjects:
                entry = variant_checks[subject][index]
                met = "–" if entry["met"] is None else ("yes" if entry["met"] else "**no**")
                cells_text.append(f"{fmt_ratio(entry['ratio'])} | {met}")
            add(f"| {item['check']} | " + " | ".join(cells_text) + " |")
        add("")
        add("Measured by other tools: mount time with 1M inodes and daemon DRAM per extent (`tools/bench/mount_scale.sh`), `cp` time against file size and dedupe (`tools/bench-reflink.sh`).")
        add("")
    summary["checks"] = checks
    summary["variant_checks"] = variant_checks

    if footnotes:
        add("## Notes")
        add("")
        for number, text in enumerate(footnotes, 1):
            add(f"{number}. {text}")
        add("")
    add("Chart: `chart.svg` (ratio to XFS per job and target, log scale).")
    add("")
    return "\n".join(lines), summary, targets, rows, cells


def svg_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_svg(targets, rows, cells, system):
    """Heat map: one row per figure, one column per target, cell colour by
    log2(ratio to XFS) (blue faster, red slower), ratio printed inside."""
    label_width = 430
    cell_width = 100
    cell_height = 24
    top = 84
    width = max(label_width + cell_width * len(targets) + 20, 900)
    height = top + cell_height * len(rows) + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">cowdax benchmark: ratio to XFS on loop (median of {svg_escape(system.get("repeats", "?"))} repeats; higher is better)</text>',
        f'<text x="10" y="40" fill="#444">{svg_escape(system.get("date_utc", ""))} UTC · {svg_escape(system.get("kernel", ""))} · {svg_escape(system.get("cpu", ""))} × {svg_escape(system.get("cpus", "?"))} · mode {svg_escape(system.get("mode", "?"))}</text>',
    ]
    for column, target in enumerate(targets):
        x = label_width + column * cell_width + cell_width / 2
        name, _, options = target.partition("@")
        parts.append(f'<text x="{x:.0f}" y="{top - 8}" text-anchor="middle" font-weight="bold">{svg_escape(name)}</text>')
        if options:
            # Variant options on a line of their own, above the name.
            parts.append(f'<text x="{x:.0f}" y="{top - 22}" text-anchor="middle" font-size="9">{svg_escape(options.replace("+", ","))}</text>')
    for index, (row, _, text, unit) in enumerate(rows):
        y = top + index * cell_height
        baseline = reference_value(cells, BASELINE, row)
        xfs_text = f", XFS {fmt_rate(baseline)}" if baseline else ""
        parts.append(f'<text x="10" y="{y + 16}">{svg_escape(text)} ({svg_escape(unit)}{svg_escape(xfs_text)})</text>')
        for column, target in enumerate(targets):
            x = label_width + column * cell_width
            cell = cells[(target, row)]
            value = ratio(cell.median, baseline)
            if value is None:
                fill, label = "#eeeeee", ("n/a" if cell.state() == "n/a" else ("failed" if cell.state() == "failed" else "–"))
            else:
                # Saturate at 16× either way.
                strength = max(-1.0, min(1.0, math.log2(value) / 4))
                if strength >= 0:
                    shade = int(255 - 160 * strength)
                    fill = f"rgb({shade},{shade},255)"
                else:
                    shade = int(255 + 160 * strength)
                    fill = f"rgb(255,{shade},{shade})"
                label = fmt_ratio(value)
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_width - 2}" height="{cell_height - 2}" fill="{fill}"/>')
            parts.append(f'<text x="{x + cell_width / 2 - 1:.0f}" y="{y + 16}" text-anchor="middle">{svg_escape(label)}</text>')
    legend_y = top + len(rows) * cell_height + 20
    parts.append(f'<text x="10" y="{legend_y}" fill="#444">Cell: each target’s median divided by the XFS median in the same run. Colour: log2 of that ratio,</text>')
    parts.append(f'<text x="10" y="{legend_y + 16}" fill="#444">blue = faster than XFS, red = slower, saturating at 16×. Grey: not run (n/a) or failed; report.md says why.</text>')
    if system.get("mode") == "quick":
        parts.append(f'<text x="10" y="{legend_y + 34}" fill="#b00">Smoke run (--quick): small files, 1 s jobs, noisy figures on a shared machine; not performance claims.</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS_DIR", file=sys.stderr)
        return 1
    results_dir = Path(sys.argv[1])
    if not (results_dir / "targets.list").exists():
        print(f"report.py: {results_dir} has no targets.list (not a run.sh results directory)", file=sys.stderr)
        return 1
    markdown, summary, targets, rows, cells = build(results_dir)
    (results_dir / "report.md").write_text(markdown)
    (results_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (results_dir / "chart.svg").write_text(render_svg(targets, rows, cells, summary["system"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
