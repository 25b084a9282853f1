"""Parameters and multiply-adds of EfficientNet b0..b7 next to Table 2 of the paper.

    python tools/analysis/get_flops.py [--archs b0 b3 ...]

Counts conv and linear multiply-adds of backbone + 1000-way classifier at each native resolution.
Exits 1 if any arch is outside the bounds (params 2%, FLOPs 5%).
"""
import argparse
import sys

from mmeffnet.analysis.table2 import FLOP_TOLERANCE, PARAM_TOLERANCE, TABLE2, format_rows, measure_against_table2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--archs', nargs='+', default=list(TABLE2), choices=list(TABLE2))
    args = parser.parse_args()
    rows = measure_against_table2(args.archs)
    print(format_rows(rows))
    bad = [r.arch for r in rows if not r.within_bounds]
    print(f'\nbounds: params within {PARAM_TOLERANCE:.0%}, FLOPs within {FLOP_TOLERANCE:.0%} of Table 2: ' +
          ('all inside' if not bad else f'OUTSIDE for {", ".join(bad)}'))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
