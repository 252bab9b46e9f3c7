"""The ``mpsrnn`` command line (installed as ``mpsrnn.cli``)."""
import os
import subprocess
import sys

import click

from . import backend

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
              help="Backend to check (auto: metal on macOS, else cuda, vulkan, cpu).")
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


@main.command()
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True)
@click.option("--input", "n_in", type=int, default=None, help="Input channels (default: hidden).")
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--steps", type=int, default=50, show_default=True)
@click.option("--layers", type=int, default=1, show_default=True)
@click.option("--repeats", type=int, default=10, show_default=True)
@click.option("--arch", type=ARCH_CHOICE, default=None, help="Backend (default: MPSRNN_ARCH, else the best here).")
def bench(cell, n_in, hidden, batch, steps, layers, repeats, arch):
    """Time one configuration per time step, next to PyTorch in the same process."""
    from .benchmark import format_row, time_config
    backend.init(arch)
    r = time_config(cell, n_in or hidden, hidden, batch, steps, layers, repeats=repeats)
    click.echo(format_row(r))


if __name__ == "__main__":
    main()
