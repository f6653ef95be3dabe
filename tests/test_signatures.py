"""Positional calls written for the reference library's 0.45.5 release mean the same here,
and a positional `is_paged` of its current release (which dropped percentile_clipping and
block_wise) is refused with an explanation instead of clipping."""
import inspect

import pytest
import torch

import bitsandbytes as bnb

O = bnb.optim

# The reference's 0.45.5 positional parameters after `params`, per class.
ADAM_LIKE = ["lr", "betas", "eps", "weight_decay", "amsgrad", "optim_bits", "args", "min_8bit_size",
             "percentile_clipping", "block_wise", "is_paged"]
REFERENCE_POSITIONAL = {
    **{name: ADAM_LIKE for name in ["Adam", "Adam8bit", "Adam32bit", "PagedAdam", "PagedAdam8bit", "PagedAdam32bit",
                                    "AdamW", "AdamW8bit", "AdamW32bit", "PagedAdamW", "PagedAdamW8bit",
                                    "PagedAdamW32bit"]},
    "Lion": ["lr", "betas", "weight_decay", "optim_bits", "args", "min_8bit_size", "percentile_clipping", "block_wise",
             "is_paged"],
    "Lion8bit": ["lr", "betas", "weight_decay", "args", "min_8bit_size", "percentile_clipping", "block_wise",
                 "is_paged"],
    "Lion32bit": ["lr", "betas", "weight_decay", "args", "min_8bit_size", "percentile_clipping", "block_wise",
                  "is_paged"],
    "PagedLion": ["lr", "betas", "weight_decay", "optim_bits", "args", "min_8bit_size", "percentile_clipping",
                  "block_wise"],
    "PagedLion8bit": ["lr", "betas", "weight_decay", "args", "min_8bit_size", "percentile_clipping", "block_wise"],
    "PagedLion32bit": ["lr", "betas", "weight_decay", "args", "min_8bit_size", "percentile_clipping", "block_wise"],
    "SGD8bit": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "args", "min_8bit_size",
                "percentile_clipping", "block_wise"],
    "SGD32bit": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "args", "min_8bit_size",
                 "percentile_clipping", "block_wise"],
    "LARS8bit": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "args", "min_8bit_size",
                 "percentile_clipping", "max_unorm"],
    "LARS32bit": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "args", "min_8bit_size",
                  "percentile_clipping", "max_unorm"],
    "RMSprop8bit": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered", "args", "min_8bit_size",
                    "percentile_clipping", "block_wise"],
    "RMSprop32bit": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered", "args", "min_8bit_size",
                     "percentile_clipping", "block_wise"],
    "LAMB8bit": ["lr", "bias_correction", "betas", "eps", "weight_decay", "amsgrad", "adam_w_mode", "args",
                 "min_8bit_size", "percentile_clipping", "block_wise", "max_unorm"],
    "LAMB32bit": ["lr", "bias_correction", "betas", "eps", "weight_decay", "amsgrad", "adam_w_mode", "args",
                  "min_8bit_size", "percentile_clipping", "block_wise", "max_unorm"],
    "Adagrad8bit": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "optim_bits", "args",
                    "min_8bit_size", "percentile_clipping", "block_wise"],
    "Adagrad32bit": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "optim_bits", "args",
                     "min_8bit_size", "percentile_clipping", "block_wise"],
}


@pytest.mark.parametrize("name", sorted(REFERENCE_POSITIONAL))
def test_positional_parameters_are_the_references(name):
    params = list(inspect.signature(getattr(O, name)).parameters.values())
    positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == ["params"] + REFERENCE_POSITIONAL[name]


def _p():
    return [torch.nn.Parameter(torch.randn(64, 80))]  # 5120 values: 8-bit state at min_8bit_size 4096


def test_lion8bit_positional_call():
    # Lion8bit(params, lr, betas, weight_decay, args, min_8bit_size, percentile_clipping, block_wise, is_paged)
    opt = O.Lion8bit(_p(), 1e-3, (0.8, 0.9), 0.1, None, 100, 100, True, False)
    g = opt.param_groups[0]
    assert g["lr"] == 1e-3 and g["betas"] == (0.8, 0.9) and g["weight_decay"] == 0.1
    assert opt.args.min_8bit_size == 100 and opt.args.optim_bits == 8 and not opt.is_paged


