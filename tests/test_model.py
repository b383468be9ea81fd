"""SpeakerLM end to end: both backbones overfit a clip in all three registration modes (plumbing
proof), the pointer names speakers, and checkpoints reload to identical outputs."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from speakerlm.audio import SAMPLE_RATE, load_audio
from speakerlm.features import frame_speaker_stream, log_mel_windows, n_frames
from speakerlm.checkpoint import load_model, save, trained_state_dict
from speakerlm.decoding import (FALLBACK_TEMPERATURES, Decoded, _compression_ratio, _decode, _looping, decode,
                                decode_beam_batch, decode_greedy_batch, until_repeated)
from speakerlm.model import Example, SpeakerLM, SpeakerLMConfig
from speakerlm.pretrained.speaker_encoder import load_speaker_encoder
from speakerlm.train import TrainConfig, set_trainable
from speakerlm.turns import Turn, target_turns
from tests.conftest import SENTENCES


@pytest.fixture(scope="module")
def clip(tts):
    """A 2-speaker clip (rms then slt), its reference, and enrolment embeddings from other sentences."""
    gap = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    wave = np.concatenate([load_audio(tts("rms", "chicken")), gap, load_audio(tts("slt", "juice"))])
    enc = load_speaker_encoder("campp")
    prints = {name: torch.tensor(enc.embed(load_audio(tts(voice, key))))
              for name, voice, key in [("Ann", "rms", "well"), ("Ben", "slt", "rice"), ("Cat", "awb", "glue")]}
    reference = [Turn("Ann", SENTENCES["chicken"]), Turn("Ben", SENTENCES["juice"])]
    return wave, reference, prints


def examples(model, clip):
    wave, reference, prints = clip
    proc = model.backbone.processor
    frames = n_frames(wave)
    with torch.no_grad():
        audio = model.encode_audio(log_mel_windows(proc, wave), frames)
    stream = frame_speaker_stream(load_speaker_encoder("campp"), wave, frames)
    match = Example(audio, stream, [("Ann", prints["Ann"]), ("Ben", prints["Ben"])], reference)
    over = Example(audio, stream, [("Cat", prints["Cat"]), ("Ben", prints["Ben"]), ("Ann", prints["Ann"])], reference)
    no = Example(audio, stream, [], target_turns(reference))
    return [match, over, no]


def overfit(model, batch, steps=80, lr=1e-3, stop=0.02):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        _, loss = model(batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if loss.item() < stop:
            break
    return model.eval(), loss.item()


@pytest.fixture(scope="module")
def trained_whisper(clip):
    torch.manual_seed(0)
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="whisper")), TrainConfig(train_llm=True))
    batch = examples(model, clip)
    model, loss = overfit(model, batch, lr=3e-4)
    return model, batch, loss


def test_whisper_backbone_overfits_all_three_modes(trained_whisper):
    model, batch, loss = trained_whisper
    assert loss < 0.05
    match, over, no = (decode(model, ex) for ex in batch)
    assert match == over == batch[0].turns  # names from the pointer, distractor Cat never written
    assert no == [Turn("spk 0", SENTENCES["chicken"]), Turn("spk 1", SENTENCES["juice"])]


def test_teacher_forced_pointer_picks_the_trained_speakers(trained_whisper):
    model, batch, _ = trained_whisper
    for ex in batch:
        chosen, target = model.teacher_forced_speakers(ex)
        assert len(target) == 2 and chosen == target
    assert model.teacher_forced_speakers(batch[1])[1] == [2, 1]  # Ann and Ben sit at slots 2 and 1 there


def test_registration_order_does_not_change_names(trained_whisper):
    model, batch, _ = trained_whisper
    match = batch[0]
    reordered = Example(match.audio, match.frame_speaker, list(reversed(match.slots)), match.turns)
    assert decode(model, reordered) == decode(model, match)


def test_checkpoint_round_trip(trained_whisper, tmp_path):
    model, batch, _ = trained_whisper
    save(model, tmp_path / "ckpt")
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "ckpt" / "trained.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    saved = set(trained_state_dict(model))
    assert not any(k.startswith("backbone.encoder.") for k in saved)  # frozen encoder is not stored
    again = load_model(tmp_path / "ckpt")
    for ex in batch:
        assert decode(again, ex) == decode(model, ex)


def test_pointer_targets_never_name_a_distractor(trained_whisper):
    model, batch, _ = trained_whisper
    over = batch[1]  # slots: Cat (distractor), Ben, Ann
    _, _, labels, positions, classes = model._sequence(over)
    assert classes == [2, 1] and len(positions) == 2
    assert all(labels[p] == -100 for p in positions)  # the marker's successor is the pointer's, not the LM's


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A tiny random Qwen2 with SmolLM2's tokenizer, saved as a local HF directory."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from speakerlm.pretrained.llm import llm_dir

    path = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = AutoTokenizer.from_pretrained(llm_dir())
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def trained_decoder(clip, tiny_qwen):
    torch.manual_seed(0)
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen, lora_rank=0)),
                          TrainConfig(train_llm=True))
    batch = examples(model, clip)
    model, loss = overfit(model, batch, steps=150, lr=3e-3)
    return model, batch, loss


@pytest.mark.slow
def test_decoder_only_backbone_overfits_all_three_modes(trained_decoder):
    model, batch, loss = trained_decoder
    assert loss < 0.05
    assert [decode(model, ex) for ex in batch] == [batch[0].turns, batch[0].turns, batch[2].turns]


@pytest.mark.slow
def test_decoder_only_beam_search_keeps_the_speakers(trained_decoder):
    """Beam search on the decoder backbone's batched cache: deterministic, speakers from the pointer.
    (Its words may differ from greedy's on a tiny random LLM: length normalisation can prefer a
    shorter, surer hypothesis.)"""
    model, batch, _ = trained_decoder
    beam = decode(model, batch[0], num_beams=2)
    assert beam == decode(model, batch[0], num_beams=2)
    assert [t.speaker for t in beam] == ["Ann", "Ben"] and beam[0].text.startswith("These days")


@pytest.fixture(scope="module")
def tiny_qwen_bf16(tmp_path_factory):
    """A tiny random Qwen2 saved in bf16 (as Qwen2.5-7B-Instruct ships), SmolLM2's ChatML tokenizer
    (EOS `<|im_end|>`, as Qwen's Instruct models)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from speakerlm.pretrained.llm import llm_dir

    path = tmp_path_factory.mktemp("tiny-qwen2-bf16")
    tokenizer = AutoTokenizer.from_pretrained(llm_dir())
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, dtype="bfloat16")
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_chatml_turn_token_is_its_own_token_never_eos(tiny_qwen_bf16):
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(tiny_qwen_bf16)
    assert original.eos_token == "<|im_end|>"
    backbone = SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen_bf16)).backbone
    tokenizer = backbone.tokenizer
    assert backbone.eos_id == original.convert_tokens_to_ids("<|im_end|>")
    assert backbone.turn_id == len(original)  # a new id: no token the LLM already knew
    assert backbone.turn_id not in {backbone.eos_id, original.eos_token_id, original.pad_token_id}
    assert tokenizer.convert_ids_to_tokens(backbone.turn_id) == backbone.TURN_TOKEN
    assert backbone.llm.get_input_embeddings().weight.shape[0] > backbone.turn_id  # a row for it
    assert tokenizer.encode("Alice: hi", add_special_tokens=False) == original.encode("Alice: hi", add_special_tokens=False)


