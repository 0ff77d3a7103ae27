"""`make bench`: every benchmark against the demo bundle, one after the other (they share the CPU).

Each prints its own side-by-side table and writes JSON; bench/RESULTS.md records the figures.
"""

from __future__ import annotations

import sys

from bench import forward_bench, quality_bench, service_bench
from training.run_layout import bundle_dir_for

DEMO_BUNDLE = str(bundle_dir_for("demo"))


def main() -> int:
    service_bench.main(["--bundle", DEMO_BUNDLE])
    forward_bench.main(["--bundle", DEMO_BUNDLE])
    return quality_bench.main(["--bundle", DEMO_BUNDLE])


if __name__ == "__main__":
    sys.exit(main())