@pytest.mark.parametrize("cls, args, checks", [
    (O.SGD8bit, (0.1, 0.9, 0, 1e-4, True, None, 1024, 100, True), dict(nesterov=True, momentum=0.9)),
    (O.LARS8bit, (0.1, 0.9, 0, 1e-4, False, None, 1024, 100, 0.5), dict(momentum=0.9)),
    (O.RMSprop8bit, (0.1, 0.9, 1e-6, 0, 0, False, None, 1024, 100, True), dict(alpha=0.9, eps=1e-6)),
    (O.LAMB8bit, (0.1, True, (0.8, 0.9), 1e-6, 0, False, True, None, 1024, 100, True, 0.5), dict(betas=(0.8, 0.9))),
])
def test_8bit_positional_calls(cls, args, checks):
    opt = cls(_p(), *args)
    for key, value in checks.items():
        assert opt.param_groups[0][key] == value
    assert opt.args.optim_bits == 8 and opt.args.min_8bit_size == 1024
    if cls in (O.LARS8bit, O.LAMB8bit):
        assert opt.args.max_unorm == 0.5


@pytest.mark.parametrize("cls, bits", [(O.Adam8bit, 8), (O.AdamW8bit, 8), (O.Adam32bit, 32), (O.AdamW32bit, 32)])
def test_adam_variants_ignore_optim_bits_and_is_paged(cls, bits):
    # (params, lr, betas, eps, weight_decay, amsgrad, optim_bits, args, min_8bit_size, percentile_clipping,
    #  block_wise, is_paged)
    opt = cls(_p(), 1e-3, (0.9, 0.99), 1e-8, 0.0, False, 32 if bits == 8 else 8, None, 4096, 100, True, True)
    assert opt.args.optim_bits == bits and not opt.is_paged


def test_adagrad8bit_ignores_optim_bits():
    opt = O.Adagrad8bit(_p(), 0.01, 0, 0, 0, 1e-10, 32)
    assert opt.args.optim_bits == 8


def test_paged_lion_is_paged():
    assert O.PagedLion(_p()).is_paged and O.PagedLion8bit(_p()).args.optim_bits == 8


@pytest.mark.parametrize("cls", [O.Adam8bit, O.AdamW, O.Lion8bit, O.SGD8bit, O.RMSprop, O.LARS])
def test_bool_percentile_clipping_is_refused(cls):
    kw = dict(lr=0.1) if cls in (O.SGD8bit, O.LARS) else {}
    with pytest.raises(TypeError, match="percentile_clipping.*is_paged"):
        cls(_p(), percentile_clipping=True, **kw)


def test_current_release_positional_is_paged_is_refused():
    # the current release: (params, lr, betas, eps, weight_decay, amsgrad, optim_bits, args, min_8bit_size, is_paged)
    with pytest.raises(TypeError, match="percentile_clipping"):
        O.AdamW(_p(), 1e-3, (0.9, 0.999), 1e-8, 1e-2, False, 8, None, 4096, True)


def test_variant_still_steps_like_torch():
    a, b = _p(), None
    b = [torch.nn.Parameter(a[0].detach().clone())]
    ours, ref = O.SGD32bit(a, 0.1, 0.9), torch.optim.SGD(b, 0.1, 0.9)
    for _ in range(3):
        a[0].grad = torch.randn(a[0].shape)
        b[0].grad = a[0].grad.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a[0], b[0])


def test_matmul_lt_state_idx():
    idx = torch.tensor([1, 4])
    state = bnb.MatmulLtState(idx=idx, threshold=6.0)
    assert state.idx is idx and state.threshold == 6.0
    # positional order as the reference's dataclass: ..., threshold (12), idx (13), is_training (14)
    args = [None, False] + [None] * 9 + [False, 6.0, idx, False]
    state = bnb.MatmulLtState(*args)
    assert state.idx is idx and state.is_training is False and state.threshold == 6.0
