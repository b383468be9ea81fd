"""Real human speech: the two pocketsphinx-testdata readers (librivox, cards) spliced into one 31 s
conversation (4 utterances each, 0.4 s pauses), their 5th utterance as enrolment; every engine in No
and Match mode, scored as `speakerlm evaluate` scores them.

    .venv/bin/python benchmarks/real_speech.py [--engines plain,cascade,speakerlm] [--model DIR] [--no-enrolled-from-recording]

Caveat: the voice bank put the cards reader in the *train* split until the rule that real recordings are
never trained on; the bundled model's training data holds its utterances. The librivox reader was never trained on:
`held-out voice` is the WER over its 5 utterances, each transcribed alone.
"""
import argparse
import numpy as np
from pathlib import Path
from speakerlm.audio import load_audio, SAMPLE_RATE
from speakerlm.engines.speakerlm import SpeakerLMEngineConfig
from speakerlm.transcribe import Transcriber, TranscribeOptions
from speakerlm.turns import Turn
from speakerlm.metrics import aggregate, error_rate_percent, score_clip, wer
p = argparse.ArgumentParser()
p.add_argument('--engines', default='plain,cascade,speakerlm')
p.add_argument('--model', help='SpeakerLM checkpoint (default: the bundled one)')
p.add_argument('--enrolled-from-recording', action=argparse.BooleanOptionalAction, default=True)
args = p.parse_args()
D = Path('/usr/share/pocketsphinx/test/data')
def trans(folder, fname):
    out = {}
    for line in (D / folder / fname).read_text().splitlines():
        text, _, utt = line.rpartition('(')
        out[utt.strip(') ')] = text.replace('<s>', '').replace('</s>', '').strip()
    return out
lib = trans('librivox', 'transcription'); cards = trans('cards', 'cards.transcription')
L = sorted(lib); C = sorted(cards)
wave, ref, t = [], [], 0.0
gap = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
for i in range(4):
    for spk, folder, utt, text in (('Reader', 'librivox', L[i], lib[L[i]]), ('Caller', 'cards', C[i], cards[C[i]])):
        w = load_audio(D / folder / f'{utt}.wav')
        ref.append(Turn(spk, text, t, t + w.size / SAMPLE_RATE)); wave += [w, gap]; t += w.size / SAMPLE_RATE + 0.4
wave = np.concatenate(wave)
speakers = {'Reader': [str(D / 'librivox' / f'{L[4]}.wav')], 'Caller': [str(D / 'cards' / f'{C[4]}.wav')]}
held_out = [Turn('Reader', lib[u], i, i + 1.0) for i, u in enumerate(L)]  # the never-trained voice, utterance by utterance
print(f'{t:.1f} s, {len(ref)} turns')
for engine in args.engines.split(','):
    extra = dict(model=args.model) if engine == 'speakerlm' else {}
    config = SpeakerLMEngineConfig(enrolled_from_recording=args.enrolled_from_recording) if engine == 'speakerlm' else None
    tr = Transcriber(TranscribeOptions(engine=engine, **extra), config)
    for mode in ('no', 'match'):
        if engine == 'plain' and mode == 'match':
            continue
        hyp = tr.transcribe(wave, speakers=speakers if mode == 'match' else None).turns
        a = aggregate([score_clip(ref, hyp, registered=mode == 'match')])
        print(engine, mode, {k: round(a[k], 2) for k in ('wer', 'cpwer', 'sawer') if a.get(k) is not None})
        print('   ', ' | '.join(f'{h.speaker}: {h.text}' for h in hyp)[:400])
    said = [Turn('Reader', ' '.join(h.text for h in tr.transcribe(D / 'librivox' / f'{u}.wav').turns), i, i + 1.0)
            for i, u in enumerate(L)]
    print(engine, 'held-out voice WER', round(error_rate_percent(wer(held_out, said)), 2))
