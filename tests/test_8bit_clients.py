"""The 8-bit parts under the libraries that use them: transformers' `load_in_8bit` (LLM.int8()
layers, outlier threshold, skipped modules), generation, saving and reloading an 8-bit model;
PEFT's LoRA on an 8-bit model; and every bitsandbytes optimizer the transformers Trainer offers
by name (`optim="adamw_bnb_8bit"` and the rest), built by the Trainer itself, which also keeps
embeddings in 32-bit state through the optimizer manager. A tiny Llama built from a config:
nothing is downloaded. Skipped where transformers, accelerate or peft are not installed."""
import pytest
import torch

import bitsandbytes as bnb
from hf_clients import lora_train, merged_logits, tiny_llama

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


def _load_8bit(path, device, **kwargs):
    config = transformers.BitsAndBytesConfig(load_in_8bit=True, **kwargs)
    return transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=config,
                                                             device_map={"": device}).eval()


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_load_in_8bit_generate_save_reload(tmp_path, device, threshold):
    ref, path = tiny_llama(transformers, tmp_path)
    model = _load_8bit(path, device, llm_int8_threshold=threshold, llm_int8_skip_modules=["lm_head", "down_proj"])
    linears = {name: m for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear8bitLt)}
    # every projection but the skipped ones is an int8 layer holding int8 weights and row scales
    assert sorted({name.rsplit(".", 1)[-1] for name in linears}) == ["gate_proj", "k_proj", "o_proj", "q_proj",
                                                                       "up_proj", "v_proj"]
    assert not isinstance(model.lm_head, bnb.nn.Linear8bitLt)
    for m in linears.values():
        assert m.weight.dtype == torch.int8 and m.state.threshold == threshold
        assert m.weight.SCB is not None and m.weight.SCB.shape == (m.out_features,)
    ids = torch.randint(0, 128, (2, 12), device=device)
    with torch.no_grad():
        logits = model(ids).logits
        ref_logits = ref.to(device)(ids).logits
    assert torch.isfinite(logits).all()
    assert _cos(logits, ref_logits) > 0.99
    out = model.generate(ids[:1], max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 17)
    # an 8-bit checkpoint (int8 weights and SCB in the state dict), saved and loaded again,
    # gives the same model
    model.save_pretrained(tmp_path / "q8")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "q8", device_map={"": device}).eval()
    again_linears = {name: m for name, m in again.named_modules() if isinstance(m, bnb.nn.Linear8bitLt)}
    assert again_linears.keys() == linears.keys()
    for name, m in again_linears.items():
        assert torch.equal(m.weight.cpu(), linears[name].weight.cpu())
        assert torch.equal(m.weight.SCB.cpu(), linears[name].weight.SCB.cpu())
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)


def test_lora_on_8bit_trains_and_merges(tmp_path, device):
    peft = pytest.importorskip("peft")
    _, path = tiny_llama(transformers, tmp_path)
    model = _load_8bit(path, device)
    frozen = [(p, p.detach().clone()) for p in model.parameters() if p.dtype == torch.int8]
    assert frozen
    model, ids, losses = lora_train(peft, model, device)
    assert losses[-1] < 0.8 * losses[0], losses
    # the int8 base weights (the same parameters, now under PEFT's wrappers) are frozen: training
    # left them as they were
    trained = {id(p) for p in model.parameters()}
    for p, before in frozen:
        assert id(p) in trained and torch.equal(p, before)
    before, after = merged_logits(model, ids)
    # merging re-quantizes the base weights with the adapters folded in: close, not identical
    assert _cos(before, after) > 0.99


_TRAINER_OPTIMIZERS = {
    # name: (class, optim_bits, paged)
    "adamw_bnb_8bit": (bnb.optim.AdamW, 8, False),
    "adamw_8bit": (bnb.optim.AdamW, 8, False),
    "paged_adamw_32bit": (bnb.optim.AdamW, 32, True),
    "paged_adamw_8bit": (bnb.optim.AdamW, 8, True),
    "ademamix": (bnb.optim.AdEMAMix, 32, False),
    "ademamix_8bit": (bnb.optim.AdEMAMix, 8, False),
    "paged_ademamix_32bit": (bnb.optim.AdEMAMix, 32, True),
    "paged_ademamix_8bit": (bnb.optim.AdEMAMix, 8, True),
    "lion_32bit": (bnb.optim.Lion, 32, False),
    "lion_8bit": (bnb.optim.Lion, 8, False),
    "paged_lion_32bit": (bnb.optim.Lion, 32, True),
    "paged_lion_8bit": (bnb.optim.Lion, 8, True),
    "rmsprop_bnb": (bnb.optim.RMSprop, 32, False),
    "rmsprop_bnb_8bit": (bnb.optim.RMSprop, 8, False),
    "rmsprop_bnb_32bit": (bnb.optim.RMSprop, 32, False),
}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n=16, length=16):
        g = torch.Generator().manual_seed(2)
        self.ids = torch.randint(0, 128, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.mark.parametrize("optim", sorted(_TRAINER_OPTIMIZERS))
def test_trainer_builds_and_steps_each_optimizer(tmp_path, device, optim):
    cls, bits, paged = _TRAINER_OPTIMIZERS[optim]
    model, _ = tiny_llama(transformers, tmp_path)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "run"), optim=optim, learning_rate=1e-3,
                                          per_device_train_batch_size=4, max_steps=3, logging_steps=1,
                                          report_to=[], save_strategy="no", use_cpu=device == "cpu",
                                          dataloader_num_workers=0, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Batches())
    result = trainer.train()
    opt = trainer.optimizer
    opt = getattr(opt, "optimizer", opt)  # accelerate's wrapper
    assert isinstance(opt, cls), type(opt)
    assert opt.is_paged == paged
    assert torch.isfinite(torch.tensor(result.training_loss))
    # every parameter with a gradient moved, and its state is in the format asked for, except
    # the embedding, which the Trainer keeps in 32-bit state through the optimizer manager
    embed = model.get_input_embeddings().weight
    states = 0
    for name, p in model.named_parameters():
        if p.numel() >= 4096:
            assert not torch.equal(p.detach().cpu(), before[name].cpu()), name
        state = opt.state.get(p, {})
        if "state1" not in state:
            continue
        states += 1
        quantized = state["state1"].dtype == torch.uint8
        expect_8bit = bits == 8 and p is not embed and p.numel() >= 4096
        assert quantized == expect_8bit, (name, state["state1"].dtype)
    assert states > 0
