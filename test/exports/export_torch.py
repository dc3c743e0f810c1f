"""PyTorch ads models exported by both of torch's ONNX exporters (run in
.venv-export-torch, made by `test/exports/venv.sh torch`).

Each model is exported by the TorchScript exporter (dynamo=False) and the
dynamo exporter (dynamo=True, onnxscript), in fp32 at opset 17 and at the
exporter's default opset, and in fp16 (`model.half()`) at the default opset,
with a dynamic batch dimension (and a dynamic id count for jagged bags).
Tables are small so that the corpus stays a few MB.
"""
import argparse
import io
import math
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from corpus_io import BATCHES, write_case

DENSE, TABLES, ROWS, DIM, BAG = 13, 4, 50, 16, 3


def mlp(widths, last_activation=True):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i + 2 < len(widths):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """MLPerf DLRM structure: bottom MLP, EmbeddingBags, dot interaction over
    the lower triangle, top MLP. `modes` gives each table's pooling."""

    def __init__(self, modes=("sum",) * TABLES, padding_idx=None, weighted=False):
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(ROWS, DIM, mode=m, padding_idx=padding_idx) for m in modes)
        self.weighted = weighted
        self.bottom = mlp([DENSE, 32, DIM])
        n = len(modes) + 1
        self.li, self.lj = torch.tril_indices(n, n, offset=-1)
        self.top = mlp([DIM + n * (n - 1) // 2, 32, 16, 1], last_activation=False)

    def interact(self, x, pooled):
        t = torch.stack([x] + pooled, dim=1)
        z = torch.bmm(t, t.transpose(1, 2))
        return torch.cat([x, z[:, self.li, self.lj]], dim=1)

    def forward(self, dense, ids, weights=None):
        x = self.bottom(dense)
        if self.weighted:
            pooled = [bag(ids[:, i], per_sample_weights=weights[:, i]) for i, bag in enumerate(self.bags)]
        else:
            pooled = [bag(ids[:, i]) for i, bag in enumerate(self.bags)]
        return torch.sigmoid(self.top(self.interact(x, pooled)))


class JaggedDLRM(DLRM):
    """DLRM whose bags come as 1-D ids with per-table offsets, as serving
    stacks pass variable-length features: bags may be empty."""

    def forward(self, dense, ids_0, offsets_0, ids_1, offsets_1, ids_2, offsets_2, ids_3, offsets_3):
        jagged = (ids_0, offsets_0, ids_1, offsets_1, ids_2, offsets_2, ids_3, offsets_3)
        x = self.bottom(dense)
        pooled = [bag(jagged[2 * i], jagged[2 * i + 1]) for i, bag in enumerate(self.bags)]
        return torch.sigmoid(self.top(self.interact(x, pooled)))


class Fields(nn.Module):
    """One nn.Embedding per categorical field, looked up by its column."""

    def __init__(self, width):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(ROWS, width) for _ in range(TABLES))

    def forward(self, ids):
        return torch.stack([t(ids[:, i]) for i, t in enumerate(self.tables)], dim=1)


class DCNv2(nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.fields = Fields(DIM)
        width = DENSE + TABLES * DIM
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.deep = mlp([width, 64, 32])
        self.head = nn.Linear(width + 32, 1)

    def forward(self, dense, ids):
        x0 = torch.cat([dense, self.fields(ids).flatten(1)], dim=1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return torch.sigmoid(self.head(torch.cat([x, self.deep(x0)], dim=1)))


class DeepFM(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Fields(1)
        self.fields = Fields(DIM)
        self.deep = mlp([TABLES * DIM + DENSE, 64, 32, 1], last_activation=False)

    def forward(self, dense, ids):
        v = self.fields(ids)
        fm = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1, keepdim=True)
        first = self.first(ids).sum(1)
        return torch.sigmoid(first + fm + self.deep(torch.cat([v.flatten(1), dense], 1)))


class WideDeep(nn.Module):
    def __init__(self):
        super().__init__()
        self.wide_sparse = Fields(1)
        self.wide_dense = nn.Linear(DENSE, 1)
        self.fields = Fields(DIM)
        self.deep = mlp([TABLES * DIM + DENSE, 64, 32, 1], last_activation=False)

    def forward(self, dense, ids):
        wide = self.wide_sparse(ids).sum(1) + self.wide_dense(dense)
        deep = self.deep(torch.cat([self.fields(ids).flatten(1), dense], 1))
        return torch.sigmoid(wide + deep)


HIST = 20


class DIN(nn.Module):
    """Deep Interest Network: target attention over a length-masked history."""

    def __init__(self):
        super().__init__()
        self.items = nn.Embedding(ROWS, DIM)
        self.att = nn.Sequential(nn.Linear(4 * DIM, 32), nn.PReLU(), nn.Linear(32, 1))
        self.head = nn.Sequential(nn.Linear(2 * DIM + DENSE, 32), nn.PReLU(), nn.Linear(32, 1))

    def forward(self, dense, cand, hist, hist_len):
        q = self.items(cand).unsqueeze(1)
        k = self.items(hist)
        qe = q.expand_as(k)
        score = self.att(torch.cat([qe, k, qe - k, qe * k], dim=-1)).squeeze(-1)
        mask = torch.arange(hist.shape[1], device=hist.device).unsqueeze(0) < hist_len.unsqueeze(1)
        score = score.masked_fill(~mask, -1e4)
        pooled = torch.bmm(torch.softmax(score, dim=1).unsqueeze(1), k).squeeze(1)
        return torch.sigmoid(self.head(torch.cat([dense, q.squeeze(1), pooled], dim=1)))


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.user_fields = Fields(DIM)
        self.item_fields = Fields(DIM)
        self.user = mlp([TABLES * DIM + DENSE, 64, 32], last_activation=False)
        self.item = mlp([TABLES * DIM, 64, 32], last_activation=False)

    def forward(self, dense, user_ids, item_ids):
        u = self.user(torch.cat([self.user_fields(user_ids).flatten(1), dense], 1))
        v = self.item(self.item_fields(item_ids).flatten(1))
        u = nn.functional.normalize(u, dim=1)
        v = nn.functional.normalize(v, dim=1)
        return (u * v).sum(1, keepdim=True) * 5.0


SEQ = 16


class Relevance(nn.Module):
    """A query-ad cross-encoder: transformers' BERT with a small random
    config (MiniLM's layer shape scaled down), pooled, one logit."""

    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification
        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=SEQ, num_labels=1,
                            attn_implementation="eager")
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).logits


def dense_ids(batch, rng, fields=TABLES):
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "ids": rng.integers(0, ROWS, (batch, fields)).astype(np.int64)}


