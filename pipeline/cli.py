"""Entry point of the `pipeline` command.

Each sub-command lives in `pipeline/commands/<name>.py` and is imported only when it is named (or
when `--help` lists it). Those modules import nothing heavy at module level: bpy, ray, torch, gsplat
and objaverse are imported inside the command bodies, so `pipeline --help` answers at once.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from contracts.logs import setup_logging

# name -> module under pipeline.commands; the order is the order of the data flow.
COMMANDS = {
    "curate": "curate",
    "render": "render",
    "status": "status",
    "index": "index",
    "preview": "preview",
    "train": "train",
    "eval": "evaluate",
    "mine": "mine",
    "demo": "demo",
    "reconstruct": "reconstruct",
    "view": "view",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, mod in COMMANDS.items() if importlib.util.find_spec(f"pipeline.commands.{mod}")]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod = COMMANDS.get(cmd_name)
        if mod is None or importlib.util.find_spec(f"pipeline.commands.{mod}") is None:
            return None
        return importlib.import_module(f"pipeline.commands.{mod}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv also shows third-party debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="objaverse4d-engine")
def cli(verbose: int, quiet: bool) -> None:
    """Objaverse-4D data engine: curate -> render -> train -> eval -> mine, and back."""
    setup_logging(verbose, quiet)


def main() -> None:
    from contracts.exit import run_and_exit  # ends with os._exit after a normal shutdown (contracts/exit.py)

    run_and_exit(lambda: cli(prog_name="pipeline"))


if __name__ == "__main__":
    main()
