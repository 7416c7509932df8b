"""Which device a rank trains on and where its collectives' tensors live: checked without GPUs
by standing in for torch.cuda and torch.distributed (the 2-rank runs themselves are gloo tests
in test_duplicate_masking, test_trainer and test_train_store_distributed)."""

import pytest
import torch
import torch.distributed as dist

from hbt_fast.train import components


@pytest.fixture
def gpus(monkeypatch):
    def machine_with(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return machine_with


def test_each_rank_trains_on_the_gpu_its_local_rank_names(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert components.pick_device() == torch.device("cuda", 1)


def test_more_ranks_than_gpus_is_refused_naming_the_way_out(gpus, monkeypatch):
    gpus(1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1, but this process sees 1 CUDA device\(s\).*"
                                         r"--nproc-per-node 1.*CUDA_VISIBLE_DEVICES="):
        components.pick_device()


def test_a_machine_without_gpus_trains_on_the_cpu(gpus, monkeypatch):
    gpus(0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert components.pick_device() == torch.device("cpu")


@pytest.mark.parametrize("backend, device", [("nccl", torch.device("cuda", 0)), ("gloo", torch.device("cpu"))])
def test_the_failure_flag_all_ranks_share_lives_where_the_backend_moves_tensors(backend, device, gpus, monkeypatch):
    """NCCL all-reduces CUDA tensors only: a CPU flag there fails every multi-GPU run at its
    first shared step (claiming the run folder)."""
    gpus(1)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda *group: backend)
    asked, make = [], torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda data, *, device=None, **kwargs:  # no GPU here: built on the CPU
                        asked.append(torch.device(device or "cpu")) or make(data, **kwargs))
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, *args, **kwargs: None)
    components.on_all_ranks(lambda: None, world_size=2, failure=RuntimeError("another rank failed"))
    assert asked == [device]


class _OldDDP:
    """DistributedDataParallel's signature before forward_sync_buffers (torch 2.11 has no such
    keyword: a 2-rank run there failed at wrapping the model)."""
    def __init__(self, module, device_ids=None, broadcast_buffers=True, find_unused_parameters=False):
        self.options = dict(broadcast_buffers=broadcast_buffers)

    def register_comm_hook(self, state, hook):
        self.hook = hook


class _NewDDP(_OldDDP):
    def __init__(self, module, device_ids=None, broadcast_buffers=None, find_unused_parameters=False,
                 forward_sync_buffers=None):
        self.options = dict(broadcast_buffers=broadcast_buffers, forward_sync_buffers=forward_sync_buffers)


@pytest.mark.parametrize("ddp, options", [
    (_OldDDP, dict(broadcast_buffers=False)),
    (_NewDDP, dict(broadcast_buffers=None, forward_sync_buffers=False)),  # the deprecated keyword left out
])
def test_buffers_are_not_synchronised_at_each_forward_under_old_and_new_torch(ddp, options, monkeypatch):
    from hbt_fast.train import step
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", ddp)
    wrapped = step.data_parallel(torch.nn.Linear(2, 2))
    assert wrapped.options == options and wrapped.hook is step._allreduce_sum
