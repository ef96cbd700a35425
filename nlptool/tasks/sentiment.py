"""Sentiment (text classification): config, model, evaluation, export module.

Model: token ids -> Embedding (mask_zero) -> optional word dropout ->
stacked (bi)directional nlptool GRU -> masked max and mean pooling over
time -> dropout -> softmax over the classes. The tokeniser stays outside
the trained model (it runs in the tf.data pipeline) and joins it again in
the export module, which takes raw strings.
"""

import dataclasses
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from nlptool.layers import GRU


@dataclasses.dataclass
class TokenizerConfig:
    kind: Literal["word", "char", "byte", "wordpiece", "sentencepiece"] = "word"
    vocab_size: int = 20_000  # reserved ids included
    max_length: int = 256  # tokens kept per text (the first ones)


@dataclasses.dataclass
class ModelConfig:
    embedding_dim: int = 128  # size of each token vector
    units: int = 128  # GRU state size per direction
    layers: int = 1  # stacked GRU layers
    bidirectional: bool = True
    dropout: float = 0.3  # before the classifier, and on the GRU inputs
    embedding_dropout: float = 0.0  # share of tokens whose whole vector is zeroed in training (word dropout)
    pooling: Literal["last", "max_mean"] = "max_mean"  # what summarises the sequence


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 1234
    early_stopping_patience: int = 2  # epochs without validation gain before stopping
    class_weights: bool = False  # weight classes inversely to their frequency
    validation_fraction: float = 0.1  # held out of the training data when no validation set is given
    # Polyak averaging: validate, checkpoint and export an exponential moving average of the weights,
    # updated after every step with this momentum (Keras's optimizer `use_ema`); null: the weights as trained
    ema_momentum: float | None = None
    # adversarial training (Miyato et al., 2017): each step also trains on the word vectors moved by this
    # distance (in units of their standard deviation, over the whole text) in the direction that raises
    # the loss most; null: off
    adversarial_epsilon: float | None = None

    def __post_init__(self):
        if self.ema_momentum is not None and not 0 < self.ema_momentum < 1:
            raise ValueError(f"ema_momentum must be between 0 and 1 (exclusive) or null, not {self.ema_momentum}.")
        if self.adversarial_epsilon is not None and not self.adversarial_epsilon > 0:
            raise ValueError(f"adversarial_epsilon must be positive or null, not {self.adversarial_epsilon}.")


@dataclasses.dataclass
class SentimentConfig:
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)


