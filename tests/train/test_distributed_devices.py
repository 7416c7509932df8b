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
