"""`python -m training ...` (and `torchrun ... -m training ...`): the `pipeline train` command."""

from pipeline.commands.train import command
from contracts.logs import setup_logging

if __name__ == "__main__":
    setup_logging()
    command(prog_name="python -m training")
