"""`python -m training ...` (and `torchrun ... -m training ...`): the `pipeline train` command."""

from contracts.logs import setup_logging
from training.cli import command

if __name__ == "__main__":
    setup_logging()
    command(prog_name="python -m training")
