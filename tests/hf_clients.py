"""What the tests of our layers under transformers and PEFT share: a tiny Llama built from a
config (nothing downloaded), and LoRA training on a quantized copy of it."""
import torch


def tiny_llama(transformers, tmp_path):
    """A 2-layer Llama (hidden 64, vocab 128), in eval mode, and the folder it was saved to."""
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    path = tmp_path / "fp32"
    model.save_pretrained(path)
    return model.eval(), path


def lora_train(peft, model, device, steps=30):
    """PEFT's QLoRA recipe on a quantized model: prepare_model_for_kbit_training, LoRA adapters
    on q, v and up projections, `steps` AdamW steps on one batch. Returns (the PEFT model in
    eval mode, the batch, the losses)."""
    model = peft.prepare_model_for_kbit_training(model)
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0,
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (4, 16), device=device)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), ids, losses


def merged_logits(model, ids):
    """The logits before and after merge_and_unload, which must leave no LoRA module."""
    with torch.no_grad():
        before = model(ids).logits
    merged = model.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_modules())
    with torch.no_grad():
        after = merged(ids).logits
    return before, after
