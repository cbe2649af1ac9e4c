"""The served API under a property-based OpenAPI fuzzer (schemathesis, pinned).

Schemathesis reads the served ``/docs.json`` and sends generated requests to every route:
documented examples, boundary and schema-violating values (its coverage phase), random
valid and invalid data, and stateful sequences (create, then read, change, delete). It
checks every answer: no 5xx, a documented status, the documented content type, headers and
body schema, schema-violating requests refused, the key enforced where the document
declares it, undocumented methods answered 405 with an exact ``Allow``.

``make test`` gives it ``MLOPS_FUZZ_SECONDS`` (default 20) against the session's server
(the one tests/test_service.py uses; this test runs after every other one);
``make fuzz`` gives it 300. With ``MLOPS_API_URL`` set, it fuzzes that API instead (CI runs
it against the served image), with the key from ``MLOPS_API_KEY``.

The same run measures the server's log: one line per client error, no traceback.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SERVICE_KEY

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

SECONDS = int(os.environ.get("MLOPS_FUZZ_SECONDS", "20"))
#: Every check but ``positive_data_acceptance``: a schema-valid record or log can still be
#: refused by the store's rules (a dataset's columns, a log's field lengths), with a
#: documented 400 naming the field; schema-violating requests must be refused (checked).
EXCLUDED_CHECKS = "positive_data_acceptance"


@dataclass
class Target:
    url: str
    key: str | None
    log: Path | None  # the server's log, when started here


@pytest.fixture(scope="module")
def target(request):
    url = os.environ.get("MLOPS_API_URL", "").strip()
    if url:
        return Target(url.rstrip("/"), os.environ.get("MLOPS_API_KEY") or None, None)
    # The server tests/test_service.py used (this test runs last: see conftest.py).
    server = request.getfixturevalue("service_server")
    return Target(server.url, SERVICE_KEY, server.log)


def run_schemathesis(target: Target, seconds: int, report: Path) -> subprocess.CompletedProcess:
    """Run ``st run`` against the target's ``/docs.json``; its HAR report goes to ``report``.

    One worker: with two, hypothesis (describing a filter) and schemathesis' coverage phase
    call ``ast.parse`` from both threads, and Python 3.11.7's AST constructor, which keeps
    its recursion depth in state the threads share, failed the run with "SystemError: AST
    constructor recursion depth mismatch" (CPython gh-106905), an error of the fuzzer's own.
    """
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{target.url}/docs.json",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--max-time", str(seconds), "--workers", "1",
        "--request-timeout", "30", "--max-failures", "20",
        "--report", "har", "--report-har-path", str(report),
        "--output-truncate", "true",
    ]  # fmt: skip
    if seed := os.environ.get("MLOPS_FUZZ_SEED"):
        command += ["--seed", seed]
    if target.key:
        command += ["--header", f"X-API-Key: {target.key}"]
    env = {**os.environ, "NO_COLOR": "1"}
    # In the report's folder: schemathesis keeps its cache (it replays the crashes it found
    # before) and hypothesis its database in the working directory, never in the checkout.
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        env=env,
        cwd=report.parent,
    )


def test_no_server_error_and_every_answer_as_documented(target, tmp_path):
    if target.log is not None:
        before = target.log.read_bytes().count(b"\n")
    report = tmp_path / "fuzz.har"
    completed = run_schemathesis(target, SECONDS, report)
    output = completed.stdout + completed.stderr
    print(output[-6000:])
    assert completed.returncode == 0, output[-20000:]
    entries = json.loads(report.read_text())["log"]["entries"]
    statuses = collections.Counter(entry["response"]["status"] for entry in entries)
    operations = {(e["request"]["method"], e["request"]["url"].split("?")[0]) for e in entries}
    print(f"requests: {len(entries):,}; by status: {dict(sorted(statuses.items()))}")
    assert len(entries) >= 200, "the fuzzer sent too few requests to mean anything"
    assert not any(status >= 500 for status in statuses)
    assert sum(n for status, n in statuses.items() if 400 <= status < 500) > 100
    assert len(operations) >= 21  # every documented operation, at least
    if target.log is None:
        return  # another API's log is not ours to read

    # -- the server's log over the run: one line per client error, and nothing else --------
    time.sleep(1.0)  # the last lines reach the file
    lines = target.log.read_bytes().decode("utf-8", "replace").split("\n")[before:-1]
    client_errors = [line for line in lines if " -> 4" in line]
    # uvicorn answers a malformed HTTP request (a header it cannot parse) itself, in one line.
    unparsable = [line for line in lines if "Invalid HTTP request received" in line]
    others = [line for line in lines if line not in client_errors and line not in unparsable]
    fourxx = sum(n for status, n in statuses.items() if 400 <= status < 500)
    ratio = (len(client_errors) + len(unparsable)) / fourxx
    print(
        f"log: {len(lines):,} lines for {fourxx:,} 4xx answers in the report "
        f"({ratio:.3f} a client error; the checks' own extra requests are not in the "
        f"report); other lines: {len(others)}"
    )
    assert not others, "\n".join(others[:20])
    assert not any("Traceback" in line or "[ERROR]" in line for line in lines)
    assert all(("[INFO]" in line or "[WARNING]" in line) for line in client_errors)
    # Each line is one request: never two lines per error (the checks add a few requests).
    assert 1.0 <= ratio <= 1.05, ratio