def test_bf16_llm_trains_with_float32_heads_and_decodes(clip, tiny_qwen_bf16):
    """bf16 LLM weights (frozen), float32 LoRA adapters and heads, bf16 autocast: no dtype mismatch,
    the loss falls, decoding runs. A float32 model of the same bf16 checkpoint loads as float32."""
    fp32 = SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen_bf16, lora_rank=4))
    assert fp32.backbone.llm.get_input_embeddings().weight.dtype == torch.float32
    torch.manual_seed(0)
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen_bf16, lora_rank=4,
                                                    llm_dtype="bfloat16")),
                          TrainConfig(train_llm=True, gradient_checkpointing=True))
    assert model.backbone.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    batch = examples(fp32, clip)[:1]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(6):
        _, loss = model(batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    model.eval()
    turns = decode(model, batch[0], max_new_tokens=8)
    assert all(t.speaker in {"Ann", "Ben"} for t in turns)


def test_gradient_checkpointing_gives_the_same_gradients(clip, tiny_qwen):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen, lora_rank=4)),
                              TrainConfig(train_llm=True, gradient_checkpointing=checkpointing)).train()
        batch = examples(model, clip)[:1]
        model(batch)[1].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("lora_" in n for n in grads[0])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_stage1_asr_example_has_no_turns_or_speakers(trained_whisper):
    """Stage 1's data mode: the words alone, Whisper's own prompt (no registration region), no turn
    marker among the labels; decoding writes one turn with no speaker."""
    model, batch, _ = trained_whisper
    words = " ".join(t.text for t in batch[0].turns)
    asr = Example(batch[0].audio, batch[0].frame_speaker, [], [Turn("", words)], task="asr")
    embeds, _, labels, positions, classes = model._sequence(asr)
    backbone = model.backbone
    assert positions == [] and classes == [] and backbone.turn_id not in labels
    response = [t for t in labels if t != -100]
    assert response == backbone.tokenize(" " + words) + [backbone.eos_id]
    prompt, _ = backbone.prompt(asr.audio, [], [], "asr")
    assert torch.equal(prompt, backbone.embed_tokens(torch.tensor(backbone.prefix_ids())))  # sot, notimestamps
    out = decode(model, asr)
    assert len(out) == 1 and out[0].speaker == ""