@keras.saving.register_keras_serializable(package="nlptool")
class MaskedMaxMeanPooling(keras.layers.Layer):
    """Concatenated max and mean over the valid time steps: (batch, 2 * features).

    Padding must not win the max or dilute the mean, so both honour the mask;
    a row with no valid step gives zeros.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, sequences, mask=None):
        if mask is None:
            return tf.concat([tf.reduce_max(sequences, axis=1), tf.reduce_mean(sequences, axis=1)], axis=-1)
        valid = tf.cast(mask, sequences.dtype)[..., None]  # (batch, time, 1)
        count = tf.reduce_sum(valid, axis=1)
        mean = tf.reduce_sum(sequences * valid, axis=1) / tf.maximum(count, 1.0)
        lowest = tf.cast(sequences.dtype.min, sequences.dtype)
        maximum = tf.reduce_max(tf.where(mask[..., None], sequences, lowest), axis=1)
        maximum = tf.where(count > 0, maximum, tf.zeros_like(maximum))
        return tf.concat([maximum, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package="nlptool")
class AdversarialClassifier(keras.Model):
    """A functional classifier whose training step adds adversarial training
    on its word vectors (Miyato, Dai and Goodfellow, 2017, "Adversarial
    training methods for semi-supervised text classification").

    Each step computes the loss's gradient g with respect to the embedding
    layer's output e (batch, time, features), moves every text's vectors by
    r = epsilon * sigma * g / ||g|| (the norm over the text's whole (time,
    features) block; sigma the standard deviation of the batch's valid word
    vectors, so that epsilon does not depend on the embedding's scale; the
    paper normalises the embedding instead), and minimises the clean loss
    plus the loss at e + r. r is a constant of the step: no gradient flows
    through it. Inference and evaluation are those of the plain model.
    The model must be a chain of layers from the embedding on, as
    `build_model` makes it.
    """

    def __init__(self, *args, epsilon=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.epsilon = float(epsilon)
        layers = self.layers
        start = next(i for i, layer in enumerate(layers) if layer.name == "embedding")
        self._embedding = layers[start]
        self._after_embedding = layers[start + 1 :]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}

    def from_embeddings(self, vectors, mask, training):
        """The model's output from the embedding layer's output (and its mask) on."""
        x = vectors
        for layer in self._after_embedding:
            if layer._call_has_mask_arg and mask is not None:
                x = layer(x, mask=mask, training=training)
            else:
                x = layer(x, training=training)
            if len(x.shape) == 2:
                mask = None  # pooled: no time axis left
        return x

    def perturbation(self, vectors, gradient, mask):
        """epsilon * sigma * gradient / ||gradient|| per text, zero at padding."""
        valid = tf.cast(mask, vectors.dtype)[..., None]
        gradient = gradient * valid
        count = tf.maximum(tf.reduce_sum(valid) * tf.cast(tf.shape(vectors)[-1], vectors.dtype), 1.0)
        mean = tf.reduce_sum(vectors * valid) / count
        sigma = tf.sqrt(tf.reduce_sum(tf.square(vectors - mean) * valid) / count)
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=[1, 2], keepdims=True))
        return tf.stop_gradient(self.epsilon * sigma * gradient / tf.maximum(norm, 1e-12))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            vectors = self._embedding(x)
            mask = self._embedding.compute_mask(x)
            with tf.GradientTape() as inner:
                inner.watch(vectors)
                y_pred = self.from_embeddings(vectors, mask, training=True)
                loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            with tape.stop_recording():  # r is a constant of the step: no second-order terms
                r = self.perturbation(vectors, inner.gradient(loss, vectors), mask)
            adversarial_pred = self.from_embeddings(vectors + r, mask, training=True)
            adversarial_loss = self._compute_loss(
                x=x, y=y, y_pred=adversarial_pred, sample_weight=sample_weight, training=True
            )
            total = loss + adversarial_loss
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        gradients = tape.gradient(self.optimizer.scale_loss(total), self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def build_model(config, vocabulary_size, num_classes):
    """The classifier on token ids, (batch, time) int32 -> (batch, classes) probabilities."""
    model_config = config.model
    # === Layers ===
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocabulary_size, model_config.embedding_dim, mask_zero=True, name="embedding")(ids)
    if model_config.embedding_dropout:
        # one draw per token, not per feature: the classifier cannot lean on any single word
        x = keras.layers.Dropout(
            model_config.embedding_dropout,
            noise_shape=(None, None, 1),
            seed=config.training.seed,
            name="embedding_dropout",
        )(x)
    for index in range(model_config.layers):
        last = index == model_config.layers - 1
        gru = GRU(
            model_config.units,
            return_sequences=not (last and model_config.pooling == "last"),
            dropout=model_config.dropout,
            seed=config.training.seed + index,
            name=f"gru_{index}",
        )
        x = (keras.layers.Bidirectional(gru, name=f"bidirectional_{index}") if model_config.bidirectional else gru)(x)
    if model_config.pooling == "max_mean":
        x = MaskedMaxMeanPooling(name="pooling")(x)
    x = keras.layers.Dropout(model_config.dropout, seed=config.training.seed, name="dropout")(x)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    # === Functional Model ===
    epsilon = config.training.adversarial_epsilon
    if epsilon is None:
        return keras.Model(ids, probabilities, name="sentiment")
    return AdversarialClassifier(ids, probabilities, epsilon=epsilon, name="sentiment")


def class_weights(labels, num_classes):
    """Weights inversely proportional to class frequency, mean 1 (sklearn's "balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels))
    return {i: float(w) for i, w in enumerate(weights)}


class SentimentServing(tf.Module):
    """Raw strings in, `label` (class name) and `probabilities` out, with the
    tokeniser, the model and the class names in one graph."""

    def __init__(self, tokenizer, model, class_names):
        super().__init__(name="sentiment_serving")
        self.tokenizer = tokenizer
        self.model = model
        self._class_names = tf.constant([str(name) for name in class_names])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        probabilities = self.model(self.tokenizer(text), training=False)
        label = tf.gather(self._class_names, tf.argmax(probabilities, axis=-1))
        return {"label": label, "probabilities": probabilities}

    @tf.function(input_signature=[])
    def class_names(self):
        """The class of each column of `probabilities`."""
        return {"class_names": self._class_names}
