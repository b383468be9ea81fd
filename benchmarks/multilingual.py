"""The multilingual model path on Mandarin: a small who-said-what set spoken by the simulator's Mandarin
voices (espeak-ng reading pinyin; `pip install pypinyin==0.55.0`; four voice variants, two for training
and two held out for dev, disjoint sentences), written as lhotse
manifests; SpeakerLM on the multilingual Whisper (base) trained on it with `<|zh|>` in the prefix, and
scored on dev by characters (CER, cpCER, Match-Regist saCER) before and after training.

    python benchmarks/multilingual.py --out runs/multilingual --steps 300
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speakerlm.audio import SAMPLE_RATE  # noqa: E402
from speakerlm.data.voices import Voice  # noqa: E402

SENTENCES = [
    "我们今天下午三点开会。", "这个项目的预算还没有确定。", "请把报告发给我看一下。", "下周我们要去上海出差。",
    "客户对新的设计很满意。", "我觉得这个方案还需要修改。", "会议室已经订好了。", "大家对时间安排有意见吗？",
    "我们先讨论第一个问题。", "市场部明天会给我们数据。", "这个月的销售比上个月好。", "我同意你的看法。",
    "测试结果下午就能出来。", "我们需要更多的人手。", "这个问题我们以后再说。", "请大家准时参加培训。",
    "新同事下周一开始上班。", "我们的网站需要更新。", "老板希望我们提前完成。", "这份合同我已经签了。",
    "你能帮我订一张机票吗？", "午饭以后我们继续讨论。", "这个价格有点太高了。", "我们可以分两步来做。",
    "谢谢大家今天的参与。", "明天的天气好像不太好。", "我把文件放在桌子上了。", "他们公司离这里很近。",
    "我们应该先问问客户。", "这个软件很容易使用。", "晚上我要给经理打电话。", "今年的目标已经完成了一半。",
    "我们周五之前必须交报告。", "这个想法听起来不错。", "请你再解释一下这一点。", "我们的团队越来越大了。",
    "他正在准备明天的演讲。", "我们下次在北京见面。", "这个数字看起来不对。", "我们去喝杯咖啡吧。",
]
# espeak-ng variants of the simulator's Mandarin voices (`voices.default_voices("zh")`: pinyin through
# cmn-latn-pinyin, which needs the optional pypinyin package)
TRAIN_VOICES, DEV_VOICES = ("m1", "f2"), ("m3", "f4")


def make_split(out: Path, voices: tuple[str, ...], sentences: list[str], conversations: int, seed: int) -> Path:
    """`conversations` two-speaker clips of 4–6 turns, as a lhotse recordings + supervisions pair."""
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = random.Random(seed)
    speakers = [Voice("espeak", f"cmn-latn-pinyin+{v}", f"espeak+{v}", language="zh") for v in voices]
    (out / "audio").mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    for c in range(conversations):
        rid = f"{out.name}-{c:03d}"
        pieces, t, order = [], 0.3, [speakers[i % 2] for i in range(rng.randint(4, 6))]
        for k, voice in enumerate(order):
            text = rng.choice(sentences)
            wave = voice.synthesize(text)
            supervisions.append(SupervisionSegment(f"{rid}-{k}", rid, round(t, 3), round(wave.size / SAMPLE_RATE, 3),
                                                   speaker=voice.id, text=text, language="zh"))
            gap = np.zeros(int(rng.uniform(0.2, 0.6) * SAMPLE_RATE), np.float32)
            pieces += [wave, gap]
            t += (wave.size + gap.size) / SAMPLE_RATE
        path = out / "audio" / f"{rid}.wav"
        sf.write(path, np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE), np.float32)] + pieces), SAMPLE_RATE,
                 subtype="PCM_16")
        recordings.append(Recording.from_file(path, recording_id=rid))
    RecordingSet.from_recordings(recordings).to_file(out / "zh_recordings.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(out / "zh_supervisions.jsonl.gz")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/multilingual"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--train-conversations", type=int, default=60)
    p.add_argument("--dev-conversations", type=int, default=12)
    args = p.parse_args()

    from speakerlm.model import SpeakerLM, SpeakerLMConfig
    from speakerlm.train import (TrainConfig, evaluate_dev, feature_cache, prepare_inputs, stage_config, train,
                                 training_clips)
    from speakerlm.checkpoint import load_model

    train_dir, dev_dir = args.out / "zh-train", args.out / "zh-dev"
    if not (train_dir / "zh_supervisions.jsonl.gz").exists():
        make_split(train_dir, TRAIN_VOICES, SENTENCES[:30], args.train_conversations, seed=1)
    if not (dev_dir / "zh_supervisions.jsonl.gz").exists():
        make_split(dev_dir, DEV_VOICES, SENTENCES[30:], args.dev_conversations, seed=2)
    cfg = stage_config(TrainConfig(model=SpeakerLMConfig(whisper="base"), eval_clips=args.dev_conversations,
                                   eval_every=0, save_every=50, token_budget=2500, warmup_steps=20, lr_peak=2e-4),
                       2, train_llm=True, steps=args.steps)

    def score(model) -> dict:
        cache = feature_cache(args.out / "features", dev_dir, cfg.model, train_encoder=False)
        clips = prepare_inputs(model, training_clips(dev_dir, cfg), cache, progress=False)
        return evaluate_dev(model, clips)  # the manifests say zh: scored by characters

    before = score(SpeakerLM(cfg.model))
    checkpoint = train(cfg, train_dir, args.out / "run")
    after = score(load_model(checkpoint))
    rows = {"before training": before, f"after {args.steps} steps": after}
    print("| model | CER | cpCER | Match saCER |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['wer']:.2f} | {r['cpwer']:.2f} | {r['sawer']:.2f} |")
    (args.out / "scores.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
