"""Keras ads models converted by tf2onnx (run in .venv-export-tf, made by
`test/exports/venv.sh tf`): Wide & Deep and DeepFM over one embedding per
categorical field, at opset 17 and at tf2onnx's default opset."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from corpus_io import BATCHES, write_case

DENSE, FIELDS, ROWS, DIM = 8, 6, 40, 8


def field_embeddings(ids, width, prefix):
    """One table per field, looked up with that field's column of ids."""
    columns = [tf.keras.layers.Lambda(lambda t, i=i: t[:, i], name=f"{prefix}_col{i}")(ids)
               for i in range(FIELDS)]
    return [tf.keras.layers.Embedding(ROWS, width, name=f"{prefix}_table{i}")(c)
            for i, c in enumerate(columns)]


def mlp(x, widths, prefix):
    for i, w in enumerate(widths):
        x = tf.keras.layers.Dense(w, activation="relu", name=f"{prefix}{i}")(x)
    return x


def wide_deep():
    dense = tf.keras.Input((DENSE,), name="dense")
    ids = tf.keras.Input((FIELDS,), dtype="int64", name="ids")
    wide = tf.keras.layers.Add()(field_embeddings(ids, 1, "wide")
                                 + [tf.keras.layers.Dense(1, name="wide_dense")(dense)])
    deep = tf.keras.layers.Concatenate()(field_embeddings(ids, DIM, "deep") + [dense])
    deep = tf.keras.layers.Dense(1, name="deep_out")(mlp(deep, [64, 32], "deep"))
    out = tf.keras.layers.Activation("sigmoid")(tf.keras.layers.Add()([wide, deep]))
    return tf.keras.Model([dense, ids], out, name="wide_deep")


def deepfm():
    dense = tf.keras.Input((DENSE,), name="dense")
    ids = tf.keras.Input((FIELDS,), dtype="int64", name="ids")
    first = tf.keras.layers.Add()(field_embeddings(ids, 1, "first"))
    fields = tf.keras.layers.Lambda(lambda t: tf.stack(t, axis=1), name="stack")(
        field_embeddings(ids, DIM, "fm"))
    fm = tf.keras.layers.Lambda(
        lambda v: 0.5 * tf.reduce_sum(tf.square(tf.reduce_sum(v, 1)) - tf.reduce_sum(tf.square(v), 1),
                                      axis=1, keepdims=True), name="fm")(fields)
    deep = tf.keras.layers.Concatenate()([tf.keras.layers.Flatten()(fields), dense])
    deep = tf.keras.layers.Dense(1, name="deep_out")(mlp(deep, [64, 32], "deep"))
    out = tf.keras.layers.Activation("sigmoid")(tf.keras.layers.Add()([first, fm, deep]))
    return tf.keras.Model([dense, ids], out, name="deepfm")


def feeds(batch, rng):
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "ids": rng.integers(0, ROWS, (batch, FIELDS)).astype(np.int64)}


def main():
    tf.keras.utils.set_random_seed(0)
    for build in (wide_deep, deepfm):
        model = build()
        signature = [tf.TensorSpec((None, DENSE), tf.float32, name="dense"),
                     tf.TensorSpec((None, FIELDS), tf.int64, name="ids")]
        for opset in (17, None):
            onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
            rng = np.random.default_rng(1)
            by_batch = {b: feeds(b, rng) for b in BATCHES}
            fw = {b: [model([f["dense"], f["ids"]]).numpy()] for b, f in by_batch.items()}
            opset_used = next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))
            tag = "op17" if opset == 17 else f"default-op{opset_used}"
            write_case(f"keras-{model.name}-tf2onnx-{tag}-fp32", onnx_model.SerializeToString(), by_batch, fw,
                       {"model": model.name, "framework": f"tensorflow {tf.__version__}",
                        "exporter": f"tf2onnx {tf2onnx.__version__}", "opset": opset_used, "dtype": "float32"})


if __name__ == "__main__":
    main()
