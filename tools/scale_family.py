"""Step 2 of compound scaling (Tan & Le 2019, section 4): the scaled family phi = 1..N of a config.

    python tools/scale_family.py CONFIG [--alpha 1.2 --beta 1.1 --gamma 1.15] [--phi-max 7]
        [--out-dir DIR] [--no-write] [--size-divisor D] [--tolerance 0.1] [--cfg-options k=v ...]
    python tools/scale_family.py --paper-check [--phi-max 7]

Scales depth by alpha^phi, width by beta^phi and every input size by gamma^phi (eq. 3), prints
each member's params, multiply-adds and their ratio to the baseline's next to 2^phi (members more
than --tolerance away are marked (!)), and writes the configs <out-dir>/<config>_phi<k>.py.
--paper-check prints the documented check of eq. 3 on B0 and the official B1-B7 (markdown).
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

import mmeffnet  # noqa: F401
import mmeffnet.tool_entry  # noqa: F401  (no pkg_resources noise; mmeffnet:: config bases)
from mmeffnet.arch import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from mmeffnet.runtime.cli import run_cli
from mmeffnet.search import Coefficients, make_family, write_family
from mmeffnet.search.eq3_check import eq3_check_markdown
from mmeffnet.search.report import baseline_lines, family_table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='config with an mmeffnet.EfficientNet backbone')
    parser.add_argument('--alpha', type=float, default=PAPER_ALPHA, help='depth coefficient (paper: 1.2)')
    parser.add_argument('--beta', type=float, default=PAPER_BETA, help='width coefficient (paper: 1.1)')
    parser.add_argument('--gamma', type=float, default=PAPER_GAMMA, help='resolution coefficient (paper: 1.15)')
    parser.add_argument('--phi-max', type=int, default=7, help='largest phi of the family (1..N)')
    parser.add_argument('--out-dir', help='where to write the configs (default: work_dirs/scaled_family/<config>)')
    parser.add_argument('--no-write', action='store_true', help='print the table only')
    parser.add_argument(
        '--size-divisor',
        type=int,
        help='round scaled input sizes to multiples of this (default 1 for classification, '
        '32 for detection and segmentation)')
    parser.add_argument(
        '--tolerance', type=float, default=0.1, help='mark members whose MACs ratio is further than this from 2^phi')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override keys of CONFIG first')
    parser.add_argument(
        '--paper-check',
        action='store_true',
        help='print the eq. 3 check on B0 and the official B1-B7 instead (no CONFIG)')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.paper_check:
        if args.config:
            raise ValueError('--paper-check takes no CONFIG (it checks B0 and the official B1-B7)')
        print(eq3_check_markdown(args.phi_max))
        return 0
    if not args.config:
        raise ValueError('give a CONFIG to scale (or --paper-check)')
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    coeffs = Coefficients(args.alpha, args.beta, args.gamma)
    plan = make_family(cfg, coeffs, args.phi_max, args.size_divisor)
    print('\n'.join(baseline_lines(plan, args.config)))
    print(f'eq. 3 with alpha={coeffs.alpha:g}, beta={coeffs.beta:g}, gamma={coeffs.gamma:g} '
          f'(alpha*beta^2*gamma^2 = {coeffs.flops_factor:.4f})\n')
    print(family_table(plan, args.tolerance))
    outside = [m for m in plan.members if abs(plan.ratio(m) / 2**m.phi - 1) > args.tolerance]
    if outside:
        print(f'\n(!) {len(outside)} member(s) are more than {args.tolerance:.0%} from 2^phi: rounding '
              '(blocks rounded up, channels to multiples of 8, sizes to the divisor), parts eq. 3 does not '
              'scale (neck, head, stem) and alpha*beta^2*gamma^2 != 2 all move the measured ratio')
    if not args.no_write:
        stem = osp.splitext(osp.basename(args.config))[0]
        out_dir = args.out_dir or osp.join('work_dirs', 'scaled_family', stem)
        paths = write_family(plan, out_dir, stem, args.config)
        print(f'\nwrote {len(paths)} configs: ' + ', '.join(paths))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
