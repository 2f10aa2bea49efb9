"""Print the ``impl="auto"`` table a GPU results file implies (see attnzoo/autotable.py).

    python benchmarks/auto_table.py benchmarks/results/speed-gpu/auto-table.csv

Paste the printed dict into ``attnzoo.autotable.AUTO_MIN_KEYS`` (tests/test_autotable.py checks
that the committed file and the table agree).
"""

from __future__ import annotations

import sys

from attnzoo.autotable import thresholds_from_csv


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print("AUTO_MIN_KEYS = {")
    for key, least in sorted(thresholds_from_csv(argv[0]).items()):
        print(f"    {key!r}: {least!r},  # {'never faster' if least is None else f'faster from {least} keys on'}")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
