#!/usr/bin/env python3
"""Benchmark of `visionbatch run-once` through the stand-in servers.

Runs N runs x M images of B bytes each through the real binary and reports
wall time and the peak resident memory (RSS) of the visionbatch process.
The default "memory" suite shows that memory stays flat as images grow:
ten 50 KB images versus ten 50 MB images in one run.

  python3 tests/bench/bench_run_once.py                 # memory suite + throughput
  python3 tests/bench/bench_run_once.py --quick         # the same shape, small (CI)
  python3 tests/bench/bench_run_once.py --runs 20 --images 5 --bytes 200000

Needs a built tree (VB_BIN_DIR, default ./build).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
import harness  # noqa: E402


def run_case(n_runs, n_images, image_bytes, batch_delay=0.0, concurrency=4):
    tmp = tempfile.mkdtemp(prefix="vb-bench-")
    platform = harness.PlatformStub(scenario=harness.make_scenario(
        n_runs, n_images, image_bytes=image_bytes, seed="bench"),
        log_path=os.path.join(tmp, "platform.log"))
    backend = harness.BackendStub(polls_to_complete=1, batch_delay=batch_delay,
                                  log_path=os.path.join(tmp, "backend.log"))
    platform.start()
    backend.start()
    try:
        cfg = harness.processor_config(platform, backend)
        cfg.update({"log_file": os.path.join(tmp, "bench.log"), "temp_dir": os.path.join(tmp, "w"),
                    "status_poll_min_ms": 20, "status_poll_max_ms": 200,
                    "download_concurrency": concurrency,
                    "max_document_bytes": max(image_bytes * 2, 1 << 20)})
        path = harness.write_config(os.path.join(tmp, "cfg.json"), cfg)
        binary = harness.require_binary("visionbatch")
        t0 = time.monotonic()
        err_path = os.path.join(tmp, "stderr")
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([binary, "run-once", "--config", path],
                                    stdout=subprocess.DEVNULL, stderr=err)
            # wait4 gives the resource usage of exactly this child.
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        peak_kb = usage.ru_maxrss
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(err_path, errors="replace") as f:
                sys.stderr.write(f.read()[-3000:])
            raise SystemExit("run-once failed (exit %d)" % code)
        uploads = [u for u in platform.uploads() if u["status"] == 200]
        assert len(uploads) == n_runs, (len(uploads), n_runs)
        return wall, peak_kb
    finally:
        platform.stop()
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--images", type=int)
    ap.add_argument("--bytes", type=int)
    ap.add_argument("--batch-delay", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true",
                    help="small cases for CI: 4 x 50 KB vs 4 x 5 MB images, 4 runs")
    args = ap.parse_args()
    if args.runs:
        cases = [(args.runs, args.images or 5, args.bytes or 50_000)]
    elif args.quick:
        cases = [(1, 4, 50_000), (1, 4, 5_000_000), (4, 3, 20_000)]
    else:
        cases = [(1, 10, 50_000), (1, 10, 50_000_000), (20, 5, 200_000)]
    print("%-8s %-8s %-12s %10s %14s" % ("runs", "images", "image bytes", "wall s", "peak RSS MB"))
    for n, m, b in cases:
        # each case in a fresh interpreter so ru_maxrss is per case
        if len(cases) > 1:
            out = subprocess.run([sys.executable, __file__, "--runs", str(n), "--images", str(m),
                                  "--bytes", str(b), "--batch-delay", str(args.batch_delay)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(1)
            print(out.stdout.strip().splitlines()[-1])
            continue
        wall, peak_kb = run_case(n, m, b, args.batch_delay)
        print("%-8d %-8d %-12d %10.2f %14.1f" % (n, m, b, wall, peak_kb / 1024.0))


if __name__ == "__main__":
    main()
