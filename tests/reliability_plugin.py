"""Test-only kill points: runs a tool (``python tests/reliability_plugin.py tools/train.py ARGS``)
with pauses at which the test SIGKILLs it, so that kills land at exact moments.

Environment variables (unset: the tool runs unchanged):

- ``MMEFFNET_TEST_PAUSE_AFTER_ITER=N``: once training iteration N (1-based) has completed, write
  the marker file and sleep: a kill there lands in the middle of an epoch.
- ``MMEFFNET_TEST_PAUSE_IN_SAVE=K``: in the K-th checkpoint save of this process, once the
  checkpoint's bytes are in their temporary file and before it is renamed onto its final name
  (the fsync in ``atomic_write_bytes``), write the marker and sleep: a kill there lands inside
  the save.
- ``MMEFFNET_TEST_MARKER``: the marker file's path.
"""
import os
import runpy
import sys
import time


def _pause(what: str) -> None:
    with open(os.environ['MMEFFNET_TEST_MARKER'], 'w') as f:
        f.write(what)
    while True:  # until killed
        time.sleep(1)


def install_pause_after_iter(iteration: int) -> None:
    from mmengine.runner.loops import EpochBasedTrainLoop
    run_iter = EpochBasedTrainLoop.run_iter

    def run_iter_then_pause(self, idx, data_batch):
        run_iter(self, idx, data_batch)
        if self._iter == iteration:
            _pause(f'after iteration {iteration}')

    EpochBasedTrainLoop.run_iter = run_iter_then_pause


def install_pause_in_save(save_number: int) -> None:
    from mmeffnet.checkpoint import atomic_write
    real_fsync, seen = os.fsync, []

    def fsync_then_maybe_pause(fd):
        real_fsync(fd)
        try:
            path = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            return
        name = os.path.basename(path)
        if name.endswith(atomic_write.TEMP_SUFFIX) and '.pth.' in name:
            seen.append(path)
            if len(seen) == save_number:
                _pause(path)

    atomic_write.os.fsync = fsync_then_maybe_pause  # the os module: only this process, only in tests


if __name__ == '__main__':
    if os.environ.get('MMEFFNET_TEST_PAUSE_AFTER_ITER'):
        install_pause_after_iter(int(os.environ['MMEFFNET_TEST_PAUSE_AFTER_ITER']))
    if os.environ.get('MMEFFNET_TEST_PAUSE_IN_SAVE'):
        install_pause_in_save(int(os.environ['MMEFFNET_TEST_PAUSE_IN_SAVE']))
    tool = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(tool)))
    runpy.run_path(tool, run_name='__main__')
