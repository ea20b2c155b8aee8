"""``python -m ssdcli`` runs the ``ssd`` command line."""

from ssdcli.cli.app import main

raise SystemExit(main())
