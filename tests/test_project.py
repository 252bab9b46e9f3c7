"""The project's promises: the README's example and commands, the CLI, the wheel."""
import os
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CHECKOUT = os.path.isfile(os.path.join(ROOT, "pyproject.toml"))
checkout_only = pytest.mark.skipif(not IN_CHECKOUT, reason="needs the source checkout (not the installed suite)")


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def _run(args, cwd=ROOT, timeout=600, **env):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **env))


def _with_checkout_on_path():
    """PYTHONPATH with the checkout first (keeping whatever else the environment needs)."""
    return os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)


def _index_reachable():
    """Whether pip can reach a package index (building the wheel needs hatchling, the venv taichi)."""
    import socket
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@checkout_only
def test_readme_example_runs_as_written(tmp_path):
    block = re.search(r"## Usage\n\n```python\n(.*?)```", _readme(), re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(block)
    r = _run([sys.executable, str(script)], cwd=tmp_path, PYTHONPATH=_with_checkout_on_path())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "10 (4, 16)\n"   # what the example's comment promises


@checkout_only
def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^(python -m pip install .*?)\s+#", _readme(), re.M)
    assert len(commands) == 2, commands
    test_command = next(c for c in commands if "pytest" in c)
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert test_command in f.read().splitlines()


def test_cli_help_and_info():
    r = _run([sys.executable, "-m", "mpsrnn", "--help"], PYTHONPATH=_with_checkout_on_path())
    assert r.returncode == 0 and all(cmd in r.stdout for cmd in ("info", "check", "bench"))
    r = _run([sys.executable, "-m", "mpsrnn", "info"], PYTHONPATH=_with_checkout_on_path())
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.strip().splitlines())
    assert fields["taichi"].startswith("1.7.")
    assert fields["arch"] in ("metal", "cuda", "vulkan", "cpu") and fields["device"]


@checkout_only
def test_wheel_installs_into_a_fresh_venv(tmp_path):
    if not _index_reachable():
        pytest.skip("no package index reachable: building needs hatchling, the fresh venv needs taichi")
    dist = tmp_path / "dist"
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), ROOT], timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = dist.glob("mpsrnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"mpsrnn"}, top
    for needed in ("mpsrnn/kernels/matrix_cells.py", "mpsrnn/cli.py", "mpsrnn/conformance/reference.py"):
        assert needed in names
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    py = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    r = _run([py, "-m", "pip", "install", "-q", str(wheel)], timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    smoke = ("import numpy as np, mpsrnn, mpsrnn.kernels; print(mpsrnn.__file__); "
             "d = mpsrnn.RNNSingleGateDescriptor(2, 3, use_float32_weights=True, "
             "input_weights=mpsrnn.ConvolutionWeights(np.ones((3, 2), np.float32))); "
             "y = mpsrnn.RNNMatrixInferenceLayer(d).encode_sequence(np.ones((1, 1, 2), np.float32)); "
             "print(np.asarray(y[0]).tolist())")
    r = _run([py, "-c", smoke], cwd=tmp_path, PYTHONPATH="")
    assert r.returncode == 0, r.stderr
    where, value = r.stdout.strip().splitlines()
    assert str(venv) in where                      # the installed copy, not the checkout
    assert value == "[[2.0, 2.0, 2.0]]"
    exe = str(venv / ("Scripts" if os.name == "nt" else "bin") / "mpsrnn")
    for cmd in ([exe, "--help"], [py, "-m", "mpsrnn", "--help"]):
        r = _run(cmd, cwd=tmp_path, PYTHONPATH="")
        assert r.returncode == 0 and "check" in r.stdout, r.stderr


def test_check_command_runs_the_conformance_suite():
    import mpsrnn
    r = _run([sys.executable, "-m", "mpsrnn", "check", "--arch", mpsrnn.current_arch(), "-k", "neuron_defaults"],
             PYTHONPATH=_with_checkout_on_path())
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"conformance suite on {mpsrnn.current_arch()}" in r.stdout
    assert re.search(r"\b10 passed\b", r.stdout), r.stdout


@checkout_only
def test_device_session_script_parses_and_refuses_unknown_steps(tmp_path):
    """``bench/device_session.sh``, the runs that wait for a GPU, is valid bash, and a step it does
    not know stops it before any run (its steps need a GPU, so this is what can be checked here)."""
    script = os.path.join(ROOT, "bench", "device_session.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    r = subprocess.run(["bash", script, "no-such-step"], capture_output=True, text=True,
                       env=dict(os.environ, OUT=str(tmp_path)))
    assert r.returncode == 2 and "no-such-step: no such step" in r.stdout


@checkout_only
def test_test_shards_partition_the_suite():
    """``MPSRNN_TEST_SHARD=i/n`` (tests/conftest.py) splits the collected tests into n disjoint shards
    whose union is the whole, so that n processes together run every test once; a bad value stops
    pytest with a message that names the variable."""
    def collected(shard):
        r = _run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                  "tests/test_descriptors.py"], MPSRNN_TEST_SHARD=shard)
        assert r.returncode == 0, r.stdout + r.stderr
        return [line for line in r.stdout.splitlines() if "::" in line]
    whole = collected("")
    shards = [collected(f"{i}/3") for i in range(3)]
    assert len(whole) > 10 and all(shards)
    assert sorted(sum(shards, [])) == sorted(whole)
    r = _run([sys.executable, "-m", "pytest", "-q", "--collect-only", "tests/test_descriptors.py"],
             MPSRNN_TEST_SHARD="3/3")
    assert r.returncode != 0 and "MPSRNN_TEST_SHARD" in r.stdout + r.stderr
