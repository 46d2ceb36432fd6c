"""``kernelpro init KERNEL.cu``: write a draft task (see :mod:`kernelpro.init_task`)."""

from __future__ import annotations

from pathlib import Path

import click

from kernelpro.errors import KernelproError


@click.command("init")
@click.argument("kernel_file", type=click.Path(path_type=Path))
@click.option("--kernel", "kernel", default=None, help="The __global__ function (when the file has several).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Where to write the draft (default: KERNEL.task.cu beside the kernel).")
@click.option("--force", is_flag=True, help="Overwrite an existing draft.")
def init_command(kernel_file: Path, kernel: str | None, output: Path | None, force: bool) -> None:
    """Write a draft task for KERNEL_FILE from the kernel's signature, with TODOs for what it cannot infer."""
    from kernelpro.init_task import write_draft
    from kernelpro.task_loader import load_task

    target = write_draft(kernel_file, kernel, output, force)
    click.echo(f"wrote {target}")
    try:
        load_task(target)
    except KernelproError as exc:
        click.echo(f"next: fill in the TODOs, then `kernelpro analyze {target} --static`\n  {exc.message}")
        return
    click.echo(f"it loads as it is: `kernelpro analyze {target} --static`")
