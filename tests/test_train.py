"""Training: the curriculum's configs, registration sampling, and exact resume after an interruption."""

import json
import random
from dataclasses import replace
from collections import Counter

import pytest
import torch

from speakerlm.train import (NAME_POOL, ClipInputs, TrainConfig, learning_rate, make_example,
                             registration_mode, stage_config, train)
from speakerlm.turns import Turn
from tests.test_datasets import make_corpus, write_lhotse, write_sidecar


def test_stages_are_typed_overrides_of_one_config():
    base = TrainConfig()
    s2, s3, s4 = (stage_config(base, s) for s in (2, 3, 4))
    assert (s2.train_encoder, s2.train_llm) == (False, False)  # projectors only
    assert (s3.train_encoder, s3.train_llm) == (True, False)
    assert (s4.train_encoder, s4.train_llm) == (True, True)
    assert stage_config(base, 2, train_llm=True, steps=7).steps == 7


def test_warmup_then_cosine():
    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5) and learning_rate(cfg, 10) == pytest.approx(5e-5)
    assert learning_rate(cfg, 55) == pytest.approx(3e-5) and learning_rate(cfg, 100) == pytest.approx(1e-5)


def test_registration_mode_sampled_as_the_paper():
    rng, cfg = random.Random(0), TrainConfig()
    draws = [registration_mode(cfg, rng) for _ in range(3000)]
    counts = Counter(mode for mode, _ in draws)
    assert all(900 < counts[m] < 1100 for m in ("match", "no", "over"))
    n_ov = [n for mode, n in draws if mode == "over"]
    assert min(n_ov) == 1 and max(n_ov) == 50


def test_over_regist_example_never_names_a_distractor():
    emb = lambda: torch.nn.functional.normalize(torch.randn(192), dim=0)
    clip = ClipInputs("c", torch.zeros(10, 384), torch.zeros(10, 192),
                      [Turn("v1", "hello", 0, 1), Turn("v2", "hi", 1, 2), Turn("v1", "bye", 2, 3)],
                      {"v1": emb(), "v2": emb()}, {f"d{i}": emb() for i in range(60)})
    rng = random.Random(1)
    for _ in range(20):
        ex = make_example(clip, "over", rng, n_distractors=30)
        names = [n for n, _ in ex.slots]
        spoken = {t.speaker for t in ex.turns}
        assert len(ex.slots) == 32 and len(set(names)) == 32 and set(names) <= set(NAME_POOL)
        assert spoken <= set(names) and len(spoken) == 2 and ex.turns[0].speaker == ex.turns[2].speaker
    assert [t.speaker for t in make_example(clip, "no", rng).turns] == ["spk 0", "spk 1", "spk 0"]
    many = make_example(replace(clip, distractors={f"d{i}": emb() for i in range(120)}), "over", rng, n_distractors=100)
    assert len({n for n, _ in many.slots}) == 102  # the sweep's N_ov = 100 outgrows the name pool


def test_cached_inputs_are_read_from_disk_at_each_use(tmp_path):
    """Training holds no encoder states in memory: a clip's tensors come from its cache file when an
    example is made, and are gone with it."""
    from safetensors.torch import save_file

    audio, stream = torch.randn(30, 384), torch.randn(30, 192)
    save_file({"audio": audio, "frame_speaker": stream, "spk/v1": torch.ones(192)}, str(tmp_path / "c.safetensors"))
    clip = ClipInputs("c", None, None, [Turn("v1", "hello", 0, 1)], {"v1": torch.ones(192)}, {}, frames=30,
                      source=tmp_path / "c.safetensors")
    ex = make_example(clip, "asr", random.Random(0))
    assert torch.equal(ex.audio, audio) and torch.equal(ex.frame_speaker, stream)
    assert ex.task == "asr" and ex.slots == [] and [t.text for t in ex.turns] == ["hello"]
    assert clip.audio is None and clip.cost == 15 + 1


def test_partial_registration_leaves_some_speakers_anonymous():
    emb = lambda: torch.nn.functional.normalize(torch.randn(192), dim=0)
    clip = ClipInputs("c", torch.zeros(10, 384), torch.zeros(10, 192),
                      [Turn("v1", "hello", 0, 1), Turn("v2", "hi", 1, 2), Turn("v3", "yes", 2, 3)],
                      {"v1": emb(), "v2": emb(), "v3": emb()}, {f"d{i}": emb() for i in range(10)})
    rng = random.Random(0)
    registered_counts = set()
    for _ in range(20):
        ex = make_example(clip, "over", rng, n_distractors=4, partial=True)
        names = {n for n, _ in ex.slots}
        spoken = [t.speaker for t in ex.turns]
        named = [s for s in spoken if s in names]
        assert 1 <= len(named) <= 2 and len(ex.slots) == len(named) + 4
        assert [s for s in spoken if s not in names] == [f"spk {k}" for k in range(3 - len(named))]
        registered_counts.add(len(named))
    assert registered_counts == {1, 2}


@pytest.fixture(scope="module")
def corpus(tts, tmp_path_factory):
    c = make_corpus(tts, tmp_path_factory.mktemp("train_corpus"))
    write_lhotse(c, c.root)
    write_sidecar(c, c.root / "enrolment.json")
    return c


