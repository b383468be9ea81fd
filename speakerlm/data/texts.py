"""The text pool: speakable English sentences from text that ships on this machine, split by hash.

Sources (offline, read in this order; a missing source is skipped):
  fortunes  Debian `fortunes` / `fortunes-min` quotes (/usr/share/games/fortunes), conversational
  docs      prose from installed documentation (vim help, /usr/share/doc READMEs), mostly technical
Every sentence is cleaned (ASCII, one line, no URLs, digits or odd symbols), kept only at 3–20 words
whose every word is in festival's CMU lexicon when that lexicon is installed (so TTS can say it and
the reference is what was said), deduplicated case- and punctuation-insensitively, and assigned to
train / dev / test by a hash of that normalised form, so the splits are disjoint and stable whatever
else is added. The pool is built once and cached as JSON.

Mandarin (`--language zh`): no Chinese text ships here, so the pool comes from a user's file of
sentences; `to_pinyin` turns each into tone-numbered pinyin for espeak-ng's `cmn-latn-pinyin` voice
(needs the optional `pypinyin` package).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from speakerlm.cache import cache_dir, write_text_atomic
from speakerlm.errors import UserError

SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # of sentences, by hash
MIN_WORDS, MAX_WORDS = 3, 20
POOL_VERSION = 1  # bump when cleaning rules change, so cached pools are rebuilt
FORTUNES_DIR = Path("/usr/share/games/fortunes")
LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")  # festival's CMU dictionary
DOC_SOURCES = (Path("/usr/share/vim/vim90/doc"), Path("/usr/share/doc"))
PUNCT_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                           "\u2014": "-", "`": "'", "\t": " "})
ALLOWED = re.compile(r"[\"']?[A-Z][A-Za-z ,.;:'?!\"-]*[.?!][\"']?")  # a whole sentence, ending with . ? or !
SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z])")
ABBREVIATION = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|vs|etc|e\.g|i\.e|[A-Z])\.$")
WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


@dataclass(frozen=True)
class TextPool:
    """Sentences per split; `sentences[split]` is sorted (its order is part of the seeded output)."""

    sentences: dict[str, list[str]]
    language: str = "en"

    def split(self, name: str) -> list[str]:
        if name not in self.sentences:
            raise UserError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self.sentences[name]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.sentences.items()}

    @staticmethod
    def from_sentences(sentences: Iterable[str], language: str = "en") -> "TextPool":
        """Assign already-clean sentences to splits by hash (deduplicated)."""
        by_split: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
        for text in sentences:
            key = normalise(text)
            if key:  # of duplicates keep the smallest spelling, so input order does not matter
                bucket = by_split[split_of(key)]
                bucket[key] = min(bucket.get(key, text), text)
        return TextPool({s: sorted(d.values()) for s, d in by_split.items()}, language)


def normalise(text: str) -> str:
    """The dedup key: lower-case words only ("It's done!" and "its done" are one sentence)."""
    return " ".join(re.findall(r"\w+", text.lower().replace("'", "")))


def split_of(key: str, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> str:
    """train/dev/test by a hash of `key`: stable across runs, machines and pool sizes."""
    u = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    return "train" if u < fractions[0] else "dev" if u < fractions[0] + fractions[1] else "test"


def load_lexicon(path: Path = LEXICON) -> Optional[frozenset[str]]:
    """Lower-case words festival's CMU lexicon knows, or None when it is not installed."""
    if not path.exists():
        return None
    words = re.findall(r'^\("([^"]+)"', path.read_text(encoding="latin-1"), flags=re.M)
    return frozenset(words)


