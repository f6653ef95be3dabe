"""bnb.utils helpers, the paged-memory helpers of bnb.functional and the Optimizer8bit members
subclass authors use, checked against plain torch."""
import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes import utils


def test_pack_dict_round_trip():
    d = {"a": 1, "b": [1.5, "x"], "c": {"d": None}}
    t = utils.pack_dict_to_tensor(d)
    assert t.dtype == torch.uint8 and t.dim() == 1
    assert bytes(t.tolist()).decode() == __import__("json").dumps(d)
    assert utils.unpack_tensor_to_dict(t) == d


def test_pack_dict_bad_input():
    with pytest.raises(TypeError, match="source_dict"):
        utils.pack_dict_to_tensor({"t": torch.zeros(1)})
    with pytest.raises(TypeError, match="tensor_data"):
        utils.unpack_tensor_to_dict(torch.zeros(3))


def test_weight_format_mappings():
    assert utils.LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING == {"row": 0, "col32": 1, "col_turing": 2, "col_ampere": 3}
    assert utils.INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING == {0: "row", 1: "col32", 2: "col_turing",
                                                                3: "col_ampere"}


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2, bias=False))
        self.lm_head = torch.nn.Linear(2, 5)


class _Marked(torch.nn.Linear):
    def post(self, module):
        self.posted = module is self


def test_replace_linear():
    net = _Net()
    old = net.block[0].weight
    utils.replace_linear(net, _Marked, copy_weights=True, post_processing_function="post")
    assert type(net.block[0]) is _Marked and type(net.block[2]) is _Marked
    assert type(net.lm_head) is torch.nn.Linear  # skipped by default
    assert net.block[0].weight is old and net.block[2].bias is None
    assert net.block[0].posted
    net2 = utils.replace_linear(_Net(), _Marked, skip_modules=())
    assert type(net2.lm_head) is _Marked


def test_find_outlier_dims_against_torch():
    w = torch.randn(64, 32)
    w[:, 5] *= 30
    assert utils.find_outlier_dims(w).tolist() == [5]
    std = w.std(0)
    z = (std - std.mean()) / std.std()
    assert utils.find_outlier_dims(w, zscore=1.0).tolist() == torch.where(z > 1.0)[0].tolist()
    assert set(utils.find_outlier_dims(w, topk=3).tolist()) == set(torch.topk(std, 3).indices.tolist())
    with pytest.raises(ValueError, match="topk"):
        utils.find_outlier_dims(w, rdm=True)


def test_outlier_tracer():
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 8))
    with torch.no_grad():
        model[1].weight[:, 7] *= 50
    tracer = utils.OutlierTracer.get_instance()
    assert utils.OutlierTracer.get_instance() is tracer
    with pytest.raises(RuntimeError, match="get_instance"):
        utils.OutlierTracer()
    tracer.initialize(model)
    x = torch.randn(4, 16)
    x[:, 3] = 10.0  # |x| > 6: an outlier dimension of the first layer's input
    model(x)
    assert 3 in tracer.get_outliers(model[0].weight).tolist()
    assert tracer.get_outliers(model[1].weight).tolist() == [7]
    model(x)  # the second pass removes the hooks
    assert all(not m._forward_pre_hooks for m in model)


def test_get_paged_and_prefetch_on_cpu():
    t = F.get_paged(3, 4, dtype=torch.float16, device="cpu")
    assert t.is_paged and t.shape == (3, 4) and t.dtype == torch.float16 and not t.any()
    F.prefetch_tensor(t)  # a no-op off the GPU
    with pytest.raises(ValueError, match="paged"):
        F.prefetch_tensor(torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        F.get_paged(3, -1, device="cpu")
    mng = F.GlobalPageManager.get_instance()
    assert F.GlobalPageManager.get_instance() is mng
    with pytest.raises(RuntimeError, match="get_instance"):
        F.GlobalPageManager()
    mng.prefetch_all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_get_paged_on_cuda():
    t = F.get_paged(1000, 10, device="cuda")
    assert t.is_cuda and t.is_paged and t.page_deviceid == torch.cuda.current_device() and not t.any()
    t.add_(1)
    F.prefetch_tensor(t)
    assert t.sum().item() == 10000


def test_optimizer8bit_members():
    p = torch.nn.Parameter(torch.randn(10))
    opt = bnb.optim.Adam8bit([p])
    opt.fill_qmap()
    assert torch.equal(opt.name2qmap["dynamic"], F.create_dynamic_map(signed=True))
    assert torch.equal(opt.name2qmap["udynamic"], F.create_dynamic_map(signed=False))
    buf = opt.get_state_buffer(p, dtype=torch.uint8)
    assert buf.shape == p.shape and buf.dtype == torch.uint8 and not buf.any()
    paged = bnb.optim.PagedAdam([p])
    big = torch.nn.Parameter(torch.zeros(100_000))
    n = len(paged.page_mng.paged_tensors)
    buf = paged.get_state_buffer(big)
    assert buf.is_paged and paged.page_mng.paged_tensors[n] is buf
    paged.page_mng.paged_tensors.pop(n)


@pytest.mark.parametrize("cls, ref, kw", [(bnb.optim.Adam, torch.optim.Adam, {}),
                                         (bnb.optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9))])
def test_update_step_one_parameter_at_a_time(cls, ref, kw):
    a = [torch.nn.Parameter(torch.randn(20, 10)), torch.nn.Parameter(torch.randn(7))]
    b = [torch.nn.Parameter(x.detach().clone()) for x in a]
    ours, theirs = cls(a, **kw), ref(b, **kw)
    for _ in range(3):
        for x, y in zip(a, b):
            x.grad = torch.randn(x.shape)
            y.grad = x.grad.clone()
        for pindex, x in enumerate(a):
            ours.update_step(ours.param_groups[0], x, 0, pindex)
        theirs.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        assert ours.state[x]["step"] == 3


class _PlainSGD(bnb.optim.Optimizer8bit):
    """A subclass written as the reference's docs show: its own init_state and update_step."""

    def __init__(self, params, lr):
        super().__init__(params, dict(lr=lr))

    def init_state(self, group, p, gindex, pindex):
        self.state[p]["state1"] = self.get_state_buffer(p)

    def update_step(self, group, p, gindex, pindex):
        p.add_(p.grad, alpha=-group["lr"])


def test_subclass_with_its_own_update_step():
    p = torch.nn.Parameter(torch.ones(5))
    opt = _PlainSGD([p], lr=0.5)
    p.grad = torch.full((5,), 2.0)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.zeros(5))
    assert "state1" in opt.state[p]


def test_base_update_step_must_be_overridden():
    class Bare(bnb.optim.Optimizer8bit):
        def init_state(self, group, p, gindex, pindex):
            pass
    p = torch.nn.Parameter(torch.ones(5))
    p.grad = torch.ones(5)
    with pytest.raises(NotImplementedError, match="update_step"):
        Bare([p], dict(lr=1.0)).step()
