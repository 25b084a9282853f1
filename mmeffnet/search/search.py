"""Step 1, trained: each candidate through ``tools/train.py`` and ``tools/test.py``, resumably.

Work dir layout::

    search.json                    the settings; a rerun with other settings is refused
    candidates/<name>/config.py    the scaled config with the search's short schedule
    candidates/<name>/state.json   pending -> training -> trained -> done (or failed), atomic
    candidates/<name>/train.log    candidates/<name>/eval/   the two tools' output
    results.md  results.csv  metric_vs_flops.png

Each candidate is trained in its own process (memory is freed between candidates and a kill
stops one run). A rerun skips ``done`` candidates, evaluates ``trained`` ones, and resumes
``training`` ones from their last checkpoint (``tools/train.py --resume``).
"""
import copy
import glob
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from mmengine.config import Config

from .plan import Plan, ScaledModel
from .state import DONE, FAILED, TRAINED, TRAINING, now, process_alive, read_json, write_json_atomic

# Metrics ranked on when --metric is not given, first present wins (all higher-is-better).
PREFERRED_METRICS = ('accuracy/top1', 'coco/bbox_mAP', 'coco/segm_mAP', 'mIoU', 'pascal_voc/mAP', 'mDice')
# What mmengine's test log holds besides the evaluator's metrics.
NOT_METRICS = ('time', 'data_time', 'memory', 'step', 'iter', 'epoch', 'lr')
CHECKPOINT_EVERY = 1000


class CandidateBusyError(RuntimeError):
    """A candidate's state says another live process is training it."""