def test_batched_greedy_decoding_writes_what_each_clip_alone_writes(trained_whisper):
    """Clips of different lengths, registrations and tasks decoded as one batch: each row's answer is
    the one-clip decode's, through padding, per-row cross-attention masks and rows that end early."""
    model, batch, _ = trained_whisper
    match, over, no = batch
    cut = match.audio.shape[0] * 3 // 5  # a shorter memory: the first speaker and part of the second
    short = Example(match.audio[:cut], match.frame_speaker[:cut], match.slots)
    asr = Example(match.audio, match.frame_speaker, [], task="asr")
    clips = [match, over, short, no, asr]
    budgets = [400, 400, 400, 6, 400]  # one clip stops at its token budget
    alone = [decode(model, ex, n) for ex, n in zip(clips, budgets)]
    assert decode_greedy_batch(model, clips, budgets) == alone
    assert alone[0] == batch[0].turns and len(alone[3]) <= 2 and alone[2] != alone[0]
    # the hidden states themselves, not only the overfit model's sure answers
    from transformers import DynamicCache

    backbone = model.backbone
    with torch.inference_mode():
        inputs = [backbone.prompt(model.memory(ex), [model.speaker_projector(e) for _, e in ex.slots],
                                  [n for n, _ in ex.slots], ex.task) for ex in clips]
        rows = backbone.batch([p for p, _ in inputs], [m for _, m in inputs])
        nxt = backbone.embed_tokens(torch.tensor([backbone.eos_id - 1] * len(clips)))
        stepped = rows.step(nxt)
        for i, (prompt, memory) in enumerate(inputs):
            hidden, cache = backbone.run(prompt[None], torch.ones(1, len(prompt)), memory[None], DynamicCache())
            then, _ = backbone.run(nxt[i][None, None], torch.ones(1, len(prompt) + 1), memory[None], cache)
            assert torch.allclose(stepped[i], then[0, -1], atol=1e-4), i