def bag_feeds(batch, rng):
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "ids": rng.integers(0, ROWS, (batch, TABLES, BAG)).astype(np.int64)}


def weighted_feeds(batch, rng):
    return dict(bag_feeds(batch, rng), weights=rng.random((batch, TABLES, BAG)).astype(np.float32))


def jagged_feeds(batch, rng):
    feeds = {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32)}
    for t in range(TABLES):
        lengths = rng.integers(0, 2 * BAG, batch)  # empty bags included
        lengths[0] = 0
        feeds[f"ids_{t}"] = rng.integers(0, ROWS, int(lengths.sum())).astype(np.int64)
        feeds[f"offsets_{t}"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return feeds


def din_feeds(batch, rng):
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "cand": rng.integers(0, ROWS, batch).astype(np.int64),
            "hist": rng.integers(0, ROWS, (batch, HIST)).astype(np.int64),
            "hist_len": rng.integers(1, HIST + 1, batch).astype(np.int64)}


def two_tower_feeds(batch, rng):
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "user_ids": rng.integers(0, ROWS, (batch, TABLES)).astype(np.int64),
            "item_ids": rng.integers(0, ROWS, (batch, TABLES)).astype(np.int64)}


def bert_feeds(batch, rng):
    lengths = rng.integers(4, SEQ + 1, batch)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(0, 100, (batch, SEQ)).astype(np.int64) * mask,
            "attention_mask": mask,
            "token_type_ids": (np.arange(SEQ)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask}