def search_config(cfg: Config, iters: int, seed: int) -> Config:
    """``cfg`` with the search's budget: ``iters`` iterations of the config's own pipeline and
    optimizer, LR warmed up over the first 10% then cosine-decayed to 0, no validation during
    training (the trained model is evaluated on the validation split by ``tools/test.py``)."""
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f'iters must be a positive int, got iters={iters!r}')
    cfg = copy.deepcopy(cfg)
    val_loader = cfg.get('val_dataloader') or cfg.get('test_dataloader')
    val_evaluator = cfg.get('val_evaluator') or cfg.get('test_evaluator')
    if not val_loader or not val_evaluator:
        raise ValueError('the config has neither val_dataloader/val_evaluator nor test_dataloader/'
                         'test_evaluator; the search needs one to rank candidates')
    cfg.test_dataloader, cfg.test_evaluator = val_loader, val_evaluator
    cfg.test_cfg = cfg.get('test_cfg') or dict(type='TestLoop')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    warmup = iters // 10
    schedule = [dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup, end=iters, eta_min=0.0)]
    if warmup:
        schedule.insert(0, dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup))
    cfg.param_scheduler = schedule
    hooks = cfg.get('default_hooks') or {}
    hooks['checkpoint'] = dict(
        type='CheckpointHook', by_epoch=False, interval=min(iters, CHECKPOINT_EVERY), max_keep_ckpts=1, save_last=True)
    if isinstance(hooks.get('logger'), dict):
        hooks['logger']['interval'] = max(1, min(hooks['logger'].get('interval', 50), iters // 5 or 1))
    cfg.default_hooks = hooks
    cfg.log_processor = dict(cfg.get('log_processor') or {}, by_epoch=False)
    cfg.randomness = dict(seed=seed)
    cfg.load_from, cfg.resume = None, False
    return cfg


def settings_of(config_path: str, cfg: Config, phi: float, iters: int, seed: int, size_divisor: int) -> dict:
    text = cfg.pretty_text
    return dict(
        config=osp.abspath(config_path),
        config_sha1=hashlib.sha1(text.encode()).hexdigest(),
        phi=phi,
        iters=iters,
        seed=seed,
        size_divisor=size_divisor)


def check_settings(work_dir: str, settings: dict) -> None:
    """Refuse to mix results of different searches in one work dir."""
    path = osp.join(work_dir, 'search.json')
    old = read_json(path)
    if old is not None:
        differ = sorted(k for k in settings if old.get(k) != settings[k])
        if differ:
            raise ValueError(f'{work_dir} holds a search with other settings (' +
                             ', '.join(f'{k}: {old.get(k)!r} there, {settings[k]!r} now'
                                       for k in differ) + '); use another --work-dir or the same settings')
    write_json_atomic(path, settings)


def read_metrics(eval_dir: str) -> Dict[str, float]:
    """The metrics ``tools/test.py`` dumped (mmengine's ``<timestamp>/<timestamp>.json``), newest run."""
    found = sorted(glob.glob(osp.join(eval_dir, '*', '[0-9]*_[0-9]*.json')), key=osp.getmtime)
    if not found:
        raise FileNotFoundError(f'tools/test.py wrote no metrics file under {eval_dir}')
    with open(found[-1]) as f:
        data = json.load(f)
    return {
        k: float(v)
        for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_METRICS
    }


def pick_metric(reported: List[Dict[str, float]], wanted: Optional[str]) -> Optional[str]:
    """The metric to rank on among those the finished candidates reported (None if none did)."""
    keys = set().union(*reported) if reported else set()
    if wanted is not None:
        if keys and wanted not in keys:
            raise KeyError(f'--metric {wanted!r} is not among the evaluator\'s metrics: {", ".join(sorted(keys))}')
        return wanted
    for key in PREFERRED_METRICS:
        if key in keys:
            return key
    return sorted(keys)[0] if keys else None


def _tail(path: str, lines: int = 15) -> str:
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


class CandidateRunner:
    """Runs one candidate's phases as real processes, recording each phase atomically."""

    def __init__(self, work_dir: str, tools_dir: str, log: Callable[[str], None] = print):
        self.work_dir, self.tools_dir, self.log = work_dir, tools_dir, log

    def folder(self, name: str) -> str:
        return osp.join(self.work_dir, 'candidates', name)

    def state(self, name: str) -> dict:
        return read_json(osp.join(self.folder(name), 'state.json')) or {}

    def _save(self, name: str, state: dict) -> None:
        write_json_atomic(osp.join(self.folder(name), 'state.json'), state)

    def _run_tool(self, args: List[str], log_path: str, on_start: Callable[[int], None]) -> int:
        with open(log_path, 'a') as log_file:
            proc = subprocess.Popen([sys.executable, *args], stdout=log_file, stderr=subprocess.STDOUT)
            on_start(proc.pid)
            try:
                return proc.wait()
            finally:  # the search itself was stopped (Ctrl-C, kill): stop the tool with it
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()

    def run(self, member: ScaledModel, cfg: Config, extra: dict) -> dict:
        name, folder = member.name, self.folder(member.name)
        os.makedirs(folder, exist_ok=True)
        state = self.state(name)
        if state.get('status') == TRAINING and process_alive(state.get('pid')):
            raise CandidateBusyError(f'candidate {name} is being trained by process {state["pid"]} (an earlier '
                                     'search still running?); stop it or use another --work-dir')
        config_path = osp.join(folder, 'config.py')
        cfg.dump(config_path)
        state.update(extra, name=name)
        if state.get('status') != TRAINED:
            resumed = state.get('status') == TRAINING
            state.update(status=TRAINING, started_at=state.get('started_at') if resumed else now())
            self._save(name, state)
            start = time.time()
            rc = self._run_tool([osp.join(self.tools_dir, 'train.py'), config_path, '--work-dir', folder, '--resume'],
                                osp.join(folder, 'train.log'), lambda pid: self._save(name, dict(state, pid=pid)))
            if rc != 0:
                state.update(status=FAILED, phase='train', returncode=rc, error=_tail(osp.join(folder, 'train.log')))
                self._save(name, state)
                return state
            with open(osp.join(folder, 'last_checkpoint')) as f:
                checkpoint = f.read().strip()
            state.update(
                status=TRAINED,
                checkpoint=checkpoint,
                trained_at=now(),
                train_seconds=round(state.get('train_seconds', 0) + time.time() - start, 1))
            state.pop('pid', None)
            self._save(name, state)
        start = time.time()
        eval_dir = osp.join(folder, 'eval')
        rc = self._run_tool(
            [osp.join(self.tools_dir, 'test.py'), config_path, state['checkpoint'], '--work-dir', eval_dir],
            osp.join(folder, 'test.log'), lambda pid: None)
        if rc != 0:
            state.update(status=FAILED, phase='test', returncode=rc, error=_tail(osp.join(folder, 'test.log')))
            self._save(name, state)
            return state
        state.update(
            status=DONE, metrics=read_metrics(eval_dir), finished_at=now(), eval_seconds=round(time.time() - start, 1))
        for key in ('phase', 'returncode', 'error'):
            state.pop(key, None)
        self._save(name, state)
        return state


def run_search(plan: Plan,
               work_dir: str,
               tools_dir: str,
               iters: int,
               seed: int,
               log: Callable[[str], None] = print,
               after_each: Optional[Callable[[Dict[str, dict]], None]] = None) -> Dict[str, dict]:
    """Train and evaluate every distinct candidate of ``plan`` that is not done yet; return the
    states by candidate name (``after_each`` sees them after every candidate). Candidates that
    build the same network as an earlier one are not trained again."""
    runner = CandidateRunner(work_dir, tools_dir, log)
    trainable = [m for m in plan.members if m.same_as is None]
    states = {}
    for i, member in enumerate(trainable, 1):
        prefix = f'[{i}/{len(trainable)}] {member.name}'
        state = runner.state(member.name)
        if state.get('status') == DONE:
            log(f'{prefix}: done earlier ({state.get("finished_at")}), skipped')
            states[member.name] = state
            continue
        what = {
            TRAINING: 'resuming training',
            TRAINED: 'evaluating',
            FAILED: 'retrying'
        }.get(state.get('status'), 'training')
        log(f'{prefix}: {what} ({iters} iters, {plan.ratio(member):.2f}x baseline MACs) '
            f'-> {runner.folder(member.name)}')
        cfg = search_config(member.scaled.cfg, iters, seed)
        extra = dict(
            alpha=member.coeffs.alpha,
            beta=member.coeffs.beta,
            gamma=member.coeffs.gamma,
            phi=member.phi,
            arch=member.arch,
            params=member.complexity.params,
            macs=member.complexity.macs,
            macs_ratio=plan.ratio(member))
        state = runner.run(member, cfg, extra)
        if state['status'] == DONE:
            log(f'{prefix}: done in {state.get("train_seconds")} s train + {state.get("eval_seconds")} s eval; ' +
                (', '.join(f'{k}={v:.4g}' for k, v in sorted(state['metrics'].items()))
                 or 'the evaluator reported no metric (e.g. mmdet\'s CocoMetric when the model detects '
                 'nothing yet: train longer); ranked last'))
        else:
            log(f'{prefix}: FAILED in {state.get("phase")} (exit {state.get("returncode")}); see '
                f'{runner.folder(member.name)}/{state.get("phase")}.log:\n{state.get("error", "")}')
        states[member.name] = state
        if after_each is not None:
            after_each(states)
    return states