def test_batched_beam_search_finds_what_each_clip_alone_finds(trained_whisper):
    """Clips of different lengths, registrations and tasks searched as one batch, their beams rows that
    share the clip's audio: each clip's answer is the one-clip search's, for the overfit model and for
    an untrained one, whose uncertain words make the beams part ways (and differ from greedy)."""
    model, batch, _ = trained_whisper
    match, over, no = batch
    short = Example(match.audio[: match.audio.shape[0] // 2], match.frame_speaker[: match.audio.shape[0] // 2], match.slots)
    asr = Example(match.audio, match.frame_speaker, [], task="asr")
    clips, budgets = [match, over, short, no, asr], [400, 400, 400, 6, 400]
    for beams in (2, 3):
        found = decode_beam_batch(model, clips, budgets, beams)
        assert [d.turns for d in found] == [decode(model, ex, n, num_beams=beams) for ex, n in zip(clips, budgets)]
    assert found[0].turns == match.turns
    torch.manual_seed(1)
    untrained = SpeakerLM(replace(model.config, timestamps=True)).eval()
    budgets = [40, 25, 40, 6, 30]
    found = decode_beam_batch(untrained, clips, budgets, 3)
    alone = [decode(untrained, ex, n, num_beams=3) for ex, n in zip(clips, budgets)]
    assert [d.turns for d in found] == alone
    assert alone != [decode(untrained, ex, n) for ex, n in zip(clips, budgets)]
    assert untrained.backbone.time_ids  # so each step went through the time rule, in both searches


def test_word_fusion_feeds_whisper_the_words_and_lets_it_choose_them(trained_whisper):
    """The pretrained decoder beside the model reads exactly the words written, never a marker or a
    speaker; at weight 0 the answer is the model's own, at weight 1 every word is Whisper's choice."""
    from speakerlm.decoding import WordFusion

    model, batch, _ = trained_whisper
    pretrained = SpeakerLM(model.config).backbone.eval()

    class Spy(WordFusion):
        def start(self, ex):
            self.fed, self.best = [], []
            super().start(ex)

        def fuse(self, logprobs):
            words = self.backbone.eos_id
            self.best.append(int(self.backbone.logits(self.row.last)[0, :words].argmax()))
            return super().fuse(logprobs)

        def advance(self, token):
            self.fed.append((token, self.best[-1] if self.best else None))
            super().advance(token)

    for ex in batch:
        spy = Spy(pretrained, 0.0)
        turns = decode(model, ex, fusion=spy)
        assert turns == decode(model, ex)
        written = [i for t in turns for i in model.backbone.tokenize(" " + t.text)]
        assert [token for token, _ in spy.fed] == written
        spy = Spy(pretrained, 1.0)
        decode(model, ex, fusion=spy)
        assert spy.fed and all(token == best for token, best in spy.fed)
    # in greedy batches, Whisper's rows step only on their own clip's words: the answers one by one
    for weight in (0.5, 1.0):
        alone = [decode(model, ex, fusion=WordFusion(pretrained, weight)) for ex in batch]
        assert decode_greedy_batch(model, batch, [400] * 3, fusion=WordFusion(pretrained, weight)) == alone


def test_whisper_view_is_the_words_and_times_without_markers_or_speakers():
    """Whisper reads the prefix, then the targets' times and words; each word token is predicted at
    a pair of positions that predict the same token on both sides."""
    from speakerlm.model import IGNORE, whisper_view

    turn, eos, words = 900, 50, 50  # toy ids: text tokens < 50, times 60+, the end 50
    #         prompt          t0   [TURN] [SPK]   w1  w2   t1   t1   [TURN] [SPK]   w3  t2   end
    labels = [IGNORE] * 3 + [60, turn, IGNORE, 11, 12, 61, 61, turn, IGNORE, 13, 62, eos]
    ids, pairs = whisper_view(labels, [1, 2], turn, words)
    assert ids == [1, 2, 60, 11, 12, 61, 61, 13, 62]
    assert [labels[p] for p, _ in pairs] == [11, 12, 13]
    assert [ids[q + 1] for _, q in pairs] == [11, 12, 13]  # Whisper's position q predicts ids[q + 1]


def test_whisper_divergence_grows_as_the_decoder_leaves_whisper(trained_whisper, clip):
    """The pretrained decoder with new heads stays closer to Whisper's next words than one fine-tuned on
    the clip; the divergence is what training with it lowers."""
    model, batch, _ = trained_whisper
    pretrained = SpeakerLM(model.config).backbone.eval()

    def divergence(m, right_only=False):
        with torch.no_grad():
            logits, _, seqs = m._forward(batch)
            return float(m.whisper_divergence(pretrained, batch, seqs, logits, right_only))

    torch.manual_seed(0)
    fresh = SpeakerLM(model.config).eval()
    near, far = divergence(fresh), divergence(model)
    assert 0 < near < far
    # only where Whisper predicts the target word: here it predicts every word, so the same mean; with
    # a word it cannot hear in the targets, that word is left out and the mean changes
    assert divergence(model, right_only=True) == pytest.approx(far)
    misheard = [replace(ex, turns=[replace(t, text=t.text.replace(t.text.split()[1], "zebra", 1)) for t in ex.turns])
                for ex in batch]
    with torch.no_grad():
        logits, _, seqs = model._forward(misheard)
        everywhere = float(model.whisper_divergence(pretrained, misheard, seqs, logits))
        right = float(model.whisper_divergence(pretrained, misheard, seqs, logits, right_only=True))
    assert 0 < right and right != pytest.approx(everywhere)
    tuned = set_trainable(SpeakerLM(model.config), TrainConfig(train_llm=True))
    tuned.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(3):
        logits, _, seqs = tuned._forward(batch)
        tuned.whisper_divergence(pretrained, batch, seqs, logits).backward()
        opt.step()
        opt.zero_grad()
    assert divergence(tuned.eval()) < far


def test_int8_shortlist_decodes_what_the_float32_output_layer_decodes(trained_whisper):
    """Greedy batches with the int8 copy of the output layer pick each token from its shortlist,
    computed exactly: the same transcripts as the float32 layer, one clip at a time or several."""
    import copy

    from speakerlm.decoding import _greedy_choice

    model, batch, _ = trained_whisper
    packed = copy.deepcopy(model)
    packed.backbone.add_int8_output_layer()
    assert packed.backbone.output_int8 is not None
    with torch.inference_mode():
        hidden = torch.randn(3, model.backbone.d_model)
        exact = model.logits(hidden)
        exact[:, model.backbone.suppressed] = float("-inf")
        chosen = _greedy_choice(packed, hidden, [[], [], []])
        assert torch.equal(chosen.indices, exact.argmax(-1))
        assert torch.allclose(chosen.values, exact.log_softmax(-1).max(-1).values, atol=0.05)
    alone = [decode(model, ex) for ex in batch]
    assert decode_greedy_batch(packed, batch, [400] * 3) == alone
    assert decode_greedy_batch(packed, batch[:1], [400]) == alone[:1]


def test_lora_trains_adapters_and_projectors_only(tiny_qwen):
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="decoder", llm=tiny_qwen, lora_rank=4)),
                          TrainConfig(train_llm=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any(n.startswith("speaker_projector") for n in trainable)
    assert not any(n.startswith("backbone.llm.") and "lora_" not in n for n in trainable)
    assert not any(n.startswith("backbone.audio_encoder.") for n in trainable)


def test_loop_guard():
    assert _looping((5, 7, 7, 7, 7, 7), limit=4) and _looping((1, 2) * 5, limit=4)
    assert not _looping((1, 2, 3, 4, 5, 6, 7, 8), limit=4)


def test_presence_bias_favours_voices_heard_in_the_audio(trained_whisper):
    model, batch, _ = trained_whisper
    over = batch[1]  # slots Cat (absent), Ben, Ann
    with torch.no_grad():
        bias = model.presence_bias(over)
    assert bias.shape == (3,) and bias[1] > bias[0] and bias[2] > bias[0]
    no_stream = Example(over.audio, None, over.slots, over.turns)
    assert model.presence_bias(no_stream) is None


def test_beam_search_reproduces_the_overfit_transcripts(trained_whisper):
    model, batch, _ = trained_whisper
    for ex in batch:
        beam = decode(model, ex, num_beams=3)
        assert beam == decode(model, ex)  # an overfit model is sure of its words: beams agree with greedy
        assert beam == decode(model, ex, num_beams=3)  # deterministic


def test_fallback_keeps_a_confident_answer_and_resamples_a_failing_one(trained_whisper, clip):
    model, batch, _ = trained_whisper
    sure = _decode(model, batch[0], 400, 1, 4)
    assert sure.passes and decode(model, batch[0], temperatures=FALLBACK_TEMPERATURES) == sure.turns
    torch.manual_seed(1)
    fresh = SpeakerLM(SpeakerLMConfig(backbone="whisper")).eval()  # untrained projectors: the decoder is lost
    ex = examples(fresh, clip)[2]
    with torch.inference_mode():
        tried = [_decode(fresh, ex, 60, 1, 4, t) for t in (0.0, 0.6)]
    assert not tried[0].passes and tried[1].turns != tried[0].turns  # sampling took another path
    out = decode(fresh, ex, max_new_tokens=60, temperatures=(0.0, 0.6))
    assert out == decode(fresh, ex, max_new_tokens=60, temperatures=(0.0, 0.6))  # seeded: runs repeat
    expected = tried[1] if tried[1].passes else max(tried, key=lambda d: d.avg_logprob)
    assert out == expected.turns and out != tried[0].turns  # the failing greedy answer was replaced
    # a greedy batch's checked answers lead to the same fallback, without decoding temperature 0 again
    other = examples(fresh, clip)[0]
    with torch.inference_mode():
        alone = _decode(fresh, other, 60, 1, 4)
    batched = decode_greedy_batch(fresh, [ex, other], [60, 60], checked=True)
    assert [d.turns for d in batched] == [tried[0].turns, alone.turns] and not batched[0].passes
    assert decode(fresh, ex, max_new_tokens=60, temperatures=(0.0, 0.6), greedy=batched[0]) == out


def test_whisper_checks_flag_repetition_and_improbable_answers():
    assert _compression_ratio("we will meet on monday. " * 8) > 2.4 > _compression_ratio("we will meet on monday.")
    assert Decoded([], -0.4, 1.2, False).passes
    assert not Decoded([], -1.3, 1.2, False).passes and not Decoded([], -0.4, 3.0, False).passes
    assert not Decoded([], -0.4, 1.2, True).passes


@pytest.mark.slow
def test_training_a_local_bf16_causal_lm_from_the_command_line(tiny_qwen_bf16, tts, tmp_path):
    """A local Hugging Face causal LM saved in bf16 (as Qwen2.5-7B is) through `speakerlm train --llm DIR`,
    with the GPU recipe's flags: bf16 weights, gradient checkpointing, LoRA."""
    import json

    from speakerlm.cli import main
    from tests.test_datasets import make_corpus, write_lhotse, write_sidecar

    corpus = make_corpus(tts, tmp_path / "corpus")
    write_lhotse(corpus, corpus.root)
    write_sidecar(corpus, corpus.root / "enrolment.json")
    run = tmp_path / "runs" / "decoder"
    assert main(["train", "--data", str(corpus.root), "--out", str(run), "--backbone", "decoder", "--llm", tiny_qwen_bf16,
                 "--lora-rank", "4", "--train-llm", "--steps", "2", "--warmup", "1", "--eval-every", "0",
                 "--llm-dtype", "bfloat16", "--gradient-checkpointing"]) == 0
    saved = json.loads((run / "checkpoint" / "config.json").read_text())
    assert saved["llm"] == tiny_qwen_bf16 and saved["backbone"] == "decoder" and saved["lora_rank"] == 4
    assert saved["llm_dtype"] == "bfloat16"
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_a_turn_that_repeats_an_earlier_one_ends_the_transcript():
    turns = [Turn("A", "Agreed, I will send a note to everyone."), Turn("B", "Good."),
             Turn("A", "Ag, I will send a note to everyone."), Turn("A", "Ag, I will send a note to everyone.")]
    assert until_repeated(turns) == turns[:2]
    talk = [Turn("A", "Yes."), Turn("B", "Yes."), Turn("A", "We meet at noon."), Turn("B", "At noon, then we eat.")]
    assert until_repeated(talk) == talk  # short replies and partial echoes are real conversation


@pytest.mark.slow
def test_multilingual_whisper_backbone_learns_mandarin_and_scores_by_characters(tmp_path):
    """The multilingual Whisper (base) backbone: `<|zh|><|transcribe|>` in the prefix, a Mandarin
    utterance (espeak-ng's cmn voice) learnt in the ASR data mode, and its output scored by characters."""
    import subprocess

    from speakerlm.metrics import score_clip

    raw, wav = tmp_path / "zh.raw.wav", tmp_path / "zh.wav"
    text = "我们今天下午开会"
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    wave = load_audio(wav)
    torch.manual_seed(0)
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="whisper", whisper="base")), TrainConfig(train_llm=True))
    backbone = model.backbone
    tokens = backbone.processor.tokenizer.convert_ids_to_tokens(backbone.prefix_ids("zh"))
    assert tokens == ["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"]
    frames = n_frames(wave)
    with torch.no_grad():
        audio = model.encode_audio(log_mel_windows(backbone.processor, wave), frames)
    stream = frame_speaker_stream(load_speaker_encoder("campp"), wave, frames)
    ex = Example(audio, stream, [], [Turn("", text)], task="asr", language="zh")
    model, loss = overfit(model, [ex], steps=40, lr=1e-4)
    assert loss < 0.1
    out = decode(model, ex)
    assert "".join(t.text for t in out).replace(" ", "") == text
    scores = score_clip([Turn("A", text)], [Turn("A", out[0].text)], registered=False, language="zh")
    assert scores.wer.errors == 0 and scores.wer.reference_length == len(text)  # characters, not one "word"
    with pytest.raises(ValueError, match="English-only"):
        SpeakerLM(SpeakerLMConfig()).backbone.prefix_ids("zh")



