"""The ``mpsrnn`` command line (installed as ``mpsrnn.cli``)."""
import os
import subprocess
import sys

import click

from . import backend
from .benchmark import SUITES   # (NumPy and the backend module: no Taichi start-up)

ARCH_CHOICE = click.Choice(["auto", "metal", "cuda", "vulkan", "cpu"], case_sensitive=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """mpsrnn: Metal Performance Shaders recurrent layers (RNN, GRU, LSTM) on Taichi kernels."""


@main.command()
@click.option("--arch", type=ARCH_CHOICE, default=None, help="Backend (default: MPSRNN_ARCH, else the best here).")
def info(arch):
    """Print Taichi's version, the arch in use and the device."""
    import taichi as ti

    import mpsrnn
    name = backend.init(arch)
    click.echo(f"mpsrnn   {mpsrnn.__version__}")
    click.echo(f"taichi   {'.'.join(map(str, ti.__version__))}")
    click.echo(f"arch     {name}")
    click.echo(f"device   {backend.device_name()}")


def conformance_dir():
    """The conformance tests: ``tests/`` in a source checkout, else the copy installed in the package."""
    here = os.path.dirname(os.path.abspath(__file__))  # the checkout's root, or the installed package
    for path in (os.path.join(here, "tests"), os.path.join(here, "conformance")):
        if os.path.isfile(os.path.join(path, "reference.py")):
            return path
    raise click.ClickException("the conformance tests are not installed with this copy of mpsrnn")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--arch", type=ARCH_CHOICE, default="auto", show_default=True,
              help="Backend to check (auto: metal on macOS, else cuda, a Vulkan GPU, cpu).")
@click.option("-k", "keyword", default=None, help="Only tests matching this pytest -k expression.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def check(arch, keyword, pytest_args):
    """Run the conformance suite (float64 reference and PyTorch cross-checks) on a backend."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        raise click.ClickException("mpsrnn check runs the conformance tests with pytest: "
                                   "pip install 'mpsrnn[test]'") from None
    name = arch.lower()
    if name == "auto":
        name = backend.best_available_arch()
    path = conformance_dir()
    click.echo(f"mpsrnn check: conformance suite on {name} ({path})")
    env = dict(os.environ, MPSRNN_ARCH=name)
    cmd = [sys.executable, "-m", "pytest", path, "-q", "-p", "no:cacheprovider", "--rootdir", path]
    if keyword:
        cmd += ["-k", keyword]
    cmd += list(pytest_args)
    sys.exit(subprocess.call(cmd, env=env))


def _environment():
    """Machine and versions for benchmark records."""
    import datetime
    import platform

    import taichi as ti

    import mpsrnn
    env = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "arch": backend.current_arch(), "device": backend.device_name(), "host": platform.node(),
           "python": platform.python_version(), "mpsrnn": mpsrnn.__version__,
           "taichi": ".".join(map(str, ti.__version__)), "numpy": __import__("numpy").__version__}
    try:
        import torch
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["cudnn"] = str(torch.backends.cudnn.version())
    except ImportError:
        env["torch"] = None
    return env


@main.command()
@click.option("--suite", type=click.Choice(list(SUITES)), default=None,
              help="Run a named suite instead of one configuration.")
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True)
@click.option("--input", "n_in", type=int, default=None, help="Input channels (default: hidden).")
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--steps", type=int, default=50, show_default=True)
@click.option("--layers", type=int, default=1, show_default=True)
@click.option("--bidirectional", is_flag=True, help="One layer per direction, outputs concatenated.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--repeats", type=int, default=10, show_default=True, help="Timed runs per configuration.")
@click.option("--warmup", type=int, default=3, show_default=True,
              help="Untimed runs of each per configuration first (and at least 0.2 s of them).")
@click.option("--arch", type=ARCH_CHOICE, default=None, help="Backend (default: MPSRNN_ARCH, else the best here).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the records (one per configuration, with a 'ratio' field) to this JSON file.")
@click.option("--resume", is_flag=True,
              help="With --json and --suite: keep the records already in that file and run only the rest.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Plot the ratios to this image (needs matplotlib).")
def bench(suite, cell, n_in, hidden, batch, steps, layers, bidirectional, dtype, repeats, warmup, arch, json_path,
          resume, plot_path):
    """Time configurations per time step next to PyTorch (cuDNN on a GPU) in the same process."""
    import json

    from .benchmark import HEADER, SUITES, Config, format_row, time_config
    backend.init(arch)
    configs = SUITES[suite] if suite else [Config(cell, n_in or hidden, hidden, batch, steps, layers, bidirectional,
                                                  dtype)]
    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo("PyTorch is not installed: timing mpsrnn alone (pip install 'mpsrnn[test]' for the comparison).")
    env = _environment()
    click.echo(f"# {env['arch']} on {env['device']}; mpsrnn {env['mpsrnn']}, taichi {env['taichi']}, "
               f"torch {env.get('torch')}; {env['date']}")
    click.echo(HEADER)
    records = []
    planned = len(configs)
    if resume:
        if not (json_path and suite):
            raise click.UsageError("--resume needs --json and --suite")
        if os.path.exists(json_path):
            with open(json_path) as f:
                kept = json.load(f)
            if kept.get("suite") != suite:
                raise click.UsageError(f"--resume: {json_path} holds suite {kept.get('suite')!r}, not {suite!r}")
            records = kept["records"]
            done = {r["label"] for r in records}
            configs = [c for c in configs if c.label not in done]
            click.echo(f"resuming: {len(records)} of {planned} configurations kept from {json_path}")
    with click.progressbar(configs, label=suite or "bench", file=sys.stderr,
                           show_pos=True) if len(configs) > 3 else _plain(configs) as items:
        for cfg in items:
            r = time_config(cfg, repeats=repeats, warmup=warmup)
            records.append(r)
            click.echo(("\n" if len(configs) > 3 and sys.stderr.isatty() else "") + format_row(r))
            if json_path:   # after every configuration: a run cut short keeps what it measured
                with open(json_path, "w") as f:
                    json.dump({"environment": env, "suite": suite, "planned": planned, "records": records},
                              f, indent=1)
    if plot_path:
        _plot(records, plot_path, env)


class _plain:
    def __init__(self, items):
        self.items = items

    def __enter__(self):
        return self.items

    def __exit__(self, *exc):
        return False


def _plot(records, path, env):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo("--plot: matplotlib is not installed; skipping the plot")
        return
    rows = [r for r in records if r.get("ratio")]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(rows) + 1.5))
    ax.barh([r["label"] for r in rows], [r["ratio"] for r in rows])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("mpsrnn / PyTorch time per step (lower is better)")
    ax.set_title(f"{env['arch']} on {env['device']}")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
