"""``python -m musetag ...`` (also what ``torchrun -m musetag train ...`` runs)."""
from musetag.cli import main

raise SystemExit(main())