def test_timestamps_model_writes_each_turns_start_and_end(clip, tts):
    """With `timestamps`, the targets are `<|start|> [TURN] [SPK] words <|end|>` in Whisper's time
    tokens; an overfit model decodes the turns with their times (to Whisper's 0.02 s step)."""
    wave, reference, prints = clip
    first = load_audio(tts("rms", "chicken")).size / SAMPLE_RATE  # the clip: this sentence, 0.3 s, the next
    timed = [Turn("Ann", reference[0].text, 0.0, round(first, 2)),
             Turn("Ben", reference[1].text, round(first + 0.3, 2), round(wave.size / SAMPLE_RATE, 2))]
    torch.manual_seed(0)
    model = set_trainable(SpeakerLM(SpeakerLMConfig(backbone="whisper", timestamps=True)), TrainConfig(train_llm=True))
    match, over, no = examples(model, (wave, timed, prints))
    ids = model._sequence(match)[2]
    written = [model.backbone.token_time(t) for t in ids if t in model.backbone.time_ids]
    assert written == [0.0, timed[0].end, timed[1].start, timed[1].end]
    model, loss = overfit(model, [match, over, no], lr=3e-4)
    for ex in (match, no):
        out = decode(model, ex)
        assert [(t.speaker, t.text) for t in out] == [(t.speaker, t.text) for t in ex.turns]
        times = lambda turns: [x for t in turns for x in (t.start, t.end)]
        assert times(out) == pytest.approx(times(ex.turns), abs=0.021)


