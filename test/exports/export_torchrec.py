"""TorchRec's DLRM and DLRM-DCN (torchrec.models.dlrm) exported with their
KeyedJaggedTensor sparse input (run in .venv-export-torchrec, made by
`test/exports/venv.sh torchrec`: torchrec with the torch release that its
fbgemm-gpu-cpu is built against).

The models take what a TorchRec serving entry takes: dense features and the
KJT's flat `values` with its key-major `lengths` (lengths[k * B + b] ids of
key k for sample b), from which the forward builds the KJT
(KeyedJaggedTensor.from_lengths_sync) exactly as torchrec's own
torch.export path traces it. Only the dynamo exporter is used: the
TorchScript exporter traces the KJT's per-key split sizes as constants (the
export then answers only requests with the traced lengths).
"""
import io
import warnings

import numpy as np
import onnx
import torch
import torchrec
from torchrec.models.dlrm import DLRM, DLRM_DCN
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from corpus_io import BATCHES, write_case

DENSE, KEYS, ROWS, DIM, MAX_LEN = 13, 4, 50, 16, 5


class KjtEntry(torch.nn.Module):
    """dense, values, lengths -> the model's score, through a KJT."""

    def __init__(self, model, keys):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, dense, values, lengths):
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=self.keys, values=values, lengths=lengths)
        return torch.sigmoid(self.model(dense, kjt))


def build(name):
    keys = [f"f{k}" for k in range(KEYS)]
    tables = [EmbeddingBagConfig(name=f"t{k}", embedding_dim=DIM, num_embeddings=ROWS, feature_names=[key])
              for k, key in enumerate(keys)]
    ebc = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
    common = dict(embedding_bag_collection=ebc, dense_in_features=DENSE, dense_arch_layer_sizes=[32, DIM],
                  over_arch_layer_sizes=[32, 1])
    model = DLRM(**common) if name == "dlrm" else DLRM_DCN(**common, dcn_num_layers=2, dcn_low_rank_dim=8)
    return KjtEntry(model, keys).eval()


def feeds(batch, rng):
    lengths = rng.integers(0, MAX_LEN + 1, KEYS * batch)  # empty bags included
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32),
            "values": rng.integers(0, ROWS, int(lengths.sum())).astype(np.int64),
            "lengths": lengths.astype(np.int64)}


def export(model, example, opset):
    kwargs = {"opset_version": opset} if opset else {}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, tuple(example), dynamo=True, input_names=["dense", "values", "lengths"],
                                    output_names=["score"], **kwargs,
                                    dynamic_shapes=tuple({0: torch.export.Dim(d)} for d in ("batch", "ids", "keyed")))
        program.save(f)
    return f.getvalue()


def main():
    for name in ("dlrm", "dlrm_dcn"):
        torch.manual_seed(0)
        model = build(name)
        rng = np.random.default_rng(1)
        by_batch = {b: feeds(b, rng) for b in BATCHES}
        with torch.no_grad():
            fw = {b: [model(*map(torch.from_numpy, f.values())).numpy()] for b, f in by_batch.items()}
        for opset in (17, None):
            data = export(model, [torch.from_numpy(v) for v in by_batch[16].values()], opset)
            used = next(o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx"))
            tag = "op17" if opset == 17 else f"default-op{used}"
            write_case(f"torchrec-{name}-dynamo-{tag}-fp32", data, by_batch, fw,
                       {"model": f"torchrec {name}", "framework": f"torch {torch.__version__}, torchrec {torchrec.__version__}",
                        "exporter": "torch.onnx dynamo", "opset": used, "dtype": "float32"})


if __name__ == "__main__":
    main()
