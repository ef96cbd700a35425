"""PyTorch's GRU + attention sequence-to-sequence model, as the widely used
tutorials build it, on Multi30k German -> English.

Follows "Neural Machine Translation by Jointly Learning to Align and
Translate" of the pytorch-seq2seq tutorials (Ben Trevett; the same model as
the PyTorch "NLP from scratch" translation tutorial's attention decoder, on
Multi30k): a bidirectional GRU encoder whose two final states, through a
tanh layer, start the decoder; additive attention over the encoder outputs
(tanh of a linear map of [decoder state; encoder output], then a vector);
a GRU decoder fed [embedding; context], and an output layer over
[decoder output; context; embedding]; weights drawn from N(0, 0.01), biases
zero; Adam at its default rate, cross-entropy ignoring padding, gradients
clipped to norm 1, teacher forcing with probability 0.5 at each step, time
major tensors, batches of similar lengths (`multi30k.length_buckets`, as
torchtext's BucketIterator), the decoder run in a Python loop one position
at a time, and the validation loss after every epoch choosing the weights
kept. As in the tutorial the attention does not mask padded positions.

Set to nlptool's shipped `multi30k` config: embedding 256, encoder 256 a
direction, decoder 512, dropout 0.3, batch 64, and the SentencePiece
vocabularies and 100-piece limit of `multi30k.py`.

    python benchmarks/peers/torch_seq2seq.py --seconds 600 [--seed 1] [--limit N]
"""

import copy
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import multi30k
from common import Deadline, command_line

NAME = "PyTorch GRU + attention seq2seq tutorial"
TASK = "translation"
EMBEDDING_DIM, ENCODER_UNITS, DECODER_UNITS, DROPOUT, BATCH_SIZE = 256, 256, 512, 0.3, 64
TEACHER_FORCING = 0.5
CLIP = 1.0


def build(source_vocab, target_vocab):
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(source_vocab, EMBEDDING_DIM)
            self.rnn = nn.GRU(EMBEDDING_DIM, ENCODER_UNITS, bidirectional=True)
            self.bridge = nn.Linear(2 * ENCODER_UNITS, DECODER_UNITS)
            self.dropout = nn.Dropout(DROPOUT)

        def forward(self, source):  # (source length, batch)
            outputs, final = self.rnn(self.dropout(self.embedding(source)))
            return outputs, torch.tanh(self.bridge(torch.cat([final[-2], final[-1]], dim=1)))

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(2 * ENCODER_UNITS + DECODER_UNITS, DECODER_UNITS)
            self.v = nn.Linear(DECODER_UNITS, 1, bias=False)

        def forward(self, state, encoded):  # (batch, decoder units), (source length, batch, 2 x encoder units)
            length = encoded.shape[0]
            queries = state.unsqueeze(1).repeat(1, length, 1)
            energy = torch.tanh(self.project(torch.cat([queries, encoded.permute(1, 0, 2)], dim=2)))
            return torch.softmax(self.v(energy).squeeze(2), dim=1)  # (batch, source length)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.embedding = nn.Embedding(target_vocab, EMBEDDING_DIM)
            self.rnn = nn.GRU(2 * ENCODER_UNITS + EMBEDDING_DIM, DECODER_UNITS)
            self.out = nn.Linear(2 * ENCODER_UNITS + DECODER_UNITS + EMBEDDING_DIM, target_vocab)
            self.dropout = nn.Dropout(DROPOUT)

        def forward(self, token, state, encoded):  # (batch,), (batch, decoder units)
            embedded = self.dropout(self.embedding(token)).unsqueeze(0)
            weights = self.attention(state, encoded).unsqueeze(1)  # (batch, 1, source length)
            context = torch.bmm(weights, encoded.permute(1, 0, 2)).permute(1, 0, 2)  # (1, batch, 2 x encoder)
            output, state = self.rnn(torch.cat([embedded, context], dim=2), state.unsqueeze(0))
            logits = self.out(torch.cat([output.squeeze(0), context.squeeze(0), embedded.squeeze(0)], dim=1))
            return logits, state.squeeze(0)

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Encoder(), Decoder()

        def forward(self, source, target, teacher_forcing):
            encoded, state = self.encoder(source)
            token, steps = target[0], []
            for t in range(1, target.shape[0]):
                logits, state = self.decoder(token, state, encoded)
                steps.append(logits)
                forced = random.random() < teacher_forcing
                token = target[t] if forced else logits.argmax(1)
            return torch.stack(steps)  # (target length - 1, batch, vocabulary)

    model = Seq2Seq()
    for name, parameter in model.named_parameters():
        if "weight" in name:
            nn.init.normal_(parameter.data, mean=0, std=0.01)
        else:
            nn.init.constant_(parameter.data, 0)
    return model