def test_timestamps_parse_times_around_turns_and_tolerate_missing_ones():
    """Decoded ids → timed turns: a start is the last time before a turn's marker, an end the first
    after its words; one time between two turns serves as both; a missing end stays unknown."""
    from types import SimpleNamespace

    from speakerlm.decoding import _turns

    T0 = 1000  # a fake vocabulary: ids ≥ T0 write (id - T0) * 0.02 s; the words are their ids
    backbone = SimpleNamespace(time_ids=range(T0, T0 + 1501), token_time=lambda t: round((t - T0) * 0.02, 2),
                               decode_tokens=lambda ids: " ".join(map(str, ids)))
    turns = [("A", (1, 2, T0 + 100, T0 + 110)), ("B", (3, T0 + 150)), ("A", (4, 5))]
    assert _turns(backbone, (T0,), turns) == [Turn("A", "1 2", 0.0, 2.0), Turn("B", "3", 2.2, 3.0), Turn("A", "4 5", 3.0, None)]
    assert _turns(backbone, (), [("A", (1, T0 + 50)), ("B", (T0 + 40, 2))])[1] == Turn("B", "2", 1.0, None)
    assert _turns(SimpleNamespace(time_ids=range(0), decode_tokens=backbone.decode_tokens), (), turns[2:]) == [Turn("A", "4 5")]


