"""Byte, char and word tokenisers: the contract, vocabularies, round trips, export."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from harness import in_fresh_process

from nlptool.tokenizers import ByteTokenizer, CharTokenizer, WordTokenizer

MULTILINGUAL = [
    "The quick brown fox.",
    "Grüße aus München, schöne Straße!",
    "¿Dónde está la estación?",
    "Tiếng Việt có dấu thanh.",
    "我喜欢自然语言处理。",
    "مرحبا بالعالم",
    "emoji 🎉👍🏽 and flags 🇩🇪",
    "e\u0301 a\u0308 combining marks",
    "",
]


def decode(tensor):
    return [t.decode("utf-8") for t in tensor.numpy()]


@pytest.mark.parametrize("make", [lambda: ByteTokenizer(), lambda: CharTokenizer().train(MULTILINGUAL)])
def test_byte_and_char_round_trip_exactly(make):
    tokenizer = make()
    assert decode(tokenizer.detokenize(tokenizer(MULTILINGUAL))) == MULTILINGUAL


def test_bytes_that_do_not_spell_utf8_decode_with_replacement_characters():
    """What a byte-level language model can generate: a character cut short, a stray continuation byte."""
    tokenizer = ByteTokenizer()
    ids = [[ord("h") + 4, 0xC3 + 4], [0xA9 + 4, ord("a") + 4], [0xF0 + 4, 0x9F + 4, 0x8E + 4]]
    assert decode(tokenizer.ids_to_text(tf.ragged.constant(ids))) == ["h\ufffd", "\ufffda", "\ufffd"]


def test_word_round_trip_gives_normalised_text():
    tokenizer = WordTokenizer().train(MULTILINGUAL)
    got = decode(tokenizer.detokenize(tokenizer(MULTILINGUAL)))
    assert got[0] == "the quick brown fox ."
    assert got[1] == "grüße aus münchen , schöne straße !"
    assert got[2] == "¿ dónde está la estación ?"
    assert got[-1] == ""


def test_very_long_string_is_handled():
    text = ("abc déf 😀 " * 100_000)[:1_000_000]
    byte_ids = ByteTokenizer()([text])
    assert byte_ids.shape == (1, len(text.encode("utf-8")))
    assert decode(ByteTokenizer().detokenize(byte_ids)) == [text]
    char = CharTokenizer().train([text])
    assert decode(char.detokenize(char([text]))) == [text]
    word = WordTokenizer(sequence_length=16).train([text])
    assert word([text]).shape == (1, 16)


def test_word_vocabulary_order_min_frequency_and_max_size():
    corpus = ["b a c a", "a b d", "c c a"]  # a:4, c:4, b:2, d:1
    assert WordTokenizer().train(corpus).vocabulary == ["a", "c", "b", "d"]  # frequency, then alphabetical
    assert WordTokenizer(min_frequency=2).train(corpus).vocabulary == ["a", "c", "b"]
    tokenizer = WordTokenizer(max_size=2).train(corpus)
    assert tokenizer.vocabulary == ["a", "c"]
    assert tokenizer.vocabulary_size() == 6
    assert tokenizer(["a c b zzz"]).numpy().tolist() == [[4, 5, 1, 1]]  # unknown words are id 1


def test_char_vocabulary_and_unknowns():
    tokenizer = CharTokenizer(max_size=2).train(["aab", "bac", "a"])  # a:4, b:2, c:1
    assert tokenizer.vocabulary == ["a", "b"]
    assert tokenizer(["abc"]).numpy().tolist() == [[4, 5, 1]]
    assert decode(tokenizer.detokenize([[4, 5, 1]])) == ["ab\ufffd"]  # <unk> decodes to U+FFFD


def test_padding_truncation_start_and_end():
    tokenizer = WordTokenizer(add_start=True, add_end=True).train(["a b c d e"])
    ids = tokenizer(["a b", "a b c d e"]).numpy().tolist()
    assert ids == [[2, 4, 5, 3, 0, 0, 0], [2, 4, 5, 6, 7, 8, 3]]
    fixed = WordTokenizer(vocabulary=tokenizer.vocabulary, sequence_length=4, add_start=True, add_end=True)
    assert fixed(["a b c d e", "a"]).numpy().tolist() == [[2, 4, 5, 3], [2, 4, 3, 0]]
    # decoding stops at the first end token and drops padding and start
    assert decode(tokenizer.detokenize([[2, 4, 3, 5, 0]])) == ["a"]
    with pytest.raises(ValueError, match="argument `sequence_length`"):
        WordTokenizer(sequence_length=0)


def test_trains_from_list_series_and_dataset_alike():
    texts = ["one two", "two three three"]
    from_list = WordTokenizer().train(texts).vocabulary
    assert WordTokenizer().train(pd.Series(texts)).vocabulary == from_list
    assert WordTokenizer().train(tf.data.Dataset.from_tensor_slices(texts)).vocabulary == from_list
    assert WordTokenizer().train(tf.data.Dataset.from_tensor_slices(texts).batch(2)).vocabulary == from_list
    with pytest.raises(TypeError, match="position 1"):
        WordTokenizer().train(["ok", 3])


def test_untrained_tokenizer_says_so():
    with pytest.raises(ValueError, match="no vocabulary yet"):
        WordTokenizer()(["text"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ByteTokenizer(sequence_length=12, add_end=True),
        lambda: CharTokenizer(add_start=True).train(MULTILINGUAL),
        lambda: WordTokenizer(max_size=30, lowercase=False).train(MULTILINGUAL),
    ],
)
def test_config_and_keras_file_round_trip(make, tmp_path):
    tokenizer = make()
    clone = type(tokenizer).from_config(tokenizer.get_config())
    np.testing.assert_array_equal(clone(MULTILINGUAL), tokenizer(MULTILINGUAL))
    inputs = keras.Input(shape=(1,), dtype="string")
    model = keras.Model(inputs, tokenizer(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored(tf.constant(MULTILINGUAL)[:, None]), tokenizer(MULTILINGUAL))


def test_saved_model_runs_without_nlptool_or_tensorflow_text(tmp_path):
    word = WordTokenizer(sequence_length=10).train(MULTILINGUAL)
    char = CharTokenizer(sequence_length=20).train(MULTILINGUAL)
    byte = ByteTokenizer(sequence_length=30)
    inputs = keras.Input(shape=(1,), dtype="string")
    model = keras.Model(inputs, [word(inputs), char(inputs), byte(inputs)])
    model.export(str(tmp_path / "export"), format="tf_saved_model")
    # neither nlptool nor tensorflow_text in the serving process: in_fresh_process asserts both
    reloaded = in_fresh_process(
        f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        out = loaded.serve(tf.constant({MULTILINGUAL!r})[:, None])
        print(json.dumps([o.numpy().tolist() for o in out]))
        """
    )
    for got, tokenizer in zip(reloaded, (word, char, byte)):
        assert got == tokenizer(MULTILINGUAL).numpy().tolist()