def time_major(sequences):
    import torch

    out = torch.full((max(map(len, sequences)), len(sequences)), multi30k.PAD, dtype=torch.long)
    for column, ids in enumerate(sequences):
        out[: len(ids), column] = torch.tensor(ids)
    return out


def loss_of(model, criterion, sources, targets, teacher_forcing):
    target = time_major(targets)
    logits = model(time_major(sources), target, teacher_forcing)
    return criterion(logits.reshape(-1, logits.shape[-1]), target[1:].reshape(-1))


def validation_loss(model, criterion, pairs):
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(pairs), BATCH_SIZE):
            batch = pairs[start : start + BATCH_SIZE]
            total += loss_of(model, criterion, [s for s, _ in batch], [t for _, t in batch], 0.0).item()
            count += 1
    model.train()
    return total / count


def greedy(model, sources, batch_size=128):
    import torch

    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(sources), batch_size):
            batch = sources[start : start + batch_size]
            encoded, state = model.encoder(time_major(batch))
            token = torch.full((len(batch),), multi30k.START, dtype=torch.long)
            rows = []
            for _ in range(multi30k.max_output_length(max(map(len, batch)))):
                logits, state = model.decoder(token, state, encoded)
                token = logits.argmax(1)
                rows.append(token)
                if bool((torch.stack(rows) == multi30k.END).any(0).all()):
                    break
            columns = torch.stack(rows, dim=1).tolist()
            predictions += [row[: multi30k.max_output_length(len(s))] for row, s in zip(columns, batch)]
    return predictions


def run(seconds, seed, limit=None):
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    corpus = multi30k.Corpus(limit)
    model = build(*corpus.vocab_sizes)
    optimizer = torch.optim.Adam(model.parameters())
    criterion = torch.nn.CrossEntropyLoss(ignore_index=multi30k.PAD)
    train_pairs = list(zip(*corpus.splits["train"]))
    validation_pairs = list(zip(*corpus.splits["validation"]))
    deadline = Deadline(seconds)
    best, best_state = float("inf"), None
    epochs, steps, tokens, stopped = 0, 0, 0, False
    while not stopped:
        batches = multi30k.length_buckets(train_pairs, BATCH_SIZE, seed + epochs)
        for done, batch in enumerate(batches, start=1):
            optimizer.zero_grad()
            loss = loss_of(model, criterion, [s for s, _ in batch], [t for _, t in batch], TEACHER_FORCING)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
            steps += 1
            tokens += sum(multi30k.target_tokens(t) for _, t in batch)
            if deadline.passed():
                stopped = True
                epochs += done / len(batches)
                break
        else:
            epochs += 1
            loss = validation_loss(model, criterion, validation_pairs)
            if loss < best:
                best, best_state = loss, copy.deepcopy(model.state_dict())
    train_seconds = deadline.elapsed()
    # the weights trained up to the deadline count as one more candidate, measured untimed
    if best_state is not None and validation_loss(model, criterion, validation_pairs) > best:
        model.load_state_dict(best_state)
    hypotheses = [corpus.decode(ids) for ids in greedy(model, corpus.splits["test"][0])]
    return {
        "train_seconds": round(train_seconds, 1),
        "epochs": round(epochs, 3),
        "train_units": tokens,
        "quality": {"greedy": multi30k.bleu(hypotheses, corpus.references)},
        "config": {
            "embedding_dim": EMBEDDING_DIM,
            "encoder_units": ENCODER_UNITS,
            "decoder_units": DECODER_UNITS,
            "dropout": DROPOUT,
            "batch_size": BATCH_SIZE,
            "teacher_forcing": TEACHER_FORCING,
            "threads": torch.get_num_threads(),
            "steps": steps,
        },
        "samples": [{"source": s, "translation": h} for s, h in zip(corpus.test_sources[:3], hypotheses[:3])],
    }


if __name__ == "__main__":
    command_line(run, __doc__.splitlines()[0])