def test_resume_after_interruption_equals_an_uninterrupted_run(corpus, tmp_path):
    """(With the pretrained Whisper decoder's next words as a second target where it is right, which a
    resume rebuilds.)"""
    cfg = stage_config(TrainConfig(steps=4, warmup_steps=1, save_every=1, eval_every=0, token_budget=400,
                                   keep_whisper=0.5, keep_whisper_right_only=True), 2, train_llm=True, steps=4,
                       lr_peak=1e-4)
    straight = train(cfg, corpus.root, tmp_path / "a" / "run")
    # the same run, stopped after 2 steps (as a kill after a checkpoint would leave it), then resumed
    train(cfg, corpus.root, tmp_path / "b" / "run", stop_after=2)
    resumed = train(cfg, corpus.root, tmp_path / "b" / "run")
    loss = lambda p: [json.loads(l)["loss"] for l in (p.parent / "log.jsonl").read_text().splitlines()]
    assert loss(straight) == pytest.approx(loss(resumed), rel=1e-4)
    from safetensors.torch import load_file

    a, b = load_file(str(straight / "trained.safetensors")), load_file(str(resumed / "trained.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_keeping_whisper_with_a_trained_encoder_is_refused_before_any_work(corpus, tmp_path):
    from speakerlm.errors import UserError

    with pytest.raises(UserError, match="--keep-whisper"):
        train(stage_config(TrainConfig(keep_whisper=1.0), 3), corpus.root, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_processes_train_data_parallel(corpus, tmp_path):
    """The same script under torchrun: two CPU processes (gloo) share each step's batches."""
    import subprocess
    import sys

    run = tmp_path / "ddp" / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "speakerlm", "train", "--data", str(corpus.root), "--out", str(run), "--steps", "2",
           "--warmup", "1", "--token-budget", "400", "--eval-every", "0", "--save-every", "1", "--train-llm"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # one log, written by the main process only
    assert all(r["processes"] == 2 for r in rows)
    assert (run / "checkpoint" / "trained.safetensors").exists()


def test_export_mixes_the_llm_with_the_pretrained_one(tmp_path):
    from speakerlm.errors import UserError
    from speakerlm.checkpoint import bundled_model, load_model, trained_state_dict
    from speakerlm.model import SpeakerLM
    from speakerlm.train import export

    model = load_model(bundled_model())
    trained, pretrained = trained_state_dict(model), SpeakerLM(model.config).state_dict()
    mixed = trained_state_dict(load_model(export(bundled_model(), tmp_path / "half", half=False, llm_alpha=0.5)))
    layer = "backbone.decoder.layers.0.fc1.weight"
    assert not torch.equal(trained[layer], pretrained[layer])
    assert torch.allclose(mixed[layer], (trained[layer] + pretrained[layer]) / 2, atol=1e-6)
    assert torch.equal(mixed["pointer_key.weight"], trained["pointer_key.weight"])  # heads stay as trained
    with pytest.raises(UserError, match="not a SpeakerLM model"):
        export(tmp_path, tmp_path / "x")


@pytest.mark.slow
def test_curriculum_stages_train_the_encoder_and_keep_earlier_stages(corpus, tmp_path):
    """Stage 3 really trains the Whisper encoder (it runs inside the step on cached log-mels), and each
    stage's checkpoint keeps what earlier stages trained: stage 3 freezes stage 2's decoder, stage 4
    wraps it in LoRA; neither may fall back to the pretrained decoder."""
    from safetensors.torch import load_file

    from speakerlm.checkpoint import load_model
    from speakerlm.model import SpeakerLM

    common = dict(warmup_steps=1, save_every=2, eval_every=0, token_budget=400, lr_peak=1e-3)
    base = TrainConfig()
    s2 = train(stage_config(base, 2, train_llm=True, steps=2, **common), corpus.root, tmp_path / "s2")
    s3 = train(stage_config(base, 3, steps=2, **common), corpus.root, tmp_path / "s3", init=s2)
    with_lora = replace(base, model=replace(base.model, lora_rank=4))
    s4 = train(stage_config(with_lora, 4, steps=2, **common), corpus.root, tmp_path / "s4", init=s3)
    mel_dir, states_dir = (tmp_path / "features" / f"{corpus.root.name}-tiny.en-campp-{k}" for k in ("mel", "states"))
    clip = sorted(mel_dir.glob("*.safetensors"))[0]
    mel, states = load_file(str(clip)), load_file(str(states_dir / clip.name))
    assert mel["audio"].dim() == 3 and states["audio"].dim() == 2  # stages 3-4 cache log-mels…
    assert torch.equal(mel["frame_speaker"], states["frame_speaker"])  # …and reuse stage 2's speaker stream

    layer = "backbone.decoder.layers.0.fc1.weight"
    enc = "backbone.encoder.layers.0.fc1.weight"
    pretrained = SpeakerLM(base.model).state_dict()
    t2, t3, t4 = (load_file(str(p / "trained.safetensors")) for p in (s2, s3, s4))
    assert enc not in t2 and not torch.equal(t3[enc], pretrained[enc])  # the encoder moved in stage 3
    assert torch.equal(t3[layer], t2[layer])  # stage 3 kept stage 2's decoder, frozen
    lora_base = layer.replace(".weight", ".base_layer.weight").replace("fc1", "self_attn.q_proj")
    q = "backbone.decoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(t4[lora_base], t2[q]) and torch.equal(t4[layer], t2[layer])  # LoRA wraps stage 2's weights
    assert any("lora_B" in k and t4[k].abs().sum() > 0 for k in t4)  # and its adapter trained
    assert not torch.equal(t4[enc], t3[enc])
    reloaded = load_model(s4).state_dict()
    assert torch.equal(reloaded[lora_base], t2[q])