@pytest.mark.parametrize("make", [WordTokenizer, CharTokenizer])
def test_training_logs_progress_on_large_inputs(make, monkeypatch, caplog):
    from nlptool.tokenizers import base

    monkeypatch.setattr(base, "PROGRESS_EVERY", 2)
    with caplog.at_level("INFO", logger="nlptool.tokenizers"):
        make().train(["a b", "c", "d e", "f", "g"])
    assert [r.getMessage() for r in caplog.records] == ["read 2 texts", "read 4 texts", "read 5 texts in all"]


def test_cut_keeps_the_first_or_last_tokens_before_the_batch_is_padded():
    tokenizer = WordTokenizer().train(["a b c d e f"])
    texts = ["a b c d e", "f", ""]
    ids = tokenizer(texts).numpy()
    assert tokenizer.cut(texts, 2).numpy().tolist() == [ids[0, :2].tolist(), [ids[1, 0], 0], [0, 0]]
    assert tokenizer.cut(texts, 2, keep="last").numpy().tolist() == [ids[0, 3:5].tolist(), [ids[1, 0], 0], [0, 0]]
    # lengths are what calling gives, padding excluded, with the start and end tokens a tokeniser adds
    framed = WordTokenizer(add_start=True, add_end=True, sequence_length=4).train(["a b c d e f"])
    assert framed.lengths(texts).numpy().tolist() == np.count_nonzero(framed(texts).numpy(), axis=1).tolist()
    assert framed.lengths(texts).numpy().tolist() == [4, 3, 2]
