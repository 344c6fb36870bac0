#!/usr/bin/python3
"""scripts/compare-verify-reports.py against its stated tolerances, on a real oscar-verify report (the committed
stories260K zoo entry's verify.json): a report equals itself; changes inside the tolerances pass; a KL, a
perplexity, a top-1 agreement or a bits-per-element change outside them fails with a FAIL line naming it."""
import copy
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare-verify-reports.py"
REPORT = next(ROOT.glob("zoo/stories260K/*/verify.json"))


def run(cpu, cuda):
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, report in (("cpu.json", cpu), ("cuda.json", cuda)):
            path = Path(tmp) / name
            path.write_text(json.dumps(report))
            paths.append(str(path))
        done = subprocess.run([sys.executable, str(SCRIPT), *paths], capture_output=True, text=True)
        return done.returncode, done.stdout


def text_method(report, method):
    return next(d for d in report["datasets"] if d["kind"] == "text")["methods"][method]


class CompareVerifyReports(unittest.TestCase):
    def setUp(self):
        self.report = json.loads(REPORT.read_text())

    def changed(self, method, key, factor=None, delta=None):
        other = copy.deepcopy(self.report)
        entry = text_method(other, method)
        entry[key] = entry[key] * factor if factor is not None else entry[key] + delta
        return other

    def test_a_report_equals_itself(self):
        code, out = run(self.report, self.report)
        self.assertEqual(code, 0, out)
        self.assertNotIn("FAIL", out)

    def test_changes_within_tolerance_pass(self):
        other = self.changed("oscar", "kl_mean", factor=1.03)  # 3 % < 5 %
        text_method(other, "naive")["perplexity"] *= 1.01  # 1 % < 2 %
        text_method(other, "hadamard")["top1_agreement"] += 2.0  # 2 < 2.5 points
        code, out = run(self.report, other)
        self.assertEqual(code, 0, out)

    def test_each_change_outside_tolerance_fails(self):
        for method, key, factor, delta in (("oscar", "kl_mean", 1.10, None), ("naive", "perplexity", 1.05, None),
                                           ("hadamard", "top1_agreement", None, 3.0),
                                           ("oscar", "bits_per_element", None, 0.01)):
            with self.subTest(key=key):
                code, out = run(self.report, self.changed(method, key, factor, delta))
                self.assertEqual(code, 1, out)
                self.assertRegex(out, rf"FAIL .* {method} {key}:")

    def test_a_missing_dataset_is_an_error(self):
        other = copy.deepcopy(self.report)
        other["datasets"].pop()
        code, _ = run(self.report, other)
        self.assertNotEqual(code, 0)


if __name__ == "__main__":
    unittest.main()
