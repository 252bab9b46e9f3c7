"""`mpsrnn bench` runs and writes well-formed JSON (timings live in bench/, never in a test)."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(*args):
    """``mpsrnn bench ARGS`` in this process (click's runner): its kernels compile once for the whole
    test session (in a subprocess of a fresh clone, with Taichi's cache cold, the smoke suite alone
    took 4.5 minutes of CI). The result's ``output`` holds stdout and stderr; ``exit_code`` is the
    command's (``test_project`` runs ``python -m mpsrnn`` itself, its help listing ``bench``)."""
    from click.testing import CliRunner

    from mpsrnn.cli import main
    return CliRunner().invoke(main, ["bench", *args])


def test_smoke_suite_writes_one_record_per_configuration(tmp_path):
    from mpsrnn.benchmark import SUITES
    out = tmp_path / "smoke.json"
    r = _bench("--suite", "smoke", "--repeats", "1", "--warmup", "0", "--json", str(out))
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert {"date", "arch", "device", "taichi", "mpsrnn"} <= set(data["environment"])
    records = data["records"]
    assert len(records) == len(SUITES["smoke"])
    for rec, cfg in zip(records, SUITES["smoke"]):
        assert rec["label"] == cfg.label and rec["mpsrnn"]["median_us"] > 0
        assert rec["ratio"] > 0 and rec["torch"]["median_us"] > 0
        assert rec["ratio"] == rec["mpsrnn"]["median_us"] / rec["torch"]["median_us"]
        settles = rec["arch"] == "cpu" or (rec["arch"] == "vulkan" and rec["torch_device"] == "cuDNN")
        assert rec["settled"] is settles
        if rec["same_math"]:
            assert rec["max_abs_diff_vs_torch"] < 1e-4   # a timing never hides a wrong result
    assert all(cfg.label in r.output for cfg in SUITES["smoke"])

    # a run cut short after 4 configurations, resumed: only the other 2 run, the 4 are kept as they were
    data["records"] = records[:4]
    out.write_text(json.dumps(data))
    r = _bench("--suite", "smoke", "--repeats", "1", "--warmup", "0", "--json", str(out), "--resume")
    assert r.exit_code == 0, r.output
    assert f"resuming: 4 of {len(SUITES['smoke'])}" in r.output
    assert not any(cfg.label in r.output for cfg in SUITES["smoke"][:4])
    resumed = json.loads(out.read_text())
    assert resumed["records"][:4] == records[:4]
    assert [rec["label"] for rec in resumed["records"]] == [cfg.label for cfg in SUITES["smoke"]]


def test_resume_needs_a_json_file_of_the_same_suite(tmp_path):
    r = _bench("--suite", "smoke", "--resume")
    assert r.exit_code != 0 and "--resume needs --json and --suite" in r.output
    other = tmp_path / "stacks.json"
    other.write_text(json.dumps({"suite": "stacks", "records": []}))
    r = _bench("--suite", "smoke", "--json", str(other), "--resume")
    assert r.exit_code != 0 and "holds suite 'stacks', not 'smoke'" in r.output


def test_single_configuration_and_gru_note():
    r = _bench("--cell", "gru", "--hidden", "16", "--batch", "2", "--steps", "4", "--repeats", "1", "--warmup", "0")
    assert r.exit_code == 0, r.output
    assert "gru 16->16 b2 t4" in r.output and "not same math" in r.output


def test_suites_are_what_the_issue_names():
    from mpsrnn.benchmark import SUITES
    assert set(SUITES) == {"smoke", "deepbench-inference", "small-hidden", "large-batch", "stacks"}
    deep = SUITES["deepbench-inference"]
    assert len(deep) == 72 and {c.batch for c in deep} == {1, 2, 4}
    assert all(c.hidden <= 192 and c.steps >= 1000 for c in SUITES["small-hidden"])
    assert any(c.layers == 4 and c.hidden == 512 and c.batch == 64 for c in SUITES["stacks"])
    assert any(c.bidirectional for c in SUITES["stacks"])
    assert {c.batch for c in SUITES["large-batch"]} == {16, 32, 64, 128} and {c.cell for c in SUITES["large-batch"]} == {
        "lstm", "gru", "rnn"}


def test_results_page_is_regenerated_from_the_records(tmp_path):
    import glob
    bench = os.path.join(ROOT, "bench")
    if not os.path.isdir(os.path.join(bench, "results")):
        import pytest
        pytest.skip("the installed conformance suite has no bench/ folder")
    out = tmp_path / "RESULTS.md"
    r = subprocess.run([sys.executable, os.path.join(bench, "make_results.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    # each target row names the GPU whose newest run it counts
    assert "## Targets" in page and re.search(r"\| H[0-9]+ CUDA, small-hidden \| ≤ 1.0 \|", page)
    for path in glob.glob(os.path.join(bench, "results", "*.json")):
        with open(path) as f:
            data = json.load(f)
        assert f"`results/{os.path.basename(path)}`" in page
        assert all(rec["label"] in page for rec in data["records"])
    with open(os.path.join(bench, "RESULTS.md")) as f:
        assert f.read() == page, "bench/RESULTS.md is stale: run python bench/make_results.py"


def test_timed_call_settles_on_its_own_calls_first():
    """A timed call follows untimed ones of the same side for the settle time (at least one), or none."""
    import time

    from mpsrnn.benchmark import _timed_call, settle_seconds
    stamps = []

    def run():
        stamps.append(time.perf_counter())
    assert _timed_call(run, None) >= 0 and len(stamps) == 1
    stamps.clear()
    _timed_call(run, 0.0)
    assert len(stamps) == 2
    stamps.clear()
    _timed_call(run, 0.01)
    assert len(stamps) >= 3 and stamps[-1] - stamps[0] >= 0.01
    assert settle_seconds("cpu", False) > 0 and settle_seconds("vulkan", True) == 0.0
    assert settle_seconds("cuda", True) is None and settle_seconds("vulkan", False) is None
