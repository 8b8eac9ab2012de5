"""`python -m training ...` (and `torchrun ... -m training ...`): the `pipeline train` command."""

from contracts.logs import setup_logging
from training.cli import command

if __name__ == "__main__":
    from contracts.exit import run_and_exit

    setup_logging()
    run_and_exit(lambda: command(prog_name="python -m training"))
