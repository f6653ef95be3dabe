"""The 4-bit layers under the libraries that use them: transformers' `load_in_4bit` (nf4 and
fp4, double quantization, compute dtype), generation, saving and reloading a 4-bit model;
PEFT's QLoRA recipe (prepare_model_for_kbit_training, LoRA training, merge_and_unload).
A tiny Llama built from a config: nothing is downloaded. Skipped where transformers or peft
are not installed."""
import pytest
import torch

import bitsandbytes as bnb
from hf_clients import lora_train, merged_logits, tiny_llama

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


def _load_4bit(path, device, quant_type, double_quant, compute_dtype):
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                             bnb_4bit_use_double_quant=double_quant,
                                             bnb_4bit_compute_dtype=compute_dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=config,
                                                             device_map={"": device}).eval()


@pytest.mark.parametrize("quant_type,double_quant", [("nf4", True), ("fp4", False)])
def test_load_in_4bit_generate_save_reload(tmp_path, device, quant_type, double_quant):
    ref, path = tiny_llama(transformers, tmp_path)
    model = _load_4bit(path, device, quant_type, double_quant, torch.float32)
    linears = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears and all(m.weight.bnb_quantized for m in linears)
    assert all(m.weight.quant_type == quant_type and m.weight.quant_state.nested == double_quant for m in linears)
    ids = torch.randint(0, 128, (2, 12), device=device)
    with torch.no_grad():
        logits = model(ids).logits
        ref_logits = ref.to(device)(ids).logits
    assert torch.isfinite(logits).all()
    cos = torch.nn.functional.cosine_similarity(logits.flatten(), ref_logits.flatten(), dim=0)
    assert cos > 0.9, cos
    out = model.generate(ids[:1], max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 17)
    # a 4-bit checkpoint, saved and loaded again, gives the same model
    model.save_pretrained(tmp_path / "q4")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "q4", device_map={"": device}).eval()
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in again.modules())
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)


def test_qlora_trains_and_merges(tmp_path, device):
    peft = pytest.importorskip("peft")
    _, path = tiny_llama(transformers, tmp_path)
    model = _load_4bit(path, device, "nf4", True, torch.float32)
    model, ids, losses = lora_train(peft, model, device)
    assert losses[-1] < 0.8 * losses[0], losses
    before, after = merged_logits(model, ids)
    # merging re-quantizes the base weights with the adapters folded in: close, not identical
    cos = torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0)
    assert cos > 0.97, cos
