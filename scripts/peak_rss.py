#!/usr/bin/python3
"""Runs a command and reports its wall time and peak resident set size.

    peak_rss.py [--json FILE] [--label NAME] -- COMMAND [ARG...]

The command's stdout/stderr pass through unchanged; its exit status is returned. Peak RSS is ru_maxrss of
the child as reported by os.wait4 (the largest RSS of that process itself, in KiB on Linux; grandchildren
the command starts and waits for are included by the kernel's accounting only if they are its largest).
One summary line goes to stderr:
    peak_rss: label=NAME rc=0 wall_s=12.345 peak_rss_mib=812.4
and, with --json, {"label", "rc", "wall_s", "peak_rss_kib"} is written to FILE.
Needs only the standard library (any python3 works).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--label", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command)
    except OSError as error:
        print(f"peak_rss: cannot run {command[0]}: {error}", file=sys.stderr)
        return 127
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    rc = process.returncode if process.returncode >= 0 else 128 - process.returncode
    peak_kib = usage.ru_maxrss  # KiB on Linux
    print(f"peak_rss: label={args.label or os.path.basename(command[0])} rc={rc} wall_s={wall:.3f} "
          f"peak_rss_mib={peak_kib / 1024:.1f}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "rc": rc, "wall_s": wall, "peak_rss_kib": peak_kib}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