def jagged_axes():
    axes = {"dense": {0: "batch"}}
    for t in range(TABLES):
        axes[f"ids_{t}"] = {0: f"ids_{t}"}
        axes[f"offsets_{t}"] = {0: "batch"}
    return axes


# name -> (constructor, feeds, dynamic axes or None for "dim 0 of every input is the batch")
MODELS = {
    "dlrm": (lambda: DLRM(), bag_feeds, None),
    "dlrm_mean_max_pad": (lambda: DLRM(modes=("mean", "max", "sum", "max"), padding_idx=0), bag_feeds, None),
    "dlrm_weighted": (lambda: DLRM(weighted=True), weighted_feeds, None),
    "dlrm_jagged": (lambda: JaggedDLRM(modes=("sum", "mean", "max", "sum")), jagged_feeds, jagged_axes()),
    "dcnv2": (DCNv2, dense_ids, None),
    "deepfm": (DeepFM, dense_ids, None),
    "wide_deep": (WideDeep, dense_ids, None),
    "din": (DIN, din_feeds, None),
    "two_tower": (TwoTower, two_tower_feeds, None),
    "bert_rel": (Relevance, bert_feeds, None),
}
# The DLRM variants only at the default opset in fp32: their bags are what they add.
VARIANTS = {"dlrm_mean_max_pad", "dlrm_weighted", "dlrm_jagged"}


def export(model, example, names, axes, dynamo, opset):
    f = io.BytesIO()
    kwargs = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {}
            shapes = tuple({a: dims.setdefault(d, torch.export.Dim(d)) for a, d in axes[n].items()} for n in names)
            program = torch.onnx.export(model, tuple(example), dynamo=True, input_names=names,
                                        output_names=["score"], dynamic_shapes=shapes, **kwargs)
            program.save(f)
        else:
            torch.onnx.export(model, tuple(example), f, dynamo=False, input_names=names,
                              output_names=["score"], dynamic_axes=axes, **kwargs)
    return f.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(MODELS), help="which models (default: all)")
    args = parser.parse_args()
    for name in args.models:
        build, make_feeds, axes = MODELS[name]
        torch.manual_seed(0)
        base = build().eval()
        rng = np.random.default_rng(1)
        by_batch = {b: make_feeds(b, rng) for b in BATCHES}
        names = list(by_batch[BATCHES[0]])
        axes = axes or {n: {0: "batch"} for n in names}
        configs = [("fp32", 17), ("fp32", None), ("fp16", None)]
        if name in VARIANTS:
            configs = [("fp32", None)]
        for dtype, opset in configs:
            model = base.half() if dtype == "fp16" else base.float()

            def tensors(feeds):
                return [torch.from_numpy(v.astype(np.float16) if dtype == "fp16" and v.dtype == np.float32 else v)
                        for v in feeds.values()]

            feeds = {b: {k: t.numpy() for k, t in zip(names, tensors(f))} for b, f in by_batch.items()}
            with torch.no_grad():
                fw = {b: [model(*tensors(f)).numpy()] for b, f in by_batch.items()}
            for dynamo in (False, True):
                exporter = "dynamo" if dynamo else "torchscript"
                try:
                    data = export(model, tensors(by_batch[16]), names, axes, dynamo, opset)
                except Exception as e:  # an exporter that cannot export the model is recorded, not fatal
                    print(f"corpus: {name} {exporter} {dtype} opset {opset}: export failed: {e}".splitlines()[0])
                    continue
                used = next(o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx"))
                tag = "op17" if opset == 17 else f"default-op{used}"
                write_case(f"torch-{name}-{exporter}-{tag}-{dtype}", data, feeds, fw,
                           {"model": name, "framework": f"torch {torch.__version__}",
                            "exporter": f"torch.onnx {exporter}", "opset": used,
                            "dtype": "float16" if dtype == "fp16" else "float32"})


if __name__ == "__main__":
    main()
