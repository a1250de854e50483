"""``python -m flowaudit``: the same command as the ``flowaudit`` console script."""

from flowaudit.cli import main

main()
