"""``python -m crmhub.cli``: the same as the ``crmhub`` command."""

from crmhub.cli.main import main

main()
