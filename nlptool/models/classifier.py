"""The GRU text classifier and its serving module.

Model: token ids -> Embedding (mask_zero) -> optional word dropout ->
stacked (bi)directional nlptool GRU -> masked max and mean pooling over
time (or the last state) -> dropout -> softmax over the classes. The
tokeniser stays outside the trained model (it runs in the tf.data
pipeline) and joins it again in `ClassifierServing`, which takes raw
strings.
"""

import keras
import numpy as np
import tensorflow as tf

from nlptool import compat
from nlptool.export import ServingModule, serving_function
from nlptool.layers import GRU


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
            if compat.call_has_mask_arg(layer) and mask is not None:
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
                loss = compat.compute_loss(self, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            with tape.stop_recording():  # r is a constant of the step: no second-order terms
                r = self.perturbation(vectors, inner.gradient(loss, vectors), mask)
            adversarial_pred = self.from_embeddings(vectors + r, mask, training=True)
            adversarial_loss = compat.compute_loss(
                self, x=x, y=y, y_pred=adversarial_pred, sample_weight=sample_weight, training=True
            )
            total = loss + adversarial_loss
        # under a strategy the compiled loss comes divided by the replicas; the log is the replica's own
        compat.loss_tracker(self).update_state(compat.unscaled_replica_loss(loss), sample_weight=tf.shape(x)[0])
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


class ClassifierServing(ServingModule):
    """Raw strings in, `label` (class name) and `probabilities` out, with the
    tokeniser, the truncation to `max_length` tokens, the model and the
    class names in one graph."""

    def __init__(self, tokenizer, model, class_names, max_length):
        super().__init__(model, name="sentiment_serving")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._class_names = tf.constant([str(name) for name in class_names])

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        probabilities = self.model(token_ids(self.tokenizer, text, self.max_length), training=False)
        label = tf.gather(self._class_names, tf.argmax(probabilities, axis=-1))
        return {"label": label, "probabilities": probabilities}

    @serving_function(input_signature=[])
    def class_names(self):
        """The class of each column of `probabilities`."""
        return {"class_names": self._class_names}


def token_ids(tokenizer, texts, max_length):
    """The classifier's input: token ids truncated to `max_length`, and at
    least one (padding) column, so that a batch of empty texts (or of none)
    reads as each empty text does in any other batch, not as zero time
    steps, which the GRU's loop cannot stack."""
    ids = tokenizer.cut(texts, max_length)
    return tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])


def predict_probabilities(model, tokenizer, texts, max_length, batch_size=256):
    """Class probabilities (len(texts), classes), computed in a graph traced once."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def probabilities(batch):
        return model(token_ids(tokenizer, batch, max_length), training=False)

    out = [probabilities(tf.constant(texts[i : i + batch_size])).numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), "float32")


def transfer_encoder(language_model, model, backward=None):
    """Copy a language model's embedding and GRU weights into the
    classifier `model` (built with the language model's embedding size and
    units); returns the paths of the layers that received weights.

    The embedding always transfers. GRU layer i takes the language model's
    layer i where the shapes agree: every layer of a unidirectional stack
    (up to the language model's depth); in a bidirectional stack, the
    forward direction of the first layer, and its backward direction from
    `backward`, a backward language model over the same embedding, when
    given (deeper layers take both directions as input, so neither matches
    a language model's layer).
    """
    model.get_layer("embedding").set_weights(language_model.embedding.get_weights())
    transferred = ["embedding"]
    for index, source in enumerate(language_model.grus):
        try:
            layer = model.get_layer(f"bidirectional_{index}")
            pairs = [(layer.forward_layer, source)]
            if backward is not None and index < len(backward.grus):
                pairs.append((layer.backward_layer, backward.grus[index]))
        except ValueError:
            try:
                pairs = [(model.get_layer(f"gru_{index}"), source)]
            except ValueError:
                break  # the classifier has fewer layers
        matching = [(t, s) for t, s in pairs if [w.shape for w in t.weights] == [w.shape for w in s.weights]]
        for target, weights in matching:
            target.set_weights(weights.get_weights())
            transferred.append(target.path)
        if len(matching) < len(pairs):
            break
    return transferred
