"""`make bench`: runs every benchmark script in this folder, shows their figures as they come
and writes them, with the date and the machine, to tests/bench/RESULTS.md.

Run: .venv/bin/python tests/bench/run_all.py [name ...]   (names: e.g. heap cpu; default all)

`loaded` (issue 15's acceptance: `meterctl demo` and `meterctl calibrate` 10 times each
while 4 busy processes load the machine) takes the longest: about half an hour on a
2-core machine, with the machine fully loaded meanwhile; `run_all.py loaded` runs it alone.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mp = Path(sys.executable).parent / "micropython"
    try:
        banner = subprocess.run([str(mp), "-c", "import sys; print(sys.version, sys.implementation._build)"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        banner = "not found"
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs; "
            f"CPython {platform.python_version()}; MicroPython unix port: {banner}")


def run(script: Path) -> tuple[int, str, float]:
    """Run one benchmark, echoing its output; (exit code, output, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        out.append(line)
    return proc.wait(), "".join(out), time.monotonic() - t0


def old_sections() -> dict[str, str]:
    """The sections of the RESULTS.md there is, by benchmark name."""
    if not RESULTS.exists():
        return {}
    parts = RESULTS.read_text().split("\n## ")[1:]
    return {p.split("\n", 1)[0].strip(): "## " + p.rstrip() + "\n" for p in parts}


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = [p for p in sorted(HERE.glob("*.py")) if p.name not in ("run_all.py", "__init__.py", "fake_board.py")]
    if wanted:
        unknown = wanted - {p.stem for p in scripts}
        if unknown:
            print(f"run_all.py: no benchmark named {', '.join(sorted(unknown))} "
                  f"(have: {', '.join(p.stem for p in scripts)})")
            return 2
        scripts = [p for p in scripts if p.stem in wanted]
    started = dt.datetime.now(dt.UTC)
    sections: dict[str, str] = {}
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        rc, out, secs = run(script)
        failed += rc != 0
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        sections[script.stem] = (f"## {script.stem}\n\n`{script.name}`: {status}, {secs:.0f} s of wall time, "
                                 f"run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n```\n{out.rstrip()}\n```\n")
    if wanted:  # a partial run keeps the other benchmarks' last figures
        sections = {**old_sections(), **sections}
    head = (f"# Benchmark results\n\nWritten by `make bench` (tests/bench/run_all.py), last on "
            f"{started:%Y-%m-%d %H:%M} UTC.\n\nMachine: {machine()}.\n\n"
            "Every figure below was printed by the script named in its section, in the run its "
            "heading line dates; each script's docstring says what it measures and how.\n\n")
    RESULTS.write_text(head + "\n".join(sections[k] for k in sorted(sections)))
    print(f"== wrote {RESULTS.relative_to(HERE.parents[1])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
