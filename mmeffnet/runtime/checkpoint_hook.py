"""``mmeffnet.SafeCheckpointHook``: mmengine's ``CheckpointHook`` made safe to kill at any moment.

mmengine's ``CheckpointHook`` writes a checkpoint straight to its final name, writes
``last_checkpoint`` in place, and (with ``max_keep_ckpts``) deletes the oldest checkpoint *before*
writing the new one; a job killed during a save can so be left with a half-written
``epoch_N.pth``, a ``last_checkpoint`` naming it (or an empty one), and with ``max_keep_ckpts=1``
no good checkpoint at all. Resumed runs also re-seed instead of restoring the random state, so
their augmentation and drop-path draws differ from the uninterrupted run's.

:class:`SafeCheckpointHook` (same arguments and files; ``tools/train.py`` puts it in place of
``CheckpointHook``) saves through the atomic storage backend (``atomic_storage.py``), rewrites
``last_checkpoint`` atomically and only once the checkpoint is complete, removes outdated
checkpoints only after that, stores the random state of every process in the checkpoint and
restores it on resume (``rng_state.py``), and keeps validation from consuming the training
random streams. It is a subclass registered in the ``mmeffnet`` scope; mmengine's class is
not touched.
"""
import os.path as osp
from typing import Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ..checkpoint import atomic_write_bytes, is_local_path, remove_stale_partials
from ..registry import HOOKS
from .atomic_storage import atomic_backend_args
from .rng_state import gather_rng_states, get_rng_state, restore_resumed_rng_state, set_rng_state

#: The file of the work dir that names the last complete checkpoint (mmengine's convention).
LAST_CHECKPOINT = 'last_checkpoint'


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
        if self.backend_args is None and self.file_client_args is None:
            self.backend_args = atomic_backend_args(out_dir)
        super().before_train(runner)
        if is_main_process() and is_local_path(self.out_dir):
            for path in remove_stale_partials(self.out_dir):
                runner.logger.info(f'removed {path}, left by a checkpoint save that was interrupted')
        if self._loaded is not None:
            restore_resumed_rng_state(runner, *self._loaded)
            self._loaded = None

    # --- saving -------------------------------------------------------------------------------
    # mmengine 0.10's CheckpointHook saves in this one method (epoch and iteration saves alike);
    # overriding it is the only way to change the order of writing and deleting.
    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated = self._rotate(runner, step)
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        # collective: every process reaches this point at the same step
        local = self._rng_before_val if self._rng_before_val is not None else get_rng_state()
        meta = dict(meta or {}, rng_states=gather_rng_states(local))
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
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

    def before_val(self, runner) -> None:
        # Validation (data loader iterators, random test-time ops) must not shift the training
        # random streams, or a run resumed after validation would differ from the uninterrupted one.
        self._rng_before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self._rng_before_val is not None:
            set_rng_state(self._rng_before_val)
            self._rng_before_val = None
