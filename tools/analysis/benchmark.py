"""Speed and memory of mmeffnet's EfficientNet against mmdet, timm and torchvision, side by side.

    python tools/analysis/benchmark.py                  # every row; rewrites docs/benchmarks.md + .png
                                                        # (quiet 2-core CPU: about 18-20 min; CUDA rows if a GPU)
    python tools/analysis/benchmark.py --quick          # smaller train input, B0 inference only (~3 min)
    python tools/analysis/benchmark.py --rows infer --quick
    python tools/analysis/benchmark.py --device cuda    # the CUDA rows only (fp32, AMP + channels_last)
    python tools/analysis/benchmark.py --publish DIR    # put a run made elsewhere (a GPU machine) into docs/

Rows: train (B3 backbone step at 896), infer (B0@224, B3@300, B1@240 batch 1, with onnxruntime),
detector (the RetinaNet-B3 recipe iteration), efficientdet (D0 at 512 and D3 at 896: training
step and batch-1 inference against effdet's same model), cuda (fp32 and AMP + channels_last;
skipped without a GPU). Writes results.md, results.json and chart.png to --out-dir.

The parts live in the ``benchmarking`` package beside this file (tools/analysis/benchmarking/);
the kit for running the CUDA rows on an offline GPU machine in tools/analysis/offline_gpu/.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Iterable, Tuple

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
DOC = osp.join(ROOT, 'docs', 'benchmarks.md')
DOC_CHART = osp.join(ROOT, 'docs', 'benchmarks.png')
# the CPU results and the CUDA results (often measured on another machine) each have a block
# and the EfficientDet rows (against effdet) have their own, so that they can be measured alone
BLOCKS = {
    'cpu': ('<!-- benchmark-results:start -->', '<!-- benchmark-results:end -->', DOC_CHART),
    'cuda':
    ('<!-- benchmark-cuda:start -->', '<!-- benchmark-cuda:end -->', osp.join(ROOT, 'docs', 'benchmarks_cuda.png')),
    'efficientdet': ('<!-- benchmark-efficientdet:start -->', '<!-- benchmark-efficientdet:end -->',
                     osp.join(ROOT, 'docs', 'benchmarks_efficientdet.png')),
}
ROWS = ('train', 'train-syncbn', 'infer', 'detector', 'efficientdet', 'cuda')
DEVICES = ('auto', 'cpu', 'cuda')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--rows', default=','.join(ROWS), help=f'comma-separated subset of {",".join(ROWS)} (default: all)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smaller inputs, fewer models and repetitions (default rows: train, infer)')
    parser.add_argument(
        '--models',
        default=None,
        help='comma-separated peers to compare with ours and its variants (e.g. mmdet,timm,onnxruntime); default: all')
    parser.add_argument(
        '--config',
        default=osp.join(ROOT, 'configs', 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py'),
        help='the RetinaNet recipe config of the detector row')
    parser.add_argument('--reps', type=int, default=None, help='timed rounds per row (default: per row)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory subprocesses')
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='"all cores" thread count')
    parser.add_argument(
        '--device',
        default='auto',
        choices=DEVICES,
        help='auto: the CPU rows, plus the CUDA rows when a GPU is present; cpu: CPU rows '
        'only; cuda: the CUDA rows only (fp32 and AMP + channels_last)')
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'work_dirs', 'benchmark'))
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument(
        '--update-docs',
        action='store_true',
        help=f'write the results into {osp.relpath(DOC, ROOT)} and its chart even for a '
        '--quick or partial run')
    docs.add_argument('--no-docs', action='store_true', help='do not touch docs/ (a full run rewrites it)')
    docs.add_argument(
        '--publish',
        metavar='DIR',
        default=None,
        help='measure nothing: put the results.md and chart.png of a run written to DIR '
        '(e.g. the CUDA rows run on a GPU machine) into docs/, then exit')
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(',') if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        parser.error(f'unknown row(s) {bad}; choose from {list(ROWS)}')
    full = args.rows == ','.join(ROWS)
    if args.quick and full:
        rows = ['train', 'infer', 'cuda']
    if args.device == 'cpu':
        rows = [r for r in rows if r != 'cuda']
    elif args.device == 'cuda':
        rows = ['cuda']
    if args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    args.row_list = tuple(rows)
    # docs/ shows only complete CPU results measured at the sizes
    args.write_docs = args.update_docs or (full and not args.quick and args.device == 'auto' and not args.no_docs
                                           and args.models is None)
    return args


def row_block(kind: str, task: str = '') -> str:
    """The docs block of one row: 'cuda', 'efficientdet' (the effdet-* tasks) or 'cpu'."""
    if kind == 'cuda':
        return 'cuda'
    return 'efficientdet' if task.startswith('effdet-') else 'cpu'


def docs_block(rows: Iterable[Tuple[str, str]]) -> str:
    """The docs block a published run goes to, from each row's ``(kind, task)``: the rows' own block
    when they all share one, else 'cpu'."""
    blocks = {row_block(kind, task) for kind, task in rows}
    return blocks.pop() if len(blocks) == 1 else 'cpu'


def update_docs(text: str, chart: str, block: str = 'cpu') -> None:
    """Replace one results block of docs/benchmarks.md (appended if missing) and its chart."""
    import shutil
    start, end, doc_chart = BLOCKS[block]
    doc = open(DOC).read() if osp.exists(DOC) else '# Benchmarks\n'
    if start not in doc or end not in doc:
        doc += f'\n{start}\n{end}\n'
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1]
    body = text + f'\n\n![benchmark chart]({osp.basename(doc_chart)})\n'
    with open(DOC, 'w') as f:
        f.write(f'{head}{start}\n{body}{end}{tail}')
    shutil.copyfile(chart, doc_chart)


def publish(results_dir: str) -> str:
    """Put the results of a run written to ``results_dir`` into docs/; returns the block used."""
    paths = {name: osp.join(results_dir, name) for name in ('results.md', 'results.json', 'chart.png')}
    missing = [p for p in paths.values() if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'--publish {results_dir}: missing {missing} (the --out-dir of a '
                                'finished benchmark run holds results.md, results.json and chart.png)')
    try:
        with open(paths['results.json']) as f:
            block = docs_block([(row['kind'], row.get('task', '')) for row in json.load(f)['rows']])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'--publish {results_dir}: {paths["results.json"]} is not the results.json of a '
                         f'benchmark run (a "rows" list whose rows have a "kind"): {exc!r}') from exc
    with open(paths['results.md']) as f:
        text = f.read().rstrip('\n')
    update_docs(text, paths['chart.png'], block)
    return block


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.publish:
        try:
            block = publish(args.publish)
        except (FileNotFoundError, ValueError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        print(f'{args.publish}: {block.upper()} results written into {osp.relpath(DOC, ROOT)}, chart '
              f'{osp.relpath(BLOCKS[block][2], ROOT)}')
        return 0
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('CUDA rows skipped: no CUDA device on this machine (torch.cuda.is_available() is False). '
              'Run without --device cuda for the CPU rows.')
        return 0
    sys.path.insert(0, ROOT)  # mmeffnet from this checkout
    if HERE not in sys.path:  # the benchmark's package, also when this file is not run as a script
        sys.path.insert(1, HERE)
    from benchmarking.measure import keep_freed_memory_in_heap
    from benchmarking.report import machine_description, markdown, write_chart, write_json
    from benchmarking.suite import SuiteOptions, run_suite
    torch.manual_seed(0)
    opts = SuiteOptions(
        quick=args.quick,
        rows=args.row_list,
        config=args.config,
        reps=args.reps,
        memory=not args.no_memory,
        all_threads=args.threads,
        models=args.models.split(',') if args.models else None)
    info = machine_description()
    info['heap of the timing process'] = keep_freed_memory_in_heap()
    command = 'python tools/analysis/benchmark.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    os.makedirs(args.out_dir, exist_ok=True)
    chart = osp.join(args.out_dir, 'chart.png')

    def write(rows, final: bool = False) -> str:
        """results.md / .json / chart.png; rewritten after every group of rows."""
        info['load average at the end' if final else 'load average so far'] = \
            ', '.join(f'{v:.2f}' for v in os.getloadavg())
        if final:
            info.pop('load average so far', None)
        text = markdown(rows, info, command.strip())
        if not final:
            text = '**Partial results (run still going or interrupted).**\n\n' + text
        with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
            f.write(text + '\n')
        write_json(rows, info, osp.join(args.out_dir, 'results.json'))
        write_chart(rows, chart)
        return text

    if not args.quick and 'train' in args.row_list and 'detector' in args.row_list and args.reps is None:
        print('full CPU run: about 20 minutes on a quiet 2-core CPU; progress on stderr', file=sys.stderr)
    rows = run_suite(opts, on_rows=write)
    text = write(rows, final=True)
    written = []
    if args.write_docs:  # each block of docs/benchmarks.md gets its own rows, table and chart
        for block in BLOCKS:
            part = [row for row in rows if row_block(row.kind, row.task) == block]
            if any(row.entries for row in part):  # a skipped block (no GPU) keeps what it had
                part_chart = osp.join(args.out_dir, f'chart_{block}.png')
                write_chart(part, part_chart)
                update_docs(markdown(part, info, command.strip()), part_chart, block)
                written.append(osp.relpath(BLOCKS[block][2], ROOT))
    print(text)
    print(f'\nwritten: {args.out_dir}/results.md, results.json, chart.png' +
          (f'; {osp.relpath(DOC, ROOT)}, {", ".join(written)}' if written else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
