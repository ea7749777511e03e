"""make bench's plumbing (not its speeds: no timed unit tests): every row has its baseline, ratio and
goal, and the Markdown table is made from the JSON rows."""

import json
import subprocess
import sys

from .conftest import REPO


def test_bench_quick_writes_rows_and_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- generated:bench:start -->\nold\n<!-- generated:bench:end -->\ny\n")
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--out", str(tmp_path),
                           "--readme", str(readme)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "bench.json").read_text())
    kinds = {r["kind"] for r in rows}
    assert {"loop vs articles' loop", "loop vs roofline", "nesterov step vs torch.optim",
            "2 threads vs 1"} <= kinds
    for r in rows:
        assert abs(r["ratio"] - r["measured"] / r["baseline"]) <= 0.01 * r["ratio"] + 1e-3
        assert r["device"] and r["torch"] and r["goal"] and isinstance(r["met"], bool)
    table = (tmp_path / "bench.md").read_text()
    assert len(table.splitlines()) == len(rows) + 2
    assert table in readme.read_text() and "old" not in readme.read_text()