def clean_sentence(text: str, lexicon: Optional[frozenset[str]] = None) -> Optional[str]:
    """One speakable sentence, or None. Keeps letters and plain punctuation only."""
    text = unicodedata.normalize("NFKD", text.translate(PUNCT_MAP))
    text = text.encode("ascii", "ignore").decode()
    text = re.sub(r"\s+", " ", text).strip().strip("-").strip()
    text = re.sub(r"^(Problem|Solution|Note|Example|Q|A):\s*", "", text)  # vim's patch notes, FAQs
    if not ALLOWED.fullmatch(text) or "--" in text or "''" in text or text.count('"') % 2:
        return None
    words = WORD.findall(text)
    if not MIN_WORDS <= len(words) <= MAX_WORDS or len(words) != len(text.split()):
        return None  # a stray token such as "-" or "'s" alone
    if any(sum(c.isupper() for c in w) > 1 for w in words):
        return None  # acronyms and CamelCase: TTS spells them, the reference does not
    if lexicon is not None and any(w.lower() not in lexicon and not (w[0].isupper() and i) for i, w in
                                   enumerate(words)):
        return None  # unknown words other than capitalised names mid-sentence
    return text


def split_sentences(paragraph: str) -> list[str]:
    pieces = SENTENCE_END.split(re.sub(r"\s+", " ", paragraph).strip())
    out: list[str] = []
    for piece in pieces:  # re-join splits made after "Mr." or "e.g."
        if out and ABBREVIATION.search(out[-1]):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def fortune_paragraphs(folder: Path = FORTUNES_DIR) -> Iterator[str]:
    """Each quote of each fortune file, attribution lines ("-- Author") dropped."""
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.suffix or not path.is_file():  # skip .dat indexes and .u8 links
            continue
        for quote in re.split(r"^%$", path.read_text(encoding="latin-1"), flags=re.M):
            lines = [ln for ln in quote.splitlines() if not re.match(r"\s*(--|- )", ln)]
            yield " ".join(ln.strip() for ln in lines)


def doc_paragraphs(roots: Iterable[Path] = DOC_SOURCES) -> Iterator[str]:
    """Prose paragraphs (blank-line separated) from help files and READMEs; changelogs skipped."""
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            name = path.name.lower()
            if not path.is_file() or "changelog" in name or "news" in name or "copyright" in name:
                continue
            if not (name.endswith((".txt", ".md", ".txt.gz", ".md.gz")) or name.startswith("readme")):
                continue
            try:
                raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
            yield from re.split(r"\n\s*\n", raw.decode("utf-8", "ignore"))


def build_english_pool(sources: tuple[str, ...] = ("fortunes", "docs")) -> TextPool:
    lexicon = load_lexicon()
    readers = {"fortunes": fortune_paragraphs, "docs": doc_paragraphs}
    kept = []
    for source in sources:
        for paragraph in readers[source]():
            kept.extend(s for s in map(lambda t: clean_sentence(t, lexicon), split_sentences(paragraph)) if s)
    if not kept:
        raise UserError("no English text found: install Debian's `fortunes` and `fortunes-min` packages")
    return TextPool.from_sentences(kept)


def load_text_pool(language: str = "en", path: Optional[Path] = None, cache: Optional[Path] = None) -> TextPool:
    """The text pool, built once and cached (`cache_dir()/texts/en-v1.json`).

    `path`: a UTF-8 file with one sentence per line, used instead of the built-in sources (required for
    `language="zh"`); its sentences are split by hash like the built-in ones, without English cleaning.
    """
    if path is not None:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines:
            raise UserError(f"{path}: no sentences (expected one sentence per line)")
        if language == "zh":
            return TextPool.from_sentences(lines, "zh")
        return TextPool.from_sentences([s for s in (clean_sentence(ln) for ln in lines) if s], language)
    if language != "en":
        raise UserError(f"no built-in {language!r} text on this machine; pass a sentence file (--texts FILE)")
    target = (cache or cache_dir() / "texts") / f"en-v{POOL_VERSION}.json"
    if target.exists():
        return TextPool(json.loads(target.read_text(encoding="utf-8")), "en")
    pool = build_english_pool()
    write_text_atomic(target, json.dumps(pool.sentences, ensure_ascii=False))
    return pool


