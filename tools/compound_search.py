"""Step 1 of compound scaling (Tan & Le 2019, section 4): grid-search alpha, beta, gamma on a config.

    python tools/compound_search.py CONFIG [--phi 1] [--grid-step 0.05] [--tolerance 0.05]
        [--candidates A,B,G ...] --dry-run
    python tools/compound_search.py CONFIG --iters N [--work-dir DIR] [--metric KEY] [--seed 0]
        [--size-divisor D] [--cfg-options k=v ...]

--dry-run prints every candidate (alpha*beta^2*gamma^2 within --tolerance of 2, all >= 1) with its
params, multiply-adds and their measured ratio to the baseline's. Without it, each candidate is
trained for N iterations with tools/train.py and evaluated on the validation split with
tools/test.py, and a ranked table (results.md, results.csv) and metric_vs_flops.png are written to
the work dir. Rerunning the same command after an interruption skips the finished candidates.
"""
import argparse
import os.path as osp
import signal
import sys
import time

from mmengine.config import Config, DictAction

import mmeffnet  # noqa: F401  (registers mmeffnet.EfficientNet)
import mmeffnet.tool_entry  # noqa: F401  (no pkg_resources noise; mmeffnet:: config bases)
from mmeffnet.config import check_dataset_paths
from mmeffnet.runtime.cli import run_cli
from mmeffnet.search import check_phi, enumerate_grid, make_plan, parse_coefficients, run_search
from mmeffnet.search.report import baseline_lines, candidate_table, result_rows, write_results
from mmeffnet.search.search import CandidateBusyError, check_settings, pick_metric, settings_of
from mmeffnet.search.state import DONE

TOOLS_DIR = osp.dirname(osp.abspath(__file__))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'config', help='a classification, detection or segmentation config with an '
        'mmeffnet.EfficientNet backbone')
    parser.add_argument('--phi', type=float, default=1.0, help='compound coefficient of the search (paper: 1)')
    parser.add_argument('--grid-step', type=float, default=0.05, help='grid spacing of alpha, beta, gamma from 1')
    parser.add_argument(
        '--tolerance', type=float, default=0.05, help='relative tolerance of alpha*beta^2*gamma^2 around 2')
    parser.add_argument(
        '--candidates',
        nargs='+',
        metavar='A,B,G',
        help='search these (alpha,beta,gamma) instead of the grid, e.g. 1.2,1.1,1.15')
    parser.add_argument('--dry-run', action='store_true', help='print the candidate table; train nothing')
    parser.add_argument('--iters', type=int, help='training iterations per candidate (required to train)')
    parser.add_argument('--work-dir', help='default: work_dirs/compound_search/<config>_phi<phi>')
    parser.add_argument(
        '--metric', help='metric to rank on (default: top-1, bbox mAP or mIoU, whichever '
        'the evaluator reports)')
    parser.add_argument('--seed', type=int, default=0, help='same seed for every candidate')
    parser.add_argument(
        '--size-divisor',
        type=int,
        help='round scaled input sizes to multiples of this (default 1 for classification, '
        '32 for detection and segmentation)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override keys of CONFIG before scaling, e.g. train_dataloader.batch_size=8')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    check_phi(args.phi)
    if not args.dry_run and args.iters is None:
        raise ValueError('training needs a budget: pass --iters N (iterations per candidate), or --dry-run')
    if args.iters is not None and args.iters < 1:
        raise ValueError(f'--iters must be >= 1, got --iters {args.iters}')
    coeffs = (
        parse_coefficients(args.candidates, args.tolerance) if args.candidates else enumerate_grid(
            args.grid_step, args.tolerance))
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    print(f'measuring {len(coeffs)} candidates of {args.config} ...', flush=True)
    start = time.time()
    plan = make_plan(cfg, [(c, args.phi) for c in coeffs], args.size_divisor)
    distinct = sum(m.same_as is None for m in plan.members)
    ratios = [plan.ratio(m) for m in plan.members]
    print('\n'.join(baseline_lines(plan, args.config)))
    source = (f'{len(coeffs)} given candidates' if args.candidates else
              f'grid step {args.grid_step:g}, alpha*beta^2*gamma^2 within {args.tolerance:g} of 2')
    print(f'phi={args.phi:g}; {source}: {len(coeffs)} candidates, {distinct} distinct networks after '
          f'rounding; measured MACs ratio {min(ratios):.2f}..{max(ratios):.2f} (eq. 3 expects '
          f'~{2 ** args.phi:.2f}); measured in {time.time() - start:.1f} s\n')
    print(candidate_table(plan))
    if args.dry_run:
        return 0

    work_dir = args.work_dir or osp.join('work_dirs', 'compound_search',
                                         f'{osp.splitext(osp.basename(args.config))[0]}_phi{args.phi:g}')
    check_dataset_paths(cfg, ('train', 'val'))
    divisor = plan.size_divisor
    check_settings(work_dir, settings_of(args.config, cfg, args.phi, args.iters, args.seed, divisor))
    print(f'\ntraining {distinct} candidates for {args.iters} iterations each in {work_dir}')

    def write_tables(states: dict) -> dict:  # after every candidate, so that partial results show
        done = [s for s in states.values() if s.get('status') == DONE]
        metric = pick_metric([s.get('metrics') or {} for s in done], args.metric)
        head = baseline_lines(plan, args.config) + [
            f'search: phi={args.phi:g}, {source}, {args.iters} iterations per candidate (config pipeline '
            f'and optimizer, warm-up + cosine LR), seed {args.seed}, ranked by '
            f'{metric or "(no metric reported)"} on the validation split'
        ]
        return write_results(
            result_rows(plan, states, metric), head, work_dir, plan.baseline.macs,
            f'{osp.basename(args.config)}: compound scaling search, phi={args.phi:g}', args.phi)

    states = run_search(plan, work_dir, TOOLS_DIR, args.iters, args.seed, after_each=write_tables)
    paths = write_tables(states)
    print()
    with open(paths['markdown']) as f:
        print(f.read())
    print('wrote ' + ', '.join(paths.values()))
    failed = [s['name'] for s in states.values() if s.get('status') != DONE]
    if failed:
        print(
            f'{len(failed)} candidate(s) did not finish: {", ".join(failed)}; rerun the same command '
            'to retry them',
            file=sys.stderr)
        return 1
    return 0


def _stop(signum, frame):  # turn `kill PID` into SystemExit so the running tool is stopped with us
    sys.exit(128 + signum)


def _main_or_error() -> int:
    try:
        return main()
    except CandidateBusyError as exc:
        print(f'ERROR: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(run_cli(_main_or_error))
