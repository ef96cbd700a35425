"""Multi30k German -> English for the translation peers: the same splits and
the same kind of tokenisation as nlptool's shipped `multi30k` config, so that
BLEU compares models, not tokenisers.

- Splits: train (29,000 pairs), val (1,014), test_2016_flickr (1,000).
- Tokenisation: one SentencePiece unigram model per language, 8,000 pieces
  with pad 0, unknown 1, start 2, end 3, learned on that language's training
  side with the `sentencepiece` library (nlptool learns the same kind of
  model in its own pipeline). Sentences are cut at 100 pieces, as the config's
  `training.max_length`.
- Scoring: sacreBLEU's default BLEU and chrF on the detokenised (decoded)
  output against the raw references, as nlptool's evaluation does.
"""

import io
import random

from common import data_dir

PAD, UNK, START, END = 0, 1, 2, 3
VOCAB_SIZE = 8000
MAX_LENGTH = 100
SOURCE, TARGET = "de", "en"
SPLITS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}


def read(split, limit=None):
    """(German sentences, English sentences) of `split` ("train", "validation", "test")."""
    folder = data_dir() / "multi30k"
    sides = []
    for language in (SOURCE, TARGET):
        lines = (folder / f"{SPLITS[split]}.{language}").read_text(encoding="utf-8").splitlines()
        sides.append(lines[:limit] if limit else lines)
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f"multi30k {split}: {len(sides[0])} German lines but {len(sides[1])} English lines.")
    return sides


def sentencepiece(sentences, vocab_size=VOCAB_SIZE):
    """A SentencePiece processor learned on `sentences`, held in memory."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=PAD,
        unk_id=UNK,
        bos_id=START,
        eos_id=END,
        hard_vocab_limit=False,  # a small `limit` corpus cannot fill 8,000 pieces
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


class Corpus:
    """The three splits as piece ids, and the two processors. `source[i]` is
    a list of ids without start or end; `target[i]` is start + ids + end."""

    def __init__(self, limit=None):
        text = {split: read(split, limit) for split in SPLITS}
        self.source_pieces = sentencepiece(text["train"][0])
        self.target_pieces = sentencepiece(text["train"][1])
        self.references = text["test"][1]
        self.test_sources = text["test"][0]
        self.splits = {}
        for split, (german, english) in text.items():
            sources = [ids[:MAX_LENGTH] for ids in self.source_pieces.encode(german)]
            targets = [[START, *ids[:MAX_LENGTH], END] for ids in self.target_pieces.encode(english)]
            self.splits[split] = (sources, targets)

    @property
    def vocab_sizes(self):
        return self.source_pieces.get_piece_size(), self.target_pieces.get_piece_size()

    def decode(self, ids):
        """English text of predicted ids (cut at the first end)."""
        ids = list(ids)
        if END in ids:
            ids = ids[: ids.index(END)]
        return self.target_pieces.decode([i for i in ids if i > END])


def target_tokens(target):
    """Tokens a training step predicts for one target (its pieces and the end, not the start)."""
    return len(target) - 1


def max_output_length(source_length):
    """The greedy decoder's length limit: nlptool's decoding.max_length_ratio 1.5 and offset 10."""
    return int(1.5 * source_length) + 10


def length_buckets(pairs, batch_size, seed, pool=100):
    """Batches of (source, target) pairs of similar source lengths, as torchtext's BucketIterator makes
    them: shuffled, sorted by length within pools of `pool` batches, the batches shuffled again."""
    rng = random.Random(seed)
    pairs = list(pairs)
    rng.shuffle(pairs)
    batches = []
    for start in range(0, len(pairs), batch_size * pool):
        chunk = sorted(pairs[start : start + batch_size * pool], key=lambda pair: len(pair[0]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def bleu(hypotheses, references):
    """{"bleu", "chrf", "bleu_signature"}: sacreBLEU defaults, as nlptool reports them."""
    import sacrebleu

    metric = sacrebleu.BLEU()
    score = metric.corpus_score(hypotheses, [references])
    return {
        "bleu": round(score.score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
        "bleu_signature": str(metric.get_signature()),
    }