def to_pinyin(text: str) -> str:
    """Chinese characters → tone-numbered pinyin ("ni3 hao3") for `espeak-ng -v cmn-latn-pinyin`."""
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        raise UserError("Mandarin synthesis needs the optional `pypinyin` package: pip install pypinyin==0.55.0") from None
    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


# ---- meeting talk: a held-out source and style -----------------------------------------------------
# Spoken, first-person workplace talk, unlike the fortunes and documentation prose of the pool above.
# No corpus of such text ships on this machine, so it is generated from templates; it feeds only the
# out-of-distribution presets, never training.
MEETING_TEMPLATES = (
    "Can we move the {thing} to {day}?",
    "I think the {thing} is {state}, but let me check with {name}.",
    "{name} said the {thing} would be ready by {day}.",
    "Okay, so the next item on the list is the {thing}.",
    "Sorry, could you say that again? I missed the part about the {thing}.",
    "I can take that one, and I will send an update on {day}.",
    "We spent most of last week on the {thing}, and it is {state} now.",
    "Let me share my screen so everyone can see the {thing}.",
    "Does anyone have questions about the {thing} before we move on?",
    "I talked to {name} this morning, and they want the {thing} by {day}.",
    "That sounds good to me, as long as we keep the {thing} simple.",
    "Honestly, I am not sure the {thing} is worth the extra cost.",
    "Who is going to follow up with {name} about the {thing}?",
    "If we push the {thing} to {day}, we still have time for testing.",
    "The numbers for the {thing} look {judgement} this quarter.",
    "I agree with {name}, the {thing} needs another review.",
    "Let's take five minutes and then come back to the {thing}.",
    "We should probably write this down so we remember it on {day}.",
    "My main worry is that the {thing} will slip again.",
    "Thanks, that was really helpful. Let's talk about the {thing} next.",
    "Can you remind me what we decided about the {thing}?",
    "I will ask {name} to join the call on {day}.",
    "We need a decision on the {thing} before the end of the week.",
    "I have a hard stop at {time}, so let's keep this short.",
    "The customer asked about the {thing} again yesterday.",
    "Right, and the {thing} depends on the budget being approved.",
    "I am happy to help, but I need the details by {day}.",
    "Let's meet again on {day} at {time} to go over the {thing}.",
    "Good point, I had not thought about the {thing} that way.",
    "So to sum up, {name} owns the {thing} and we check in on {day}.",
)
MEETING_SLOTS = {
    "thing": ("budget review", "launch plan", "design document", "hiring plan", "quarterly report", "new website",
              "training session", "sales forecast", "team offsite", "product demo", "contract", "office move",
              "customer survey", "project timeline", "release notes", "marketing campaign", "security audit",
              "support backlog", "travel policy", "onboarding guide"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next week", "the end of the month", "tomorrow"),
    "name": ("Sarah", "David", "Maria", "James", "Linda", "Peter", "Karen", "Thomas", "Emily", "Robert", "the client",
             "our manager", "the finance team"),
    "state": ("almost done", "behind schedule", "on track", "blocked", "nearly finished", "still in review"),
    "judgement": ("better than expected", "a little low", "much stronger", "about the same", "worse than last year"),
    "time": ("two o'clock", "noon", "four o'clock", "lunch", "the end of the day"),
}


def meeting_sentences(count: int = 3000, seed: int = 0) -> list[str]:
    """`count` distinct sentences of templated meeting talk, the same for a given seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    for _ in range(count * 20):
        if len(out) >= count:
            break
        template = MEETING_TEMPLATES[int(rng.integers(len(MEETING_TEMPLATES)))]
        fill = {k: v[int(rng.integers(len(v)))] for k, v in MEETING_SLOTS.items()}
        text = template.format(**fill)
        out[text[0].upper() + text[1:]] = None
    return sorted(out)


def meeting_pool(count: int = 3000) -> TextPool:
    """Meeting talk in every split: the out-of-distribution presets draw it as their one text source."""
    sentences = meeting_sentences(count)
    return TextPool({s: sentences for s in SPLITS})
