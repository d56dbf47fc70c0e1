"""Preparation speed and memory on real JPEGs: the CIFAR-10 JPEG copy in ../shared/data.

Extracts the archive once (not timed), then prepares the 10,000 test and the 50,000 training JPEGs
to 64 px with every core, each in a fresh process, and prints wall time, images/s and the peak
memory of the whole process tree (main + workers, sampled every 20 ms from /proc). The two sizes
show whether memory stays flat as the dataset grows. Targets: 50k in <= 60 s, peak <= 1 GB.

    python benchmarks/bench_prepare.py [--resolution 64] [--workers 0] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "cifar10-jpeg-q75.tar.gz"
OUT = ROOT / "benchmarks" / "out"


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        p = pending.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(command: list[str]) -> tuple[float, int]:
    peak = 0
    start = time.perf_counter()
    process = subprocess.Popen(command)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        sys.exit(f"prepare failed with exit code {code}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the prepared datasets (bench_reader uses them)")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} not found: this benchmark needs ../shared/data beside the checkout.")
    source = OUT / "cifar10-jpeg-src"
    if not (source / "cifar10_jpeg" / "train").exists():
        print(f"extracting {ARCHIVE.name} (not timed) ...")
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(source, filter="data")

    rows = []
    for split in ("test", "train"):
        target = OUT / f"cifar10-{split}-{args.resolution}"
        shutil.rmtree(target, ignore_errors=True)
        command = [sys.executable, "-m", "ganforge", "prepare", str(source / "cifar10_jpeg" / split), str(target),
                   "--resolution", str(args.resolution), "--workers", str(args.workers), "--quiet"]
        elapsed, peak = run_measured(command)
        count = sum(1 for _ in (source / "cifar10_jpeg" / split).rglob("*.jpg"))
        rows.append((split, count, elapsed, count / elapsed, peak / 2**20))
        if not args.keep and split == "test":
            shutil.rmtree(target)

    print(f"\nprepare to {args.resolution} px, workers={args.workers or 'all cores'}")
    print(f"{'split':>6} {'files':>7} {'seconds':>8} {'images/s':>9} {'peak MiB (tree)':>16}")
    for split, count, elapsed, rate, peak in rows:
        print(f"{split:>6} {count:>7,} {elapsed:>8.1f} {rate:>9,.0f} {peak:>16,.0f}")
    ratio = rows[1][4] / rows[0][4]
    print(f"peak memory 50k / 10k: {ratio:.2f} (1.0 = flat in dataset size)")


if __name__ == "__main__":
    main()
