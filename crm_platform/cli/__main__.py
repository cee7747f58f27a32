"""``python -m crm_platform.cli``: the same as the ``crm-platform`` command."""
from crm_platform.cli import main

raise SystemExit(main())
