"""``python -m poisonlab``: the command line."""

from poisonlab.cli import main

main()
