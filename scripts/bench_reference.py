#!/usr/bin/python3
"""Benchmark entry point for the Python float64 reference calibration (in-memory, like the public
OSCAR rotation/compute_kv_rotation.py): loads every chunk of a layer in float64 and concatenates them.

    bench_reference.py --dump D --out DIR [--method qqt_sst] [--composition r_h_pbr] [...]

Same options as tests/python/reference_calibration.py, which does the work; prints one line per layer with
its wall time. Must run with the Debian python (/usr/bin/python3, torch 1.13).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import reference_calibration  # noqa: E402

if __name__ == "__main__":
    sys.exit(reference_calibration.main(sys.argv[1:]))
