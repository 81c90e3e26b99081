"""``python -m radae.cli`` (torchrun uses it): the ``radae`` command."""
from radae.cli import main

main()
