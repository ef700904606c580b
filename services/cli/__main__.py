"""``python -m sutazai.services.cli``: the same as the ``sutazai`` console script."""

from sutazai.services.cli import main

main()
