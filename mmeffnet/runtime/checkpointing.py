"""Checkpoints that survive being killed at any moment, and resumes that find a good one.

mmengine's ``CheckpointHook`` writes a checkpoint straight to its final name, writes
``last_checkpoint`` in place, and (with ``max_keep_ckpts``) deletes the oldest checkpoint *before*
writing the new one; a job killed during a save can so be left with a half-written
``epoch_N.pth``, a ``last_checkpoint`` naming it (or an empty ``last_checkpoint``), and with
``max_keep_ckpts=1`` no good checkpoint at all. Resumed runs also re-seed instead of restoring the
random state, so their augmentation and drop-path draws differ from the uninterrupted run's.

Here:

- :func:`atomic_write_bytes` writes to a temporary name in the same folder, fsyncs, then
  ``os.replace``-s it onto the final name: a file under its final name is always complete.
  ``AtomicLocalBackend`` (file backend ``'atomic_local'``) applies it to mmengine's file I/O.
- :class:`SafeCheckpointHook` (``type='mmeffnet.SafeCheckpointHook'``, ``tools/train.py`` puts it
  in place of ``CheckpointHook`` with the same arguments) saves through that backend, rewrites
  ``last_checkpoint`` atomically and only after the checkpoint is complete, removes outdated
  checkpoints only after that, stores the random state of every process in the checkpoint and
  restores it on resume, and keeps validation from consuming the training random streams.
- :func:`find_resumable_checkpoint` is ``--resume`` with no file: the checkpoint
  ``last_checkpoint`` names if it loads, otherwise (with a warning naming the bad file and why)
  the newest other checkpoint of the work dir that does.
"""
import glob
import logging
import os
import os.path as osp
import uuid
from typing import List, Optional, Tuple

from mmengine.dist import get_rank, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..registry import HOOKS
from .rng_state import gather_rng_states, get_rng_state, set_rng_state
from .safe_load import safe_torch_load

ATOMIC_BACKEND = 'atomic_local'
LAST_CHECKPOINT = 'last_checkpoint'
TEMP_SUFFIX = '.partial'


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``,
    whatever happens (a kill, a full disk): temp file in the same folder, fsync, ``os.replace``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}')
    try:
        with open(temp, 'xb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def remove_stale_partials(folder: str) -> List[str]:
    """Delete the temp files of saves that were killed; returns their paths."""
    stale = glob.glob(osp.join(folder, f'.*{TEMP_SUFFIX}'))
    for path in stale:
        try:
            os.remove(path)
        except OSError:
            pass
    return stale


@register_backend(ATOMIC_BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local-disk backend whose ``put`` / ``put_text`` are atomic."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), str(filepath))


def is_local_path(path: str) -> bool:
    return '://' not in str(path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments and files) made safe to kill; see the
    module docstring. ``backend_args`` / ``file_client_args`` given for remote storage are used
    as they are (object stores replace objects atomically)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng_before_val: Optional[dict] = None
        self._loaded: Optional[Tuple[int, list]] = None  # (iter, rng states) of a loaded checkpoint

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and is_local_path(out_dir):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)
        if is_main_process() and is_local_path(self.out_dir):
            for path in remove_stale_partials(self.out_dir):
                runner.logger.info(f'removed {path}, left by a checkpoint save that was interrupted')
        self._restore_rng_if_resumed(runner)

    # --- saving -------------------------------------------------------------------------------
    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated = self._rotate(runner, step)
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        # collective: every process reaches this point at the same step
        local = self._rng_before_val if self._rng_before_val is not None else get_rng_state()
        meta = dict(meta or {}, rng_states=gather_rng_states(local))
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        # only now that the checkpoint is complete does last_checkpoint name it
        atomic_write_bytes(self.last_ckpt.encode(), osp.join(runner.work_dir, LAST_CHECKPOINT))
        for old in outdated:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
                self.file_backend.rmtree(path)

    def _rotate(self, runner, step) -> list:
        """Book ``step`` among the kept checkpoints; returns the steps to delete once it is saved."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        outdated = []
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            outdated.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return outdated

    # --- random state -------------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint) -> None:
        meta = checkpoint.get('meta') or {}
        if 'rng_states' in meta and 'iter' in meta:
            self._loaded = (meta['iter'], meta['rng_states'])

    def _restore_rng_if_resumed(self, runner) -> None:
        """Restore the random state saved with the checkpoint this run resumed from.

        A resumed run starts at the checkpoint's iteration; a run that only loaded weights
        (``load_from``) starts at 0 and keeps its fresh seed."""
        if self._loaded is None:
            return
        saved_iter, states = self._loaded
        self._loaded = None
        if runner.iter == 0 or runner.iter != saved_iter:
            return
        rank = get_rank()
        if rank >= len(states):
            runner.logger.warning(f'the checkpoint holds the random state of {len(states)} processes; '
                                  f'process {rank} keeps its fresh seed')
            return
        set_rng_state(states[rank])
        if rank == 0:
            runner.logger.info(f'restored the random state of {len(states)} process(es) saved at iteration '
                               f'{saved_iter}')

    def before_val(self, runner) -> None:
        # Validation (data loader iterators, random test-time ops) must not shift the training
        # random streams, or a run resumed after validation would differ from the uninterrupted one.
        self._rng_before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self._rng_before_val is not None:
            set_rng_state(self._rng_before_val)
            self._rng_before_val = None


# --- resuming -----------------------------------------------------------------------------------
def resumable_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (unreadable, truncated, not a training checkpoint), or None."""
    try:
        checkpoint = safe_torch_load(path, map_location='cpu')
    except (RuntimeError, FileNotFoundError) as exc:
        reason = str(exc)
        prefix = f'cannot load checkpoint {path}: '
        return reason[len(prefix):] if reason.startswith(prefix) else reason
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        return 'not a training checkpoint (no state_dict)'
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict) or 'iter' not in meta or 'epoch' not in meta:
        return 'no meta.epoch / meta.iter, so it cannot be resumed (it can be loaded with load_from)'
    return None


