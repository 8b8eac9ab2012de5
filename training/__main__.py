"""`python -m training ...` (and `torchrun ... -m training ...`): the `pipeline train` command."""

from pipeline.commands.train import command
from pipeline.logs import setup_logging

if __name__ == "__main__":
    from pipeline.exit import run_and_exit

    setup_logging()
    run_and_exit(lambda: command(prog_name="python -m training"))