def test_time_rule_scores_a_time_not_which_time_and_keeps_turn_changes_whole():
    """Whisper's timestamp rules in the model's format: all times' probability goes to the likeliest
    time; after a turn's end only a start (or the end) may follow, after that start only the marker."""
    from types import SimpleNamespace

    from speakerlm.decoding import Beam, _time_rule

    # a fake vocabulary: words 0-9, the end 10, the turn marker 11, times 12-19
    backbone = SimpleNamespace(time_ids=range(12, 20), eos_id=10, turn_id=11)
    torch.manual_seed(0)
    logprobs = torch.randn(4, 20).log_softmax(-1)
    beams = [Beam(0.0, (("A", (3, 4)),), 0, False),  # writing words
             Beam(0.0, (("A", (3, 4, 15)),), 0, False),  # a turn's end written
             Beam(0.0, (("A", (3, 4, 15, 16)),), 0, False),  # ...and the next start
             Beam(0.0, (("A", ()),), 0, True)]  # at a marker: the pointer's step
    ruled = logprobs.clone()
    _time_rule(backbone, ruled, beams)
    times = list(range(12, 20))
    best = 12 + int(logprobs[0, times].argmax())
    assert ruled[0, best] == pytest.approx(float(logprobs[0, times].logsumexp(-1)))
    assert torch.isinf(ruled[0, [t for t in times if t != best]]).all()
    assert torch.equal(ruled[0, :12], logprobs[0, :12])  # words, the end and the marker as they were
    assert torch.isfinite(ruled[1]).nonzero().flatten().tolist() == [10, 12 + int(logprobs[1, times].argmax())]
    assert torch.isfinite(ruled[2]).nonzero().flatten().tolist() == [10, 11]
    assert torch.equal(ruled[3], logprobs[3])
