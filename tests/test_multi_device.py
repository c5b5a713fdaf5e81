"""tests/multidevice/ on 8 CPU devices, in an interpreter of its own (XLA fixes the device count at start-up).

The rest of the suite runs with one device, as a user's process does. The inner run takes this run's marker
expression (`-m "not slow"` runs the inner quick tests only); a failure shows the inner run's report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_multi_device_tests_pass_on_eight_cpu_devices(request, tmp_path):
    env = {**os.environ, "BERTCLS_TEST_DEVICES": "8"}
    lane = ["-m", request.config.option.markexpr] if request.config.option.markexpr else []
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/multidevice",
        *lane,
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "--basetemp",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
