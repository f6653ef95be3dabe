"""The 4-bit layers under the libraries that use them: transformers' `load_in_4bit` (nf4 and
fp4, double quantization, compute dtype), generation, saving and reloading a 4-bit model;
PEFT's QLoRA recipe (prepare_model_for_kbit_training, LoRA training, merge_and_unload).
A tiny Llama built from a config: nothing is downloaded. Skipped where transformers or peft
are not installed."""
import pytest
import torch

import bitsandbytes as bnb

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


def _tiny_llama(tmp_path):
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    path = tmp_path / "fp32"
    model.save_pretrained(path)
    return model.eval(), path


def _load_4bit(path, device, quant_type, double_quant, compute_dtype):
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                             bnb_4bit_use_double_quant=double_quant,
                                             bnb_4bit_compute_dtype=compute_dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=config,
                                                             device_map={"": device}).eval()


@pytest.mark.parametrize("quant_type,double_quant", [("nf4", True), ("fp4", False)])
def test_load_in_4bit_generate_save_reload(tmp_path, device, quant_type, double_quant):
    ref, path = _tiny_llama(tmp_path)
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
    _, path = _tiny_llama(tmp_path)
    model = _load_4bit(path, device, "nf4", True, torch.float32)
    model = peft.prepare_model_for_kbit_training(model)
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0,
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (4, 16), device=device)
    losses = []
    model.train()
    for _ in range(30):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    with torch.no_grad():
        before = model(ids).logits
    merged = model.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_modules())
    with torch.no_grad():
        after = merged(ids).logits
    # merging re-quantizes the base weights with the adapters folded in: close, not identical
    cos = torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0)
    assert cos > 0.97, cos
