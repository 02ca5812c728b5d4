"""`python -m generate` is `ptgen` (torchrun launches it this way)."""

from .cli import main

main()