def _read_last_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        named = f.read().strip()
    return named or None


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) continues from: the one ``last_checkpoint`` names if it
    loads, else the newest other ``*.pth`` of ``work_dir`` that does (with a warning); None when
    the work dir holds no checkpoint at all.

    Raises:
        ValueError: checkpoints exist but none can be resumed from (each one and why is listed).
    """
    named = _read_last_checkpoint(work_dir)
    others = sorted((p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.abspath(p) != osp.abspath(named or '')),
                    key=osp.getmtime, reverse=True)
    candidates = ([named] if named else []) + others
    problems = []
    for path in candidates:
        problem = resumable_problem(path)
        if problem is None:
            if problems:
                print_log(f'--resume: {"; ".join(problems)}. Resuming from the previous good checkpoint '
                          f'{path} instead.', logger='current', level=logging.WARNING)
            return path
        source = f' (named in {osp.join(work_dir, LAST_CHECKPOINT)})' if path == named else ''
        problems.append(f'cannot use {path}{source}: {problem.rstrip(".")}')
    if problems:
        raise ValueError(f'--resume found no usable checkpoint in {work_dir}:\n  ' + '\n  '.join(problems))
    return None


def resolve_resume(resume: Optional[str], work_dir: str) -> Optional[str]:
    """The checkpoint ``tools/train.py --resume [CKPT]`` continues from (None: start afresh).

    ``resume`` is None (no ``--resume``), ``'auto'`` (:func:`find_resumable_checkpoint`) or a file,
    which must be a complete training checkpoint (``ValueError`` naming it otherwise).
    """
    if resume is None:
        return None
    if resume == 'auto':
        found = find_resumable_checkpoint(work_dir) if osp.isdir(work_dir) else None
        if found is None:
            print_log(f'--resume: no checkpoint in {work_dir} yet; starting from scratch', logger='current')
        return found
    problem = resumable_problem(resume)
    if problem is not None:
        raise ValueError(f'--resume {resume}: cannot resume from it: {problem}')
    return resume


def read_weights(path: str) -> dict:
    """The tensors of the checkpoint at ``path`` (read safely); a clear error naming the file when
    it is missing, unreadable or holds no tensors. Tools call it before building anything, so a
    bad checkpoint fails in a second, not after the model and the data are built."""
    from ..models.checkpoint import extract_state_dict, read_checkpoint
    return extract_state_dict(read_checkpoint(path), path)


def check_checkpoint_fits(model, path: str, state: Optional[dict] = None) -> None:
    """Raise ``CheckpointMismatchError`` listing missing / unexpected / mis-shaped keys unless the
    checkpoint at ``path`` (its tensors ``state`` when already read) has exactly ``model``'s
    weights (mmengine itself only logs mismatches and carries on with a half-loaded model).
    Loads the weights as a side effect."""
    from mmengine.model import is_model_wrapper

    from ..models.checkpoint import check_and_load
    model = model.module if is_model_wrapper(model) else model
    check_and_load(model, read_weights(path) if state is None else state, path)


def check_load_from(model, path: str) -> None:
    """Stop a ``load_from`` of a checkpoint that is unreadable or belongs to another model.

    mmengine loads ``load_from`` with ``strict=False`` and only logs mismatches, so a checkpoint of
    another network (another arch, another backbone) trains from mostly random weights without a
    word. Fine-tuning from a checkpoint whose *head* differs (another class count) is legitimate, so
    the rule is: error when no tensor fits (same name and shape), or when the backbone does not fit
    (a ``backbone.*`` tensor of another shape, or ``backbone.*`` tensors the model lacks); anything
    else that does not fit is logged as a warning with the counts. URLs are left to mmengine.
    """
    if not is_local_path(path):
        return
    from mmengine.model import is_model_wrapper

    from ..models.checkpoint import CheckpointMismatchError, extract_state_dict, read_checkpoint
    model = model.module if is_model_wrapper(model) else model
    state = extract_state_dict(read_checkpoint(path), path)
    own = model.state_dict()
    fitting = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    backbone_bad = [f'{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}' if k in own
                    else f'{k} (not in the model)'
                    for k in state if k.startswith('backbone.') and not k.endswith('num_batches_tracked')
                    and (k not in own or own[k].shape != state[k].shape)]
    if not fitting or backbone_bad:
        why = (f'none of its {len(state)} tensors fits this {type(model).__name__} by name and shape (its keys '
               f'look like {", ".join(list(state)[:3])}; the model\'s like {", ".join(list(own)[:3])})'
               if not fitting else f'its backbone is not this config\'s backbone ({len(backbone_bad)} backbone '
               f'tensors differ, e.g. {"; ".join(backbone_bad[:3])})')
        raise CheckpointMismatchError(
            f'load_from {path}: {why}: it is a checkpoint of another model. Use a checkpoint of this config\'s '
            'model, convert foreign backbone weights (tools/model_converters/convert_efficientnet.py), or load '
            'backbone weights only with model.backbone.init_cfg=dict(type="Pretrained", prefix="backbone", ...)')
    if len(fitting) < len(own):
        print_log(f'load_from {path}: {len(fitting)} of the model\'s {len(own)} tensors are loaded from it; the '
                  f'other {len(own) - len(fitting)} keep their initialization (fine-tuning with another head?)',
                  logger='current', level=logging.WARNING)
