#!/usr/bin/env python3
"""Tests of report.py on a synthetic results directory (no fio, no root).

Run: python3 tools/bench/test_report.py
"""

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (path set up above)


def fio_document(iops, bw_bytes, io_bytes, total_ios, direction="read"):
    section = {"iops": iops, "bw_bytes": bw_bytes, "io_bytes": io_bytes, "total_ios": total_ios}
    other = {"iops": 0, "bw_bytes": 0, "io_bytes": 0, "total_ios": 0}
    job = {"jobname": "x", "error": 0, direction: section}
    job["write" if direction == "read" else "read"] = other
    return {"fio version": "fio-3.33", "jobs": [job]}


class ResultsDir:
    """Builds the files run.sh would write, for a chosen set of results."""

    def __init__(self, root, targets, jobs):
        self.root = Path(root)
        (self.root / "targets").mkdir()
        (self.root / "targets.list").write_text("\n".join(targets) + "\n")
        (self.root / "jobs.list").write_text("\n".join(jobs) + "\n")
        (self.root / "system.env").write_text(
            "date_utc=2026-11-24 00:00:00\nmode=quick\nrepeats=3\nloadavg_before=0.10 0.10 0.10\nloadavg_after=2.00 1.00 0.50\n"
        )
        for target in targets:
            (self.root / "targets" / f"{target}.info").write_text(f"mount_desc=test {target}\n")

    def add_info(self, target, line):
        with open(self.root / "targets" / f"{target}.info", "a") as info:
            info.write(line + "\n")

    def add_run(self, target, job, rep, document, status=0, meta_extra=""):
        raw = self.root / "raw" / target
        raw.mkdir(parents=True, exist_ok=True)
        (raw / f"{job}.rep{rep}.json").write_text(json.dumps(document) if document is not None else "")
        (raw / f"{job}.rep{rep}.err").write_text("" if status == 0 else "fio: something broke\n")
        (raw / f"{job}.rep{rep}.meta").write_text(f"status={status}\nclock_ticks_per_second=100\n{meta_extra}")


class ReportTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_median_and_ratio_to_xfs_use_the_same_run(self):
        results = ResultsDir(self.tmp.name, ["cowdax", "xfs"], ["randread-4k-direct"])
        for rep, iops in enumerate([100.0, 300.0, 200.0], 1):
            results.add_run("xfs", "randread-4k-direct", rep, fio_document(iops, 0, 4096, 1))
        for rep, iops in enumerate([50.0, 150.0, 100.0], 1):
            results.add_run("cowdax", "randread-4k-direct", rep, fio_document(iops, 0, 4096, 1))
        _, summary, *_ = report.build(results.root)
        row = summary["rows"][0]
        self.assertEqual(row["targets"]["xfs"]["median"], 200.0)
        self.assertEqual(row["targets"]["cowdax"]["median"], 100.0)
        self.assertEqual((row["targets"]["cowdax"]["min"], row["targets"]["cowdax"]["max"]), (50.0, 150.0))
        self.assertAlmostEqual(row["targets"]["cowdax"]["ratio_to_xfs"], 0.5)

    def test_best_fuse_peer_is_the_fastest_peer_per_job(self):
        results = ResultsDir(self.tmp.name, ["cowdax", "bindfs", "passthrough_ll", "null"], ["randwrite-4k-direct"])
        figures = {"cowdax": 90.0, "bindfs": 60.0, "passthrough_ll": 120.0, "null": 100.0}
        for target, iops in figures.items():
            results.add_run(target, "randwrite-4k-direct", 1, fio_document(iops, 0, 4096, 1, "write"))
        _, summary, *_ = report.build(results.root)
        row = summary["rows"][0]
        self.assertEqual(row["best_fuse_peer"], "passthrough_ll")
        self.assertAlmostEqual(row["targets"]["cowdax"]["ratio_to_best_fuse"], 0.75)
        self.assertAlmostEqual(row["targets"]["cowdax"]["ratio_to_null"], 0.9)

    def test_issue_targets_are_checked_for_cowdax_and_each_variant(self):
        results = ResultsDir(self.tmp.name, ["cowdax", "cowdax@direct_io", "null"], ["randwrite-4k-direct"])
        figures = {"cowdax": 70.0, "cowdax@direct_io": 90.0, "null": 100.0}
        for target, iops in figures.items():
            results.add_run(target, "randwrite-4k-direct", 1, fio_document(iops, 0, 4096, 1, "write"))
        markdown, summary, *_ = report.build(results.root)
        label = "randwrite-4k-direct within 1.3× of null (≥ 0.77× its rate)"
        verdicts = {
            subject: next(c for c in checks if c["check"] == label)
            for subject, checks in summary["variant_checks"].items()
        }
        self.assertAlmostEqual(verdicts["cowdax"]["ratio"], 0.7)
        self.assertFalse(verdicts["cowdax"]["met"])
        self.assertAlmostEqual(verdicts["cowdax@direct_io"]["ratio"], 0.9)
        self.assertTrue(verdicts["cowdax@direct_io"]["met"])
        self.assertEqual(summary["checks"][0]["check"], next(iter(summary["variant_checks"]["cowdax"]))["check"])
        self.assertIn("cowdax@direct_io: ratio", markdown)

    def test_megabyte_jobs_report_mib_per_second_summed_over_jobs(self):
        results = ResultsDir(self.tmp.name, ["tmpfs"], ["seqread-1m-buffered-2jobs"])
        document = fio_document(0, 2 * 1024 * 1024, 1 << 20, 1)
        document["jobs"].append(fio_document(0, 3 * 1024 * 1024, 1 << 20, 1)["jobs"][0])
        results.add_run("tmpfs", "seqread-1m-buffered-2jobs", 1, document)
        _, summary, *_ = report.build(results.root)
        self.assertAlmostEqual(summary["rows"][0]["targets"]["tmpfs"]["median"], 5.0)

    def test_not_applicable_and_failed_jobs_are_named_with_their_reason(self):
        results = ResultsDir(self.tmp.name, ["null", "bindfs"], ["randread-4k-direct", "metadata"])
        results.add_info("null", "na.metadata=the null fs serves one file")
        results.add_run("null", "randread-4k-direct", 1, fio_document(10.0, 0, 4096, 1))
        results.add_run("bindfs", "randread-4k-direct", 1, None, status=1)
        markdown, summary, *_ = report.build(results.root)
        states = {(entry["row"], target): data["state"] for entry in summary["rows"] for target, data in entry["targets"].items()}
        self.assertEqual(states[("metadata-create", "null")], "n/a")
        self.assertEqual(states[("randread-4k-direct", "bindfs")], "failed")
        self.assertIn("the null fs serves one file", markdown)
        self.assertIn("fio: something broke", markdown)

    def test_an_unavailable_target_marks_every_job_with_why(self):
        results = ResultsDir(self.tmp.name, ["cowdax", "xfs"], ["randread-4k-direct"])
        results.add_info("cowdax", "unavailable=no cowdax binary")
        results.add_run("xfs", "randread-4k-direct", 1, fio_document(10.0, 0, 4096, 1))
        markdown, summary, *_ = report.build(results.root)
        self.assertEqual(summary["rows"][0]["targets"]["cowdax"]["state"], "n/a")
        self.assertIn("target unavailable: no cowdax binary", markdown)

    def test_only_the_load_before_the_run_judges_idleness(self):
        # The synthetic run has load 0.10 before and 2.00 after: the after
        # figure is the run's own work, so no warning.
        results = ResultsDir(self.tmp.name, ["tmpfs"], ["randread-4k-direct"])
        results.add_run("tmpfs", "randread-4k-direct", 1, fio_document(10.0, 0, 4096, 1))
        markdown, *_ = report.build(results.root)
        self.assertNotIn("**Warning:** load average", markdown)
        self.assertIn("| load average after (includes the run's own last minute) | 2.00 1.00 0.50 |", markdown)

    def test_busy_machine_before_the_run_is_reported(self):
        results = ResultsDir(self.tmp.name, ["tmpfs"], ["randread-4k-direct"])
        env = results.root / "system.env"
        env.write_text(env.read_text().replace("loadavg_before=0.10 0.10 0.10", "loadavg_before=1.50 1.00 0.80"))
        results.add_run("tmpfs", "randread-4k-direct", 1, fio_document(10.0, 0, 4096, 1))
        markdown, *_ = report.build(results.root)
        self.assertIn("load average before the run was 1.50", markdown)

    def test_daemon_cpu_is_charged_per_gib_moved(self):
        results = ResultsDir(self.tmp.name, ["bindfs"], ["seqwrite-1m-direct"])
        results.add_info("bindfs", "daemon=yes")
        results.add_run(
            "bindfs", "seqwrite-1m-direct", 1, fio_document(0, 1 << 20, 2 << 30, 2048, "write"),
            meta_extra="daemon_ticks_before=100\ndaemon_ticks_after=150\n",
        )
        markdown, *_ = report.build(results.root)
        # 0.5 CPU seconds for 2 GiB.
        self.assertIn("0.25 s/GiB", markdown)

    def test_cowdax_counters_are_reported_per_operation(self):
        results = ResultsDir(self.tmp.name, ["cowdax"], ["randwrite-4k-direct"])
        before = json.dumps({"bytes_stored": 0, "bytes_persisted": 0, "lines_flushed": 0, "fences": 10, "msyncs": 0})
        after = json.dumps({"bytes_stored": 8192, "bytes_persisted": 4096, "lines_flushed": 64, "fences": 14, "msyncs": 0})
        results.add_run(
            "cowdax", "randwrite-4k-direct", 1, fio_document(1.0, 0, 8192, 2, "write"),
            meta_extra=f"counters_before={before}\ncounters_after={after}\n",
        )
        markdown, *_ = report.build(results.root)
        # Counters of a daemon without idle polling: that column is empty.
        self.assertIn("| 4 KiB random write, O_DIRECT, psync | 4096.00 | 2048.00 | 32.00 | 2.00 | 0.00 | – |", markdown)

    def test_idle_polling_is_reported_per_job(self):
        results = ResultsDir(self.tmp.name, ["cowdax"], ["randwrite-4k-direct"])
        zero = {"bytes_stored": 0, "bytes_persisted": 0, "lines_flushed": 0, "fences": 0, "msyncs": 0}
        before = json.dumps(dict(zero, idle_poll_engagements=3, idle_poll_ms=100))
        after = json.dumps(dict(zero, idle_poll_engagements=4, idle_poll_ms=5100))
        results.add_run(
            "cowdax", "randwrite-4k-direct", 1, fio_document(1.0, 0, 8192, 2, "write"),
            meta_extra=f"counters_before={before}\ncounters_after={after}\n",
        )
        markdown, *_ = report.build(results.root)
        self.assertIn("| 0.00 | 1, 5000 ms |", markdown)

    def test_copy_job_rate_is_file_size_over_time(self):
        results = ResultsDir(self.tmp.name, ["xfs"], ["copy"])
        results.add_run("xfs", "copy", 1, {"bytes": 64 << 20, "seconds": 0.5})
        _, summary, *_ = report.build(results.root)
        self.assertAlmostEqual(summary["rows"][0]["targets"]["xfs"]["median"], 128.0)

    def test_chart_is_well_formed_svg_with_one_cell_per_target_and_row(self):
        results = ResultsDir(self.tmp.name, ["cowdax", "xfs"], ["randread-4k-direct", "metadata"])
        results.add_run("xfs", "randread-4k-direct", 1, fio_document(10.0, 0, 4096, 1))
        results.add_run("cowdax", "randread-4k-direct", 1, fio_document(20.0, 0, 4096, 1))
        _, summary, targets, rows, cells = report.build(results.root)
        svg = report.render_svg(targets, rows, cells, summary["system"])
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(svg)
        rects = [element for element in root.iter() if element.tag.endswith("rect")]
        self.assertEqual(len(rects), 1 + len(targets) * len(rows))
        self.assertIn("2.00×", svg)


if __name__ == "__main__":
    unittest.main()
