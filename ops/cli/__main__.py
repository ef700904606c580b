"""``python -m sutazai.ops.cli``: the same as the ``sutazai`` console script."""

from sutazai.ops.cli import main

main()
