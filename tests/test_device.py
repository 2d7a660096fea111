"""hico.device: a job given GPUs that sees none stops loudly instead of training on the CPU."""

from __future__ import annotations

import socket

import pytest
import torch

from hico.cli import main
from hico.device import DeviceError, resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    """This node as a GPU job on a node whose driver or torch build gives no CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")


def test_a_job_given_gpus_without_cuda_names_the_host_and_the_torch_build(no_cuda):
    with pytest.raises(DeviceError) as e:
        resolve_device("auto", gpus=1)
    message = str(e.value)
    assert "given 1 GPU(s)" in message and socket.gethostname() in message
    assert f"torch {torch.__version__}" in message and "CUDA_VISIBLE_DEVICES='0'" in message
    assert "device: cpu" in message  # how to run on the CPU on purpose
    with pytest.raises(DeviceError, match="device 'cuda' was requested"):
        resolve_device("cuda", gpus=0)


def test_cpu_on_purpose_and_auto_without_gpus_run_on_the_cpu(no_cuda):
    assert resolve_device("cpu", gpus=2) == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not a torch device"):
        resolve_device("gpu0")


def test_auto_with_cuda_is_the_local_rank_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto", gpus=2) == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0", gpus=1) == torch.device("cuda", 0)


def test_the_cli_stops_a_gpu_job_on_a_cpu_node_with_one_line_and_exit_2(no_cuda, tmp_path, capsys):
    code = main(["evaluate", "--encoder", str(tmp_path / "encoder.pt"), "--data", str(tmp_path), "--folds",
                 str(tmp_path / "folds.csv"), "--fold", "0", "--gpus", "1", "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hico evaluate: error: this job was given 1 GPU(s)")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()
