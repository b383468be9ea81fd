import time

import torch

from speakerlm.pretrained.llm import llm_dir, load_llm


def test_smollm2_loads_from_the_package_and_answers():
    llm_dir()  # convert once (cached)
    started = time.perf_counter()
    model, tokenizer = load_llm()
    print(f"SmolLM2 cached load: {time.perf_counter() - started:.2f} s")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


def test_smollm2_takes_inputs_embeds_for_splicing():
    # the decoder-only backbone splices audio/speaker embeddings in through inputs_embeds
    model, tokenizer = load_llm()
    ids = tokenizer("Hello there", return_tensors="pt").input_ids
    embeds = model.get_input_embeddings()(ids)
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(inputs_embeds=embeds).logits
    assert torch.allclose(a, b, atol=1e-4)
